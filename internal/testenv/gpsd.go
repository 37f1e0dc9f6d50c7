//go:build linux

package testenv

// What Debian's gpsd 3.22 (3.22-4.1+deb12u1) does with NMEA 0183, found by
// replaying the logs in internal/epoch/testdata through GPSDReports and
// reading gpsd's -D 6 log. TestGPSDFindings checks the main points.
//
//   - Cycles. gpsd reports a TPV when the sentence that ends an epoch
//     arrives. It learns that sentence: a sentence with a time of day (RMC,
//     GGA, GLL, GNS; not ZDA, not RMC with status V) that came last before
//     the time changed becomes a "cycle ender", for good. Until the first
//     change of time it sends a TPV after every sentence that changes the
//     fix, so the first epoch has several TPVs (RMC+GGA: 2; u-blox RMC, VTG,
//     GGA, GSA, GSV, GLL: 4, none for VTG and GSV), later epochs one.
//     Sentences after the ender are not in the epoch's TPV (VTG after RMC;
//     GSA and ZDA after GGA in GGA, GSA, ZDA, where the TPV goes out at GGA).
//     In a GGA+RMC log an outage (RMC V) makes GGA an ender too: from then on
//     every epoch has two TPVs, the one after GGA without RMC's course.
//     GPSDReports therefore keeps the last TPV of each run with the same
//     time.
//   - Void epochs. RMC status V gives gpsd neither time nor date, GGA
//     quality 0 gives a time. A u-blox cold start (RMC V, GGA 0, GSA 1) is
//     thus a run of TPVs with mode 0 or 1 and no time; an outage in GGA+RMC
//     gives mode-1 TPVs with GGA's time, but none for its first epoch; in an
//     RMC-only log a void epoch gives no TPV at all.
//   - Dating. gpsd never dates a fix from the system clock. Until an RMC or
//     ZDA has given a date, TPVs have no "time": the first epoch of GGA, GSA,
//     ZDA (its TPV goes out before the ZDA), and every epoch of a GGA-only or
//     GNS-only log. Once it has a date, a time of day earlier than the last
//     one moves the date on by a day, so midnight is dated right even when
//     GGA comes before that epoch's ZDA. Dates before 2017-01-01 are taken
//     for GPS week rollover victims and moved 1024 weeks on (the u-blox
//     manual's 09 Dec 2002 becomes 2022-07-25; 2016-12-31 becomes
//     2036-08-16); the fixtures use 2025.
//   - Altitude. "altMSL" is the GGA or GNS altitude, "alt" a deprecated copy
//     of it, "altHAE" = altMSL + geoidSep. "geoidSep" is the sentence's
//     geoid separation or, when that field is empty, gpsd's own geoid model
//     (44.108 m at Amsterdam): it is present even when the receiver sent
//     none. A GGA with an empty altitude field gives no altitude at all.
//   - Mode and status. "mode" is gpsd's inference, not GSA's fix type: GGA
//     with an altitude makes it 3, RMC 2 or 3 (3 when the previous fix had
//     an altitude), GSA sets it but a later sentence may override it. So GSA
//     fix type 2 with a GGA altitude still reports 3, and so does the first
//     epoch without altitude after one with. "status" is 2 for DGPS (GGA 2),
//     3 for RTK fixed (GGA 4), 4 for RTK float (GGA 5), and omitted for a
//     plain fix and for no fix.
//   - Speed. RMC or VTG knots times KNOTS_TO_MPS = 0.51444444 (gps.h; exactly
//     it is 1852/3600 = 0.5144444…, 9e-9 relative: far below 0.01 m/s).
//     Speeds of 10 000 m/s and more are ignored. Without RMC and VTG (GGA
//     and ZDA) gpsd derives a speed from successive positions: present in
//     the TPV but not receiver data. "track" is the RMC or VTG course,
//     absent when that field is empty.
//   - Rounding. Latitude and longitude are ddmm.mmmm as dd + mm.mmmm/60, sent
//     with 9 decimals (1e-9°); altitudes with 4 decimals, geoidSep 3, speed
//     3, track 4, time in milliseconds.
//   - GNS. An NMEA 4.10 GNS whose navigational status (last field) is U or V
//     (u-blox and others send V) is used for its time only: no position, no
//     altitude. RMC with navigational status V is used in full. A 12-field
//     (NMEA 4.0) GNS is used in full.
//   - Noise. Dropped: bad checksums, sentences longer than gpsd's limit (a
//     u-blox PUBX,00 at 113 characters, a 12-satellite GSV), a sentence ended
//     by CR alone, UBX frames with a bad checksum, junk. Accepted: lower-case
//     checksum digits, LF alone as line end. An !AIVDM line switches gpsd to
//     its AIS driver and the next NMEA sentence back, without losing state.
//   - Pacing. The TPVs are the same whether the log is written in one go or
//     line by line with pauses of 0 to 5 ms, and the same as gpsfake -1's.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

