package gpssim

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	nmea "github.com/adrianmo/go-nmea"
	"go.bug.st/serial"
	"golang.org/x/sys/unix"
)

// epochLog collects what OnEpoch reports.
type epochLog struct {
	mu    sync.Mutex
	fixes []Fix
	lag   []time.Duration // written - fix time
}

func (l *epochLog) onEpoch(f Fix, written time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fixes = append(l.fixes, f)
	l.lag = append(l.lag, written.Sub(f.Time))
}

func (l *epochLog) snapshot() ([]Fix, []time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Fix(nil), l.fixes...), append([]time.Duration(nil), l.lag...)
}

// startSim runs a Sim for the test and waits until it is plugged in. When
// the test ends it stops it and checks that it cleaned up.
func startSim(t *testing.T, cfg Config) *Sim {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not return after its context ended")
		}
		if cfg.Link != "" {
			if _, err := os.Lstat(cfg.Link); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("link %s left behind (%v)", cfg.Link, err)
			}
		}
		if s.Path() != "" {
			t.Errorf("Path() = %q after Run returned", s.Path())
		}
	})
	select {
	case <-s.Ready():
	case err := <-done:
		t.Fatalf("Run = %v before it was ready", err)
	case <-time.After(5 * time.Second):
		t.Fatal("not ready after 5 s")
	}
	return s
}