const (
	gpsdStartTimeout  = 10 * time.Second // from exec until the pty is open
	gpsdReplayTimeout = 30 * time.Second // from the first byte until the end of input is acknowledged
	gpsdStopTimeout   = 5 * time.Second  // from SIGTERM until exit
	gpsdEOFGrace      = time.Second      // from gpsd closing the pty until the writer has returned
	gpsdAttempts      = 3                // runs when the free port was taken in between
	gpsdStderrMax     = 8 << 10          // bytes of gpsd's output kept for failure messages
	gpsdMaxLine       = 1 << 20          // longest JSON line accepted from gpsd
	gpsdSHMKeyBase    = 0x47700000       // | port: gpsd's SHM export segment (as gpsfake does)
	gpsdEOF           = "# EOF\n"        // gpsd's synthetic end of input
	gpsdWatch         = `?WATCH={"enable":true,"json":true}` + "\n"
)

// gpsdNTPKeys are the SysV shared-memory keys "NTP0" to "NTP7" that gpsd
// creates at start-up for ntpd and chrony.
var gpsdNTPKeys = []int{0x4e545030, 0x4e545031, 0x4e545032, 0x4e545033, 0x4e545034, 0x4e545035, 0x4e545036, 0x4e545037}

// GPSDReport is one gpsd TPV report (only what we compare).
type GPSDReport struct {
	Time     time.Time // TPV "time"; zero when gpsd gave none
	Mode     int       // TPV "mode": 0 not seen, 1 no fix, 2 2D, 3 3D
	Status   int       // TPV "status" when present: 2 DGPS, 3 RTK fixed, 4 RTK float
	Lat, Lon float64   // TPV "lat", "lon", degrees
	AltMSL   float64   // TPV "altMSL" (or, from an older gpsd, "alt"), metres
	AltHAE   float64   // TPV "altHAE", metres
	GeoidSep float64   // TPV "geoidSep", metres
	Speed    float64   // TPV "speed", m/s
	Track    float64   // TPV "track", degrees from true north
	// Device is the TPV "device": the pty gpsd read. Golden files leave it
	// out.
	Device string
	// Has records which JSON keys were present.
	Has map[string]bool
}

// gpsdGoldenKeys are the TPV keys of a GPSDReport in golden files, in the
// order written.
var gpsdGoldenKeys = []string{"time", "mode", "status", "lat", "lon", "altMSL", "altHAE", "geoidSep", "speed", "track"}

// MarshalJSON encodes the report as one line of a golden file: the keys of
// the report among "time", "mode", "status", "lat", "lon", "altMSL",
// "altHAE", "geoidSep", "speed" and "track", in that order, "time" in RFC
// 3339 with milliseconds as gpsd writes it.
func (r GPSDReport) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for _, k := range gpsdGoldenKeys {
		if !r.Has[k] {
			continue
		}
		var v any
		switch k {
		case "time":
			v = formatGPSDTime(r.Time)
		case "mode":
			v = r.Mode
		case "status":
			v = r.Status
		default:
			v = *r.float(k)
		}
		val, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("gpsd report %q: %w", k, err)
		}
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%q:%s", k, val)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// formatGPSDTime formats t as gpsd does (UTC, milliseconds), with more
// digits only if t has them.
func formatGPSDTime(t time.Time) string {
	t = t.UTC()
	if t.Nanosecond()%int(time.Millisecond) != 0 {
		return t.Format(time.RFC3339Nano)
	}
	return t.Format("2006-01-02T15:04:05.000Z07:00")
}

// UnmarshalJSON decodes a gpsd TPV object or a golden-file line.
func (r *GPSDReport) UnmarshalJSON(data []byte) error {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		return fmt.Errorf("gpsd report: %w", err)
	}
	*r = GPSDReport{Has: make(map[string]bool, len(obj))}
	for k, raw := range obj {
		r.Has[k] = true
		var err error
		switch k {
		case "time":
			var s string
			if err = json.Unmarshal(raw, &s); err == nil {
				r.Time, err = time.Parse(time.RFC3339Nano, s)
			}
		case "mode":
			err = json.Unmarshal(raw, &r.Mode)
		case "status":
			err = json.Unmarshal(raw, &r.Status)
		case "device":
			err = json.Unmarshal(raw, &r.Device)
		case "alt":
			if _, ok := obj["altMSL"]; !ok {
				err = json.Unmarshal(raw, &r.AltMSL)
			}
		default:
			if p := r.float(k); p != nil {
				err = json.Unmarshal(raw, p)
			}
		}
		if err != nil {
			return fmt.Errorf("gpsd report %q: %w", k, err)
		}
	}
	return nil
}

// float returns the field of a float TPV key, or nil.
func (r *GPSDReport) float(key string) *float64 {
	switch key {
	case "lat":
		return &r.Lat
	case "lon":
		return &r.Lon
	case "altMSL":
		return &r.AltMSL
	case "altHAE":
		return &r.AltHAE
	case "geoidSep":
		return &r.GeoidSep
	case "speed":
		return &r.Speed
	case "track":
		return &r.Track
	}
	return nil
}

// ReadGPSDGolden reads a golden file of GPSDReports (one MarshalJSON line
// per report, e.g. internal/epoch/testdata/NAME.gpsd.jsonl) and fails the
// test if it cannot.
func ReadGPSDGolden(t testing.TB, path string) []GPSDReport {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("testenv: read gpsd golden file: %v", err)
	}
	var reports []GPSDReport
	for i, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		var r GPSDReport
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("testenv: %s:%d: %v", path, i+1, err)
		}
		reports = append(reports, r)
	}
	return reports
}

// GPSDReports replays nmea (the raw bytes of a receiver log) through a real
// gpsd and returns its TPV reports in order: the last TPV of each run of
// TPVs with the same time, so one per epoch that gpsd dated (gpsd sends
// several TPVs for the first epoch and, after an outage, two per epoch;
// the last is the complete one). TPVs without a time (void epochs, epochs
// before gpsd knows the date) are collapsed the same way, a run of them into
// its last. The comment at the top of gpsd.go says what gpsd does.
//
// It runs gpsd itself rather than through gpsfake: gpsfake re-packetizes the
// log with gpsd's lexer in Python and writes only what it recognizes, so a
// damaged log would not reach gpsd as the receiver sent it; it also needs
// /usr/bin/python3 with Debian's gps module (`python3 gpsfake` with a pyenv
// python3 fails), defaults to port 2947 and leaves its control socket and
// shared memory behind. (On the fixtures both give the same TPVs.)
//
// So GPSDReports opens a pty and starts "gpsd -N -n -b -S PORT /dev/pts/N"
// on a free loopback port; -b opens the device read-only, so gpsd sends it
// no probes or configuration (GPSDReports checks that nothing was written;
// gpsd's driver probes still switch the line speed for a moment, which a pty
// ignores). It subscribes with ?WATCH={"enable":true,"json":true}, writes
// the log into the pty line by line without pauses (pacing changes nothing)
// and then gpsd's synthetic end-of-input comment "# EOF\n", preceded by
// "\n" if the log does not end with one. gpsd handles its input in order and
// closes the device on that comment, so its DEVICE report with
// "activated":0 means that every TPV of the log has arrived: no quiet period
// is needed. Only class TPV from the pty is kept.
//
// A run takes about a second, most of it gpsd probing the new device. gpsd is
// stopped, and the shared-memory segments it created are removed, before
// GPSDReports returns (and at t.Cleanup if the test ends first). If gpsd does
// not start within 10 s, exits, or does not finish the log within 30 s, the
// test fails with gpsd's output. TRACKGATE_GPSD_DEBUG=N adds "-D N" and logs
// gpsd's output.
//
// gpsd is looked up on PATH and in /usr/sbin (scripts/tools.sh installs
// Debian's gpsd). If it is missing the test is skipped, unless
// TRACKGATE_REQUIRE_GPSD is set: then it fails. GPSDReports exists on Linux
// only.
func GPSDReports(t testing.TB, nmea []byte) []GPSDReport {
	t.Helper()
	return lastPerTime(gpsdTPVs(t, nmea))
}