// openPort opens path as the gateway would; the test closes it when it ends.
func openPort(t *testing.T, path string, baud int) serial.Port {
	t.Helper()
	p, err := serial.Open(path, &serial.Mode{BaudRate: baud})
	if err != nil {
		t.Fatalf("serial.Open(%s): %v", path, err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// readFor reads from p for d.
func readFor(t *testing.T, p serial.Port, d time.Duration) []byte {
	t.Helper()
	return readUntil(t, p, d, func([]byte) bool { return false })
}

// readUntil reads from p until done says so or d has passed.
func readUntil(t *testing.T, p serial.Port, d time.Duration, done func([]byte) bool) []byte {
	t.Helper()
	if err := p.SetReadTimeout(10 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	var out []byte
	buf := make([]byte, 4096)
	for end := time.Now().Add(d); time.Now().Before(end) && !done(out); {
		n, err := p.Read(buf)
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		out = append(out, buf[:n]...)
	}
	return out
}

// lines splits what a reader got into lines without their CR LF.
func lines(b []byte) []string {
	return strings.Split(strings.TrimSuffix(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n"), "\n")
}

// rmcTimes returns the times of the RMC sentences of ls.
func rmcTimes(t *testing.T, ls []string, day time.Time) []time.Time {
	t.Helper()
	var times []time.Time
	for _, l := range ls {
		if i := strings.Index(l, "RMC,"); i >= 0 {
			s, err := nmea.Parse(l[strings.LastIndexByte(l[:i], '$'):])
			if err != nil {
				continue // a bad checksum
			}
			m := s.(nmea.RMC)
			times = append(times, nmea.DateTime(day.Year(), m.Date, m.Time))
		}
	}
	return times
}

// TestSimOnPTY runs a u-blox at 10 Hz and reads it through the link with
// go.bug.st/serial: the banner comes first, then epochs on the 100 ms whose
// bytes are exactly the fixes OnEpoch reports, void for the first 700 ms of
// the run.
func TestSimOnPTY(t *testing.T) {
	t.Parallel()
	var log epochLog
	link := filepath.Join(t.TempDir(), "var", "gps0")
	const void = 700 * time.Millisecond
	before := time.Now()
	s := startSim(t, Config{Link: link, Rate: 10, Baud: 9600, Profile: UBlox, Lat: 52.3702, Lon: 4.8952,
		Speed: 13.9, Seed: 1, Faults: Faults{Void: void}, OnEpoch: log.onEpoch})
	ready := time.Now()
	if target, err := os.Readlink(link); err != nil || target != s.Path() || !strings.HasPrefix(target, "/dev/pts/") {
		t.Fatalf("link -> %q, %v; Path() = %q", target, err, s.Path())
	}
	port := openPort(t, link, 9600)
	started := time.Now()
	got := readUntil(t, port, 10*time.Second, func(b []byte) bool {
		return strings.Count(string(b), "$GNRMC") > 15 || time.Since(started) > 1500*time.Millisecond
	})
	port.Close()
	time.Sleep(50 * time.Millisecond) // the epoch on its way when the port closed
	fixes, lag := log.snapshot()

	ls := lines(got)
	if len(ls) < 7 || strings.Join(ls[:7], "\r\n")+"\r\n" != string(AppendBanner(nil, UBlox)) {
		t.Fatalf("did not start with the banner: %q", ls[:min(len(ls), 8)])
	}
	for _, l := range ls {
		if _, err := nmea.Parse(l); err != nil {
			t.Fatalf("nmea.Parse(%q): %v", l, err)
		}
	}
	// Group the sentences into epochs and compare each but the last, which
	// may not have been read whole, with its fix.
	rest := strings.Join(ls[7:], "\r\n") + "\r\n"
	epochs := strings.SplitAfter(rest, "\r\n$GNRMC")
	n := len(epochs) - 1
	if n < 5 || len(fixes) < n+1 || len(fixes) > n+2 {
		t.Fatalf("%d epochs read, %d reported", n+1, len(fixes))
	}
	for i, f := range fixes[:n] {
		want := string(AppendEpoch(nil, UBlox, f)) + "$GNRMC"
		if i > 0 {
			want = want[len("$GNRMC"):]
		}
		if epochs[i] != want {
			t.Errorf("epoch %d:\n%q\nwant\n%q", i, epochs[i], want)
		}
	}
	var valid int
	for i, f := range fixes {
		if f.Time.UnixMilli()%100 != 0 || i > 0 && !f.Time.After(fixes[i-1].Time) {
			t.Errorf("epoch %d at %v, want later ones on the 100 ms", i, f.Time.Format("15:04:05.000"))
		}
		if lag[i] < 0 || lag[i] > time.Second {
			t.Errorf("epoch %d written %v after its time", i, lag[i])
		}
		if f.Valid {
			valid++
		}
		if f.Time.Before(before.Add(void)) && f.Valid || !f.Time.Before(ready.Add(void)) && !f.Valid {
			t.Errorf("epoch %d at %v: valid %v; the void period ended between %v and %v", i,
				f.Time.Format("15:04:05.000"), f.Valid, before.Add(void).Format("15:04:05.000"), ready.Add(void).Format("15:04:05.000"))
		}
	}
	if valid == 0 {
		t.Error("no valid epoch")
	}
	if n := s.Received(); n != 0 {
		t.Errorf("Received() = %d from a reader that never wrote", n)
	}
}

// TestNoStaleBytes checks that what the receiver sends while nobody listens,
// or while a reader does not read, is lost as on a real UART, and that the
// Sim never blocks.
func TestNoStaleBytes(t *testing.T) {
	t.Parallel()
	var log epochLog
	s := startSim(t, Config{Rate: 20, Profile: UBlox, Speed: 10, OnEpoch: log.onEpoch})
	time.Sleep(300 * time.Millisecond) // six epochs with nobody listening
	if fixes, _ := log.snapshot(); len(fixes) != 0 {
		t.Fatalf("%d epochs written with nobody listening", len(fixes))
	}

	check := func(what string, wantBanner bool) {
		opened := time.Now()
		port := openPort(t, s.Path(), 9600)
		ls := lines(readUntil(t, port, 5*time.Second, func(b []byte) bool { return strings.Count(string(b), "$GNRMC") >= 3 }))
		port.Close()
		if wantBanner != strings.HasPrefix(ls[0], "$GNTXT") || !wantBanner && !strings.HasPrefix(ls[0], "$GNRMC") {
			t.Fatalf("%s: first line %q", what, ls[0])
		}
		// An epoch is sent once due, and at most one period late.
		if times := rmcTimes(t, ls, opened); len(times) < 3 || times[0].Before(opened.Add(-50*time.Millisecond)) {
			t.Fatalf("%s: opened at %v, got epochs %v", what, opened.Format("15:04:05.000"), times)
		}
	}
	check("after nobody listened", true)
	time.Sleep(200 * time.Millisecond)
	check("after a reader went away", false)

	// A reader that does not read: its queue fills up in about a second,
	// then the epochs that do not fit are lost.
	idle := openPort(t, s.Path(), 9600)
	full := false
	for end := time.Now().Add(10 * time.Second); !full && time.Now().Before(end); {
		before, _ := log.snapshot()
		time.Sleep(300 * time.Millisecond)
		after, _ := log.snapshot()
		full = len(before) > 0 && len(after) == len(before)
	}
	if !full {
		t.Error("epochs still written to a reader that has not read for 10 s")
	}
	idle.Close()
	// The Sim flushes what a reader left unread as soon as it sees the
	// reader close the device: a reader that reopens it within that moment
	// could still get some.
	time.Sleep(200 * time.Millisecond)
	check("after a reader that did not read", false)
}

// TestLineSpeed checks that the line speed a reader sets through
// go.bug.st/serial can be read on the master, and that a Sim sends garbage
// to a reader at the wrong speed.
func TestLineSpeed(t *testing.T) {
	t.Parallel()
	t.Run("read on the master", func(t *testing.T) {
		p, err := openPlug(4800)
		if err != nil {
			t.Fatal(err)
		}
		defer p.close()
		if got, err := p.speed(); err != nil || got != 4800 {
			t.Fatalf("speed before anyone set it = %d, %v; want 4800", got, err)
		}
		for _, baud := range []int{9600, 115200, 4800, 38400, 921600} {
			port := openPort(t, p.path, baud)
			if got, err := p.speed(); err != nil || got != baud {
				t.Errorf("reader at %d: speed() = %d, %v", baud, got, err)
			}
			port.Close()
		}
	})
	t.Run("garbage at the wrong speed", func(t *testing.T) {
		var log epochLog
		s := startSim(t, Config{Rate: 10, Baud: 9600, Profile: SiRF, OnEpoch: log.onEpoch})
		wrong := openPort(t, s.Path(), 4800)
		got := readUntil(t, wrong, 5*time.Second, func(b []byte) bool { return len(b) >= 1000 })
		wrong.Close()
		if len(got) < 1000 || strings.Contains(string(got), "$") {
			t.Fatalf("at 4800 baud got %d bytes: %q", len(got), got)
		}
		if fixes, _ := log.snapshot(); len(fixes) != 0 {
			t.Errorf("OnEpoch called %d times for garbage", len(fixes))
		}
		right := openPort(t, s.Path(), 9600)
		ls := lines(readUntil(t, right, 5*time.Second, func(b []byte) bool { return strings.Count(string(b), "\n") >= 12 }))
		for _, l := range ls {
			if _, err := nmea.Parse(l); err != nil {
				t.Fatalf("at 9600 baud: nmea.Parse(%q): %v", l, err)
			}
		}
		if len(ls) < 12 {
			t.Errorf("at 9600 baud got %d sentences: %q", len(ls), ls)
		}
	})
}

// TestUnplug checks that unplugging hangs up a reader blocked in Read and
// removes the link, and that plugging back in brings a working pty, again
// and again.
func TestUnplug(t *testing.T) {
	t.Parallel()
	link := filepath.Join(t.TempDir(), "gps0")
	s := startSim(t, Config{Link: link, Rate: 10, Profile: UBlox,
		Faults: Faults{UnplugAfter: time.Second, ReplugAfter: 300 * time.Millisecond}})
	first := s.Path()
	port := openPort(t, link, 9600)
	if err := port.SetReadTimeout(serial.NoTimeout); err != nil {
		t.Fatal(err)
	}
	readErr := make(chan error, 1)
	go func() {
		buf := make([]byte, 1024)
		for {
			if _, err := port.Read(buf); err != nil {
				readErr <- err
				return
			}
		}
	}()
	select {
	case err := <-readErr:
		var pe *serial.PortError
		if !errors.As(err, &pe) || pe.Code() != serial.PortClosed {
			t.Errorf("Read after unplug = %v, want the port closed error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a blocked Read did not return after unplug")
	}
	if s.Path() != "" {
		t.Errorf("Path() = %q while unplugged", s.Path())
	}
	if _, err := os.Lstat(link); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("link while unplugged: %v", err)
	}
	if _, err := os.Stat(first); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s while unplugged: %v", first, err)
	}
	if _, err := port.Write([]byte("x")); err == nil {
		t.Error("Write after unplug succeeded")
	}

	for cycle := range 2 {
		waitFor(t, "replug", func() bool { return s.Path() != "" })
		path := s.Path()
		if target, err := os.Readlink(link); err != nil || target != path {
			t.Fatalf("cycle %d: link -> %q, %v; Path() = %q", cycle, target, err, path)
		}
		port := openPort(t, link, 9600)
		ls := lines(readUntil(t, port, 5*time.Second, func(b []byte) bool { return strings.Count(string(b), "GNRMC") >= 2 }))
		if !strings.HasPrefix(ls[0], "$GNTXT") || len(rmcTimes(t, ls, time.Now())) < 2 {
			t.Fatalf("cycle %d: after replug got %q", cycle, ls)
		}
		port.Close()
		waitFor(t, "unplug", func() bool { return s.Path() == "" })
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("no %s after 5 s", what)
		}
	}
}

// TestFaultsOnTheWire checks that checksums go bad, garbage appears and
// sentences go missing at about the configured rates.
func TestFaultsOnTheWire(t *testing.T) {
	t.Parallel()
	var log epochLog
	s := startSim(t, Config{Rate: 20, Profile: MTK, Seed: 42, OnEpoch: log.onEpoch,
		Faults: Faults{BadChecksum: 0.1, Garbage: 0.1, Drop: 0.1}})
	port := openPort(t, s.Path(), 9600)
	ls := lines(readFor(t, port, 2500*time.Millisecond))
	var badsum, garbage, sentences int
	var first, last string // times of the epochs read
	for _, l := range ls {
		i := strings.IndexByte(l, '$')
		if i < 0 {
			t.Fatalf("line without a sentence: %q", l)
		}
		if i > 0 {
			garbage++
		}
		l = l[i:]
		if strings.HasPrefix(l, "$PMTK01") {
			continue // the banner
		}
		sentences++
		if _, err := nmea.Parse(l); err != nil {
			if !strings.Contains(err.Error(), "checksum mismatch") {
				t.Fatalf("nmea.Parse(%q): %v", l, err)
			}
			badsum++
		}
		tm := strings.Split(l, ",")[1]
		if first == "" {
			first = tm
		}
		last = tm
	}
	// Both sentences of an epoch can go missing: count the sentences of
	// the epochs written from the first to the last read.
	fixes, _ := log.snapshot()
	n := 0
	for _, f := range fixes {
		if tm := f.Time.Format("150405.000"); tm >= first && tm <= last {
			n += 2
		}
	}
	dropped := n - sentences
	t.Logf("%d sentences sent: %d dropped, %d bad checksums, %d garbage", n, dropped, badsum, garbage)
	if n < 40 {
		t.Fatalf("only %d sentences sent", n)
	}
	for what, got := range map[string]int{"dropped": dropped, "bad checksums": badsum, "garbage": garbage} {
		if want := n / 10; got < want/3 || got > want*2 {
			t.Errorf("%s: %d of %d sentences, want about %d", what, got, n, want)
		}
	}
}

// TestMTKQuery checks that the bytes a reader writes are counted and that
// an MTK answers its firmware query.
func TestMTKQuery(t *testing.T) {
	t.Parallel()
	s := startSim(t, Config{Rate: 5, Profile: MTK})
	port := openPort(t, s.Path(), 9600)
	query := mtkQuery + "\r\n"
	if _, err := port.Write([]byte(query)); err != nil {
		t.Fatal(err)
	}
	answer := string(AppendSentence(nil, mtkRelease))
	got := readUntil(t, port, 2*time.Second, func(b []byte) bool { return strings.Contains(string(b), answer) })
	if !strings.Contains(string(got), answer) || !strings.HasPrefix(string(got), string(AppendBanner(nil, MTK))) {
		t.Fatalf("got %q, want the banner, then %q", got, answer)
	}
	waitFor(t, "bytes received", func() bool { return s.Received() == int64(len(query)) })
}

// TestMidnightRollover runs a Sim whose clock crosses midnight at the end
// of a year and checks the dates the reader gets.
func TestMidnightRollover(t *testing.T) {
	t.Parallel()
	newYear := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	offset := time.Until(newYear.Add(-1500 * time.Millisecond))
	s := startSim(t, Config{Rate: 10, Profile: UBlox, Now: func() time.Time { return time.Now().Add(offset) }})
	port := openPort(t, s.Path(), 9600)
	ls := lines(readUntil(t, port, 10*time.Second, func(b []byte) bool { return strings.Contains(string(b), ",010127,") }))
	var before, after int
	for _, tm := range rmcTimes(t, ls, newYear) {
		switch {
		case tm.Before(newYear.Add(-2*time.Second)) || tm.After(newYear.Add(5*time.Second)):
			t.Errorf("epoch at %v", tm)
		case tm.Before(newYear):
			before++
		default:
			after++
		}
	}
	if before == 0 || after == 0 {
		t.Errorf("%d epochs in 2026, %d in 2027; want both:\n%s", before, after, strings.Join(ls, "\n"))
	}
}

// TestExclusiveModeCleared checks that a reader that dies in exclusive mode
// does not lock the next one out.
func TestExclusiveModeCleared(t *testing.T) {
	t.Parallel()
	s := startSim(t, Config{Rate: 10})
	fd, err := unix.Open(s.Path(), unix.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetInt(fd, unix.TIOCEXCL, 0); err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	// Opening the pty as root works in exclusive mode too; see whether the
	// mode is still set.
	waitFor(t, "exclusive mode cleared", func() bool {
		fd, err := unix.Open(s.Path(), unix.O_RDWR|unix.O_NOCTTY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		excl, err := unix.IoctlGetInt(fd, unix.TIOCGEXCL)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		return excl == 0
	})
}

func TestNew(t *testing.T) {
	t0 := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"zero value", Config{}, ""},
		{"route", Config{Route: []Point{{Lat: 1, Time: t0}, {Lat: 2, Time: t0.Add(time.Second)}}}, ""},
		{"slow rate", Config{Rate: 0.05}, "rate 0.05: want 0.1 to 20"},
		{"fast rate", Config{Rate: 25}, "rate 25: want 0.1 to 20"},
		{"profile", Config{Profile: "garmin"}, `profile "garmin": want ublox, sirf or mtk`},
		{"baud", Config{Baud: 1234}, "baud 1234: want 0 or one of"},
		{"speed", Config{Speed: -1}, "speed -1 m/s"},
		{"faults", Config{Faults: Faults{Drop: 2}}, "faults: drop=2"},
		{"start", Config{Lat: 89}, "start 89, 0"},
		{"bad route", Config{Route: []Point{{Lat: 1, Time: t0}, {Lat: 2}}}, "route: 1 of 2 points have no time"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(tc.cfg)
			if tc.wantErr == "" {
				if err != nil || s.period != time.Second || s.cfg.Profile != UBlox {
					t.Fatalf("New = %v; period %v profile %q", err, s.period, s.cfg.Profile)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("New = %v, want an error with %q", err, tc.wantErr)
			}
		})
	}
}

func TestRunTwice(t *testing.T) {
	t.Parallel()
	s := startSim(t, Config{Rate: 10})
	if err := s.Run(context.Background()); err == nil {
		t.Error("a second Run succeeded")
	}
}