// lastPerTime keeps the last report of each run of consecutive reports with
// the same time (reports without a time have the zero time).
func lastPerTime(all []GPSDReport) []GPSDReport {
	var out []GPSDReport
	for i, r := range all {
		if i+1 < len(all) && all[i+1].Time.Equal(r.Time) {
			continue
		}
		out = append(out, r)
	}
	return out
}

// gpsdTPVs replays nmea through gpsd and returns every TPV, skipping or
// failing the test as GPSDReports describes.
func gpsdTPVs(t testing.TB, nmea []byte) []GPSDReport {
	t.Helper()
	bin, err := gpsdBinary()
	if err != nil {
		if os.Getenv("TRACKGATE_REQUIRE_GPSD") == "" {
			t.Skipf("testenv: %v; run `make tools` to install Debian's gpsd", err)
		}
		t.Fatalf("testenv: %v (TRACKGATE_REQUIRE_GPSD is set); run `make tools` to install Debian's gpsd", err)
	}
	for attempt := 1; ; attempt++ {
		tpvs, err := replayGPSD(t, bin, nmea)
		if err == nil {
			return tpvs
		}
		if !errors.Is(err, errGPSDPortTaken) || attempt == gpsdAttempts {
			t.Fatalf("testenv: %v", err)
		}
		t.Logf("testenv: %v; retrying on another port", err)
	}
}

// gpsdBinary finds gpsd on PATH or in /usr/sbin, which is often not on a
// user's PATH.
func gpsdBinary() (string, error) {
	if p, err := exec.LookPath("gpsd"); err == nil {
		return p, nil
	}
	const sbin = "/usr/sbin/gpsd"
	if _, err := os.Stat(sbin); err != nil {
		return "", fmt.Errorf("gpsd not found on PATH nor at %s", sbin)
	}
	return sbin, nil
}

// errGPSDPortTaken marks a replay that failed because the port picked for
// gpsd was taken by another process in between.
var errGPSDPortTaken = errors.New("gpsd port taken")

// gpsdMsg is one JSON object from gpsd.
type gpsdMsg struct {
	Class string `json:"class"`
	raw   []byte
}

// gpsdDevice is the part of a DEVICE object looked at. Activated is a
// timestamp string while the device is open and the number 0 once gpsd has
// closed it.
type gpsdDevice struct {
	Path      string          `json:"path"`
	Activated json.RawMessage `json:"activated"`
}

func (d gpsdDevice) open() bool   { return len(d.Activated) > 0 && d.Activated[0] == '"' }
func (d gpsdDevice) closed() bool { return string(d.Activated) == "0" }

// gpsdProc is one gpsd reading one pty.
type gpsdProc struct {
	cmd     *exec.Cmd
	output  *tailBuffer
	exited  chan struct{} // closed once cmd has been waited for
	waitErr error         // read only after exited is closed

	master, slave *os.File
	masterDone    chan struct{} // closed when the master reader has stopped
	wrote         int64         // bytes gpsd wrote to the pty; read after masterDone

	conn     net.Conn // watcher connection, nil until connected
	shmKeys  []int    // shared-memory segments gpsd may create
	stopOnce sync.Once
}

// stop stops gpsd (SIGTERM, SIGKILL after gpsdStopTimeout), closes the pty
// and the connection and removes the shared memory gpsd created. It may be
// called more than once.
func (p *gpsdProc) stop() {
	p.stopOnce.Do(func() {
		if p.conn != nil {
			p.conn.Close()
		}
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Signal(syscall.SIGTERM)
			timer := time.NewTimer(gpsdStopTimeout)
			select {
			case <-p.exited:
			case <-timer.C:
				p.cmd.Process.Kill()
				<-p.exited
			}
			timer.Stop()
		}
		p.slave.Close()
		p.master.Close()
		<-p.masterDone
		removeGPSDSHM(p.shmKeys)
	})
}

// gpsdPIDs are the gpsd processes started by this test binary.
var gpsdPIDs struct {
	sync.Mutex
	m map[int32]bool
}

// removeGPSDSHM removes the shared-memory segments with the given keys that
// nothing has attached any more and that a gpsd started here, or a process
// that no longer runs, created. gpsd creates its export segment
// (GPSD_SHM_KEY) and the NTP segments; run as root it drops privileges and
// cannot remove them itself. A segment that another gpsd (of this or another
// test binary) still has attached is left to the runner that stops last.
func removeGPSDSHM(keys []int) {
	gpsdPIDs.Lock()
	defer gpsdPIDs.Unlock()
	for _, k := range keys {
		id, err := unix.SysvShmGet(k, 0, 0)
		if err != nil {
			continue
		}
		var desc unix.SysvShmDesc
		if _, err := unix.SysvShmCtl(id, unix.IPC_STAT, &desc); err != nil {
			continue
		}
		gone := errors.Is(unix.Kill(int(desc.Cpid), 0), unix.ESRCH)
		if desc.Nattch == 0 && (gpsdPIDs.m[desc.Cpid] || gone) {
			unix.SysvShmCtl(id, unix.IPC_RMID, nil)
		}
	}
}

// startGPSD opens a pty and starts gpsd on it, listening on addr.
func startGPSD(bin, addr, debug string) (*gpsdProc, error) {
	_, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("gpsd address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("gpsd address %q: %w", addr, err)
	}
	master, slave, err := openPTY()
	if err != nil {
		return nil, err
	}
	p := &gpsdProc{
		output:     &tailBuffer{max: gpsdStderrMax},
		exited:     make(chan struct{}),
		master:     master,
		slave:      slave,
		masterDone: make(chan struct{}),
	}
	shmKey := gpsdSHMKeyBase | port
	p.shmKeys = append([]int{shmKey}, gpsdNTPKeys...)
	args := []string{"-N", "-n", "-b", "-S", portStr}
	if debug != "" {
		args = append(args, "-D", debug)
		p.output.max = 64 << 20
	}
	p.cmd = exec.Command(bin, append(args, slave.Name())...)
	p.cmd.Env = append(os.Environ(), fmt.Sprintf("GPSD_SHM_KEY=0x%08x", shmKey))
	p.cmd.Stdout = p.output
	p.cmd.Stderr = p.output
	p.cmd.SysProcAttr = sysProcAttr()
	if err := p.cmd.Start(); err != nil {
		master.Close()
		slave.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	gpsdPIDs.Lock()
	if gpsdPIDs.m == nil {
		gpsdPIDs.m = make(map[int32]bool)
	}
	gpsdPIDs.m[int32(p.cmd.Process.Pid)] = true
	gpsdPIDs.Unlock()
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	// What gpsd writes to the pty arrives at the master; with -b nothing.
	go func() {
		defer close(p.masterDone)
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			p.wrote += int64(n)
			if err != nil {
				return
			}
		}
	}()
	return p, nil
}

// replayGPSD runs one gpsd on a fresh pty, replays nmea into it and returns
// all TPV reports. gpsd is stopped before it returns.
func replayGPSD(t testing.TB, bin string, nmea []byte) (tpvs []GPSDReport, err error) {
	addr := FreeAddr(t)
	debug := os.Getenv("TRACKGATE_GPSD_DEBUG")
	p, err := startGPSD(bin, addr, debug)
	if err != nil {
		return nil, err
	}
	device := p.slave.Name()
	t.Cleanup(p.stop)
	defer func() {
		p.stop()
		if err == nil && p.wrote > 0 {
			err = fmt.Errorf("gpsd wrote %d bytes to %s although read-only (-b)", p.wrote, device)
		}
		if err != nil {
			err = fmt.Errorf("%w\ngpsd (exit: %v) %s", err, p.waitErr, p.output)
		} else if debug != "" {
			t.Logf("testenv: gpsd %s", p.output)
		}
	}()

	startDeadline := time.Now().Add(gpsdStartTimeout)
	for {
		p.conn, err = net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			break
		}
		if time.Now().After(startDeadline) {
			return nil, fmt.Errorf("connect to gpsd on %s: %w", addr, err)
		}
		select {
		case <-p.exited:
			err := fmt.Errorf("gpsd on %s exited before accepting connections", addr)
			if strings.Contains(p.output.String(), "in use") {
				err = fmt.Errorf("%w: %w", err, errGPSDPortTaken)
			}
			return nil, err
		case <-time.After(20 * time.Millisecond):
		}
	}
	if _, err := p.conn.Write([]byte(gpsdWatch)); err != nil {
		return nil, fmt.Errorf("send WATCH to gpsd on %s: %w", addr, err)
	}

	msgs := make(chan gpsdMsg)
	readErr := make(chan error, 1)
	quit := make(chan struct{})
	defer close(quit)
	go func() {
		defer close(msgs)
		sc := bufio.NewScanner(p.conn)
		sc.Buffer(make([]byte, 64<<10), gpsdMaxLine)
		for sc.Scan() {
			m := gpsdMsg{raw: bytes.Clone(sc.Bytes())}
			if err := json.Unmarshal(m.raw, &m); err != nil {
				readErr <- fmt.Errorf("gpsd sent a line that is not JSON: %q: %w", m.raw, err)
				return
			}
			select {
			case msgs <- m:
			case <-quit:
				return
			}
		}
		readErr <- sc.Err()
	}()
	// next returns the next message, or an error when gpsd hangs up or exits
	// or the deadline passes.
	next := func(deadline time.Time, doing string) (gpsdMsg, error) {
		timer := time.NewTimer(time.Until(deadline))
		defer timer.Stop()
		select {
		case m, ok := <-msgs:
			if !ok {
				err := <-readErr
				if err == nil {
					err = errors.New("connection closed")
				}
				return m, fmt.Errorf("gpsd on %s while %s: %w", addr, doing, err)
			}
			return m, nil
		case <-p.exited:
			return gpsdMsg{}, fmt.Errorf("gpsd on %s exited while %s", addr, doing)
		case <-timer.C:
			return gpsdMsg{}, fmt.Errorf("gpsd on %s: timed out while %s", addr, doing)
		}
	}

	// Wait until gpsd has the pty open.
	for ready := false; !ready; {
		m, err := next(startDeadline, "waiting for it to open "+device)
		if err != nil {
			return nil, err
		}
		switch m.Class {
		case "DEVICES":
			var d struct{ Devices []gpsdDevice }
			if err := json.Unmarshal(m.raw, &d); err != nil {
				return nil, fmt.Errorf("gpsd DEVICES %s: %w", m.raw, err)
			}
			ours := false
			for _, dev := range d.Devices {
				if dev.Path == device {
					ours = true
					ready = dev.open()
				}
			}
			if !ours {
				return nil, fmt.Errorf("the server on %s has devices %s, not %s: %w", addr, m.raw, device, errGPSDPortTaken)
			}
		case "DEVICE":
			var d gpsdDevice
			if err := json.Unmarshal(m.raw, &d); err != nil {
				return nil, fmt.Errorf("gpsd DEVICE %s: %w", m.raw, err)
			}
			ready = d.Path == device && d.open()
		}
	}

	replayDeadline := time.Now().Add(gpsdReplayTimeout)
	written := make(chan error, 1)
	go func() { written <- writeLog(p.master, nmea, replayDeadline) }()
	doing := fmt.Sprintf("replaying %d bytes", len(nmea))
	for {
		m, err := next(replayDeadline, doing)
		if err != nil {
			return nil, err
		}
		switch m.Class {
		case "TPV":
			var r GPSDReport
			if err := json.Unmarshal(m.raw, &r); err != nil {
				return nil, err
			}
			if r.Device != device {
				return nil, fmt.Errorf("gpsd sent a TPV from %q, not %s: %s", r.Device, device, m.raw)
			}
			tpvs = append(tpvs, r)
		case "DEVICE":
			var d gpsdDevice
			if err := json.Unmarshal(m.raw, &d); err != nil {
				return nil, fmt.Errorf("gpsd DEVICE %s: %w", m.raw, err)
			}
			if d.Path != device || !d.closed() {
				continue
			}
			// The writer returns right after the end-of-input comment
			// that made gpsd close the pty; anything else closed it early.
			select {
			case err := <-written:
				return tpvs, err
			case <-time.After(gpsdEOFGrace):
				return nil, fmt.Errorf("gpsd closed %s before the end of the log", device)
			}
		case "ERROR":
			return nil, fmt.Errorf("gpsd error: %s", m.raw)
		}
	}
}

// openPTY opens a pty. The master is made non-blocking so that a read ends
// when it is closed and writes honour deadlines; the slave is put in raw
// mode (gpsd does that too when it opens it) and kept open until the end.
func openPTY() (master, slave *os.File, err error) {
	m, s, err := pty.Open()
	if err != nil {
		return nil, nil, fmt.Errorf("open pty: %w", err)
	}
	fd, err := unix.FcntlInt(m.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	m.Close()
	if err == nil {
		err = unix.SetNonblock(fd, true)
		if err != nil {
			unix.Close(fd)
		}
	}
	if err != nil {
		s.Close()
		return nil, nil, fmt.Errorf("pty master: %w", err)
	}
	master = os.NewFile(uintptr(fd), "/dev/ptmx")
	tio, err := unix.IoctlGetTermios(int(s.Fd()), unix.TCGETS)
	if err == nil {
		tio.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
		tio.Oflag &^= unix.OPOST
		tio.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		tio.Cflag &^= unix.CSIZE | unix.PARENB
		tio.Cflag |= unix.CS8
		err = unix.IoctlSetTermios(int(s.Fd()), unix.TCSETS, tio)
	}
	if err != nil {
		master.Close()
		s.Close()
		return nil, nil, fmt.Errorf("make %s raw: %w", s.Name(), err)
	}
	return master, s, nil
}

// writeLog writes data to the pty master line by line (a line ends after
// '\n', or after a '\r' not followed by '\n'), then gpsd's end-of-input
// comment, preceded by '\n' if data does not end with one.
func writeLog(w *os.File, data []byte, deadline time.Time) error {
	if err := w.SetWriteDeadline(deadline); err != nil {
		return fmt.Errorf("set pty write deadline: %w", err)
	}
	eof := gpsdEOF
	if n := len(data); n > 0 && data[n-1] != '\n' {
		eof = "\n" + eof
	}
	for len(data) > 0 {
		n := lineLen(data)
		if _, err := w.Write(data[:n]); err != nil {
			return fmt.Errorf("write to pty: %w", err)
		}
		data = data[n:]
	}
	if _, err := w.Write([]byte(eof)); err != nil {
		return fmt.Errorf("write to pty: %w", err)
	}
	return nil
}

// lineLen returns the length of the first line of data with its line end.
func lineLen(data []byte) int {
	for i, c := range data {
		if c == '\n' || c == '\r' && (i+1 == len(data) || data[i+1] != '\n') {
			return i + 1
		}
	}
	return len(data)
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = b.buf[over:]
	}
	return len(p), nil
}

// String returns the output kept, introduced for a message.
func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(bytes.TrimSpace(b.buf)) == 0 {
		return "printed nothing"
	}
	return "output:\n" + string(b.buf)
}
