//go:build linux

package testenv

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite internal/epoch/testdata/*.gpsd.jsonl from gpsd's reports")

// gpsdNoGolden lists the fixtures that have no golden file, and why.
var gpsdNoGolden = map[string]string{
	"gns-only.nmea": "nothing dates it: gpsd's TPVs have no time, so they cannot be matched to epochs",
}

// gpsdHighPrecision lists the fixtures whose receivers exceed NMEA's 82
// characters (u-blox high-precision mode, Trimble's 8 decimals).
var gpsdHighPrecision = map[string]bool{"rtk.nmea": true, "gga-gsa-zda.nmea": true}

// gpsdFixtures returns the receiver logs in internal/epoch/testdata.
func gpsdFixtures(t *testing.T) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(RepoRoot(t), "internal", "epoch", "testdata", "*.nmea"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no fixtures in internal/epoch/testdata (%v)", err)
	}
	return paths
}

// goldenLines encodes reports as a golden file.
func goldenLines(t *testing.T, reports []GPSDReport) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, r := range reports {
		line, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("encode %+v: %v", r, err)
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// TestGPSDReportsFixtures replays every fixture that has a golden file
// through gpsd and compares the reports with it, so that a changed gpsd (or
// fixture) shows. With -update it rewrites the golden files instead.
func TestGPSDReportsFixtures(t *testing.T) {
	for _, path := range gpsdFixtures(t) {
		name := filepath.Base(path)
		golden := strings.TrimSuffix(path, ".nmea") + ".gpsd.jsonl"
		t.Run(name, func(t *testing.T) {
			if reason, ok := gpsdNoGolden[name]; ok {
				if _, err := os.Stat(golden); err == nil {
					t.Errorf("%s exists, but %s is listed as having no golden file (%s)", golden, name, reason)
				}
				t.Skipf("no golden file: %s", reason)
			}
			t.Parallel()
			nmea, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			reports := GPSDReports(t, nmea)
			var last time.Time
			for i, r := range reports {
				if r.Time.IsZero() {
					continue
				}
				if !r.Time.After(last) {
					t.Errorf("report %d: time %v does not follow %v: not one report per epoch", i, r.Time, last)
				}
				last = r.Time
			}
			got := goldenLines(t, reports)
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				t.Logf("wrote %s (%d reports)", golden, len(reports))
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v; run `go test -run TestGPSDReportsFixtures ./internal/testenv/ -update`", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("gpsd (%s) no longer gives %s:\n%s", gpsdVersion(), filepath.Base(golden), lineDiff(string(want), string(got)))
			}
			if again := goldenLines(t, ReadGPSDGolden(t, golden)); !bytes.Equal(again, want) {
				t.Errorf("ReadGPSDGolden and MarshalJSON do not round-trip %s:\n%s", golden, lineDiff(string(want), string(again)))
			}
		})
	}
}

// gpsdVersion returns what `gpsd -V` prints.
func gpsdVersion() string {
	bin, err := gpsdBinary()
	if err != nil {
		return err.Error()
	}
	out, err := exec.Command(bin, "-V").CombinedOutput()
	if err != nil {
		return fmt.Sprintf("%s -V: %v", bin, err)
	}
	return strings.TrimSpace(string(out))
}

// lineDiff describes the first difference between two texts.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return fmt.Sprintf("line %d (of %d, want %d):\n got %s\nwant %s", i+1, len(g), len(w), gl, wl)
		}
	}
	return "no difference"
}

// TestGPSDFindings checks the main findings on gpsd noted at the top of
// gpsd.go, on small logs.
func TestGPSDFindings(t *testing.T) {
	t.Run("cycles, rollover, altitude, knots", func(t *testing.T) {
		t.Parallel()
		// RMC dated 31 Dec 2016 and 1 Jan 2017: gpsd moves the first by
		// 1024 weeks.
		log := nmeaLog(
			"$GPRMC,235958.00,A,5222.20000,N,00453.40000,E,10.0,90.0,311216,,,A",
			"$GPGGA,235958.00,5222.20000,N,00453.40000,E,1,08,1.0,10.0,M,46.0,M,,",
			"$GPRMC,235959.00,A,5222.20000,N,00453.40900,E,10.0,90.0,311216,,,A",
			"$GPGGA,235959.00,5222.20000,N,00453.40900,E,1,08,1.0,10.0,M,46.0,M,,",
			"$GPRMC,000000.00,A,5222.20000,N,00453.41800,E,10.0,90.0,010117,,,A",
			"$GPGGA,000000.00,5222.20000,N,00453.41800,E,1,08,1.0,10.0,M,46.0,M,,",
			"$GPRMC,000001.00,A,5222.20000,N,00453.42700,E,10.0,90.0,010117,,,A",
			"$GPGGA,000001.00,5222.20000,N,00453.42700,E,1,08,1.0,10.0,M,46.0,M,,",
		)
		all := gpsdTPVs(t, log)
		wantTimes := []string{"2036-08-16T23:59:58.000Z", "2036-08-16T23:59:58.000Z", "2036-08-16T23:59:59.000Z", "2017-01-01T00:00:00.000Z", "2017-01-01T00:00:01.000Z"}
		if got := reportTimes(all); strings.Join(got, " ") != strings.Join(wantTimes, " ") {
			t.Errorf("TPV times %q, want %q (one per sentence in the first epoch, then one per epoch)", got, wantTimes)
		}
		reports := lastPerTime(all)
		if len(reports) != 4 {
			t.Fatalf("%d reports, want 4", len(reports))
		}
		for i, r := range reports {
			if !r.Has["alt"] || !r.Has["altMSL"] || r.AltMSL != 10 || !r.Has["altHAE"] || math.Abs(r.AltHAE-(r.AltMSL+r.GeoidSep)) > 1e-3 || r.GeoidSep != 46 {
				t.Errorf("report %d: altMSL %v altHAE %v geoidSep %v (has %v), want alt = altMSL = 10, altHAE = altMSL + geoidSep 46", i, r.AltMSL, r.AltHAE, r.GeoidSep, r.Has)
			}
			if want := 10 * 1852.0 / 3600; math.Abs(r.Speed-want) > 0.0005 || r.Track != 90 || r.Mode != 3 {
				t.Errorf("report %d: speed %v track %v mode %d, want %.3f 90 3", i, r.Speed, r.Track, r.Mode, want)
			}
			if r.Has["status"] {
				t.Errorf("report %d: status %d for a plain fix", i, r.Status)
			}
		}
	})

	t.Run("GGA only: no time, gpsd's geoid", func(t *testing.T) {
		t.Parallel()
		log := nmeaLog(
			"$GPGGA,120000.00,5222.20000,N,00453.40000,E,1,08,1.0,10.0,M,,M,,",
			"$GPGGA,120001.00,5222.20100,N,00453.40100,E,1,08,1.0,10.1,M,,M,,",
			"$GPGGA,120002.00,5222.20200,N,00453.40200,E,1,08,1.0,10.2,M,,M,,",
		)
		all := gpsdTPVs(t, log)
		if len(all) != 3 {
			t.Fatalf("%d TPVs, want one per GGA", len(all))
		}
		for i, r := range all {
			if r.Has["time"] || !r.Has["lat"] || !r.Has["geoidSep"] || math.Abs(r.GeoidSep-44.108) > 0.01 {
				t.Errorf("TPV %d: %+v, want no time, a position and gpsd's geoid separation 44.108", i, r)
			}
		}
	})

	t.Run("GNS navigational status V", func(t *testing.T) {
		t.Parallel()
		var lines []string
		for s := 10; s < 16; s++ {
			navStatus := ",V" // NMEA 4.10, as u-blox sends it
			if s >= 13 {
				navStatus = "" // NMEA 4.0
			}
			lines = append(lines,
				fmt.Sprintf("$GNRMC,0230%02d.00,A,3110.42346,N,12123.45677,E,1.0,90.0,100925,,,A", s),
				fmt.Sprintf("$GNGNS,0230%02d.00,3110.42346,N,12123.45677,E,AAN,17,0.72,11.6,9.8,,%s", s, navStatus))
		}
		reports := GPSDReports(t, nmeaLog(lines...))
		if len(reports) != 6 {
			t.Fatalf("%d reports, want 6", len(reports))
		}
		for i, r := range reports {
			if withAlt := i >= 3; r.Has["altMSL"] != withAlt || !r.Has["lat"] {
				t.Errorf("report %d: has %v: want a position, and an altitude only from 12-field GNS", i, r.Has)
			}
		}
	})

	t.Run("gns-only.nmea: no time", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(RepoRoot(t), "internal", "epoch", "testdata", "gns-only.nmea")
		nmea, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		all := gpsdTPVs(t, nmea)
		if len(all) != bytes.Count(nmea, []byte("GNS,")) {
			t.Errorf("%d TPVs, want one per GNS", len(all))
		}
		for i, r := range all {
			if r.Has["time"] || !r.Has["lat"] || !r.Has["altMSL"] {
				t.Errorf("TPV %d has %v: want a position and altitude, no time", i, r.Has)
			}
		}
	})
}

// nmeaLog appends checksums and CR LF to sentences given without them.
func nmeaLog(sentences ...string) []byte {
	var b bytes.Buffer
	for _, s := range sentences {
		fmt.Fprintf(&b, "%s*%02X\r\n", s, nmeaChecksum(s[1:]))
	}
	return b.Bytes()
}

// nmeaChecksum is the XOR of the bytes between '$' and '*'.
func nmeaChecksum(body string) byte {
	var c byte
	for i := 0; i < len(body); i++ {
		c ^= body[i]
	}
	return c
}

func reportTimes(reports []GPSDReport) []string {
	var out []string
	for _, r := range reports {
		out = append(out, formatGPSDTime(r.Time))
	}
	return out
}

func TestGPSDReportJSON(t *testing.T) {
	const tpv = `{"class":"TPV","device":"/dev/pts/3","status":2,"mode":3,"time":"2025-06-14T09:12:30.100Z","ept":0.005,"lat":47.306702000,"lon":8.529640000,"altHAE":479.3000,"altMSL":431.2000,"alt":431.2000,"track":312.4000,"speed":30.500,"geoidSep":48.100}`
	var r GPSDReport
	if err := json.Unmarshal([]byte(tpv), &r); err != nil {
		t.Fatal(err)
	}
	want := GPSDReport{
		Time: time.Date(2025, 6, 14, 9, 12, 30, 100e6, time.UTC), Mode: 3, Status: 2,
		Lat: 47.306702, Lon: 8.52964, AltMSL: 431.2, AltHAE: 479.3, GeoidSep: 48.1, Speed: 30.5, Track: 312.4,
		Device: "/dev/pts/3",
	}
	got := r
	got.Has = nil
	if !got.Time.Equal(want.Time) || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("decoded %+v\nwant    %+v", got, want)
	}
	for _, k := range []string{"class", "ept", "alt", "altMSL", "status"} {
		if !r.Has[k] {
			t.Errorf("Has[%q] = false", k)
		}
	}
	line, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	const golden = `{"time":"2025-06-14T09:12:30.100Z","mode":3,"status":2,"lat":47.306702,"lon":8.52964,"altMSL":431.2,"altHAE":479.3,"geoidSep":48.1,"speed":30.5,"track":312.4}`
	if string(line) != golden {
		t.Errorf("MarshalJSON = %s\nwant          %s", line, golden)
	}

	// An older gpsd's "alt" stands in for "altMSL"; absent keys stay absent.
	if err := json.Unmarshal([]byte(`{"mode":1,"alt":12.5}`), &r); err != nil {
		t.Fatal(err)
	}
	if r.AltMSL != 12.5 || r.Has["altMSL"] || !r.Has["alt"] || !r.Time.IsZero() {
		t.Errorf("decoded %+v", r)
	}
	if line, _ := json.Marshal(r); string(line) != `{"mode":1}` {
		t.Errorf("MarshalJSON = %s, want {\"mode\":1}", line)
	}
}

func TestGPSDLastPerTime(t *testing.T) {
	at := func(s int) time.Time { return time.Date(2025, 1, 1, 0, 0, s, 0, time.UTC) }
	in := []GPSDReport{
		{Mode: 0}, {Mode: 1}, // a cold start without time
		{Time: at(1), Mode: 2}, {Time: at(1), Mode: 3},
		{Time: at(2), Mode: 3},
		{Mode: 1}, // an outage
		{Time: at(4), Mode: 2}, {Time: at(4), Mode: 3},
	}
	var got []string
	for _, r := range lastPerTime(in) {
		got = append(got, fmt.Sprintf("%d@%d", r.Mode, r.Time.Second()))
	}
	if want := "1@0 3@1 3@2 1@0 3@4"; strings.Join(got, " ") != want {
		t.Errorf("lastPerTime = %s, want %s", strings.Join(got, " "), want)
	}
}

// TestGPSDFixturesWellFormed checks the fixtures themselves: CR LF line
// ends, valid upper-case checksums, NMEA's 82 characters (but for the
// high-precision receivers), epochs one receiver period apart and motion
// that agrees with the reported speed and course; and that noisy.nmea has
// each kind of damage it is meant to have.
func TestGPSDFixturesWellFormed(t *testing.T) {
	for _, path := range gpsdFixtures(t) {
		name := filepath.Base(path)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(name, func(t *testing.T) {
			if name == "noisy.nmea" {
				checkNoisy(t, data)
				return
			}
			if !bytes.HasSuffix(data, []byte("\r\n")) {
				t.Errorf("does not end with CR LF")
			}
			lines := strings.Split(strings.TrimSuffix(string(data), "\r\n"), "\r\n")
			for i, line := range lines {
				if err := checkSentence(line); err != nil {
					t.Errorf("line %d: %v: %q", i+1, err, line)
				}
				if len(line)+2 > 82 && !gpsdHighPrecision[name] {
					t.Errorf("line %d: %d characters with CR LF, more than NMEA's 82", i+1, len(line)+2)
				}
			}
			period := time.Second
			if name == "ublox-10hz.nmea" {
				period = 100 * time.Millisecond
			}
			checkMotion(t, lines, period)
		})
	}
}

var sentenceRE = regexp.MustCompile(`^[$!]([^$!*\r\n]*)\*([0-9A-F]{2})$`)

// checkSentence checks a sentence's form and checksum.
func checkSentence(line string) error {
	m := sentenceRE.FindStringSubmatch(line)
	if m == nil {
		return fmt.Errorf("not a sentence with an upper-case checksum")
	}
	if want := fmt.Sprintf("%02X", nmeaChecksum(m[1])); m[2] != want {
		return fmt.Errorf("checksum %s, want %s", m[2], want)
	}
	return nil
}

// fixtureEpoch is what one epoch of a fixture says about the motion.
type fixtureEpoch struct {
	tod           time.Duration // time of day
	lat, lon      float64
	hasPos        bool
	speed, course float64 // from RMC, m/s and degrees
	hasSpeed      bool
}

// checkMotion checks that epochs are one period apart and that positions
// move as the reported speed and course say.
func checkMotion(t *testing.T, lines []string, period time.Duration) {
	t.Helper()
	var epochs []fixtureEpoch
	for i, line := range lines {
		f := strings.Split(line[1:strings.IndexByte(line, '*')], ",")
		if len(f[0]) != 5 || f[0][0] == 'P' {
			continue // proprietary
		}
		typ, timeField, posField := f[0][2:], 1, -1
		valid := false
		switch typ {
		case "RMC":
			posField, valid = 3, f[2] == "A"
		case "GGA":
			posField, valid = 2, f[6] != "0"
		case "GNS":
			posField, valid = 2, !strings.HasPrefix(f[6], "N")
		case "GLL":
			timeField, posField, valid = 5, 1, f[6] == "A"
		case "ZDA":
		default:
			continue
		}
		if f[timeField] == "" {
			continue // a receiver that does not know the time yet
		}
		tod, err := parseTimeOfDay(f[timeField])
		if err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		if len(epochs) == 0 || epochs[len(epochs)-1].tod != tod {
			if n := len(epochs); n > 0 {
				if step := (tod - epochs[n-1].tod + 24*time.Hour) % (24 * time.Hour); step != period {
					t.Errorf("line %d: time %v is %v after %v, want %v", i+1, tod, step, epochs[n-1].tod, period)
				}
			}
			epochs = append(epochs, fixtureEpoch{tod: tod})
		}
		e := &epochs[len(epochs)-1]
		if posField >= 0 && valid && !e.hasPos {
			e.lat, e.lon, e.hasPos = parseDegrees(f[posField], f[posField+1]), parseDegrees(f[posField+2], f[posField+3]), true
		}
		if typ == "RMC" && valid && f[7] != "" {
			kn, _ := strconv.ParseFloat(f[7], 64)
			e.speed, e.hasSpeed = kn*1852/3600, true
			e.course, _ = strconv.ParseFloat(f[8], 64)
		}
	}
	if len(epochs) < 10 || len(epochs) > 60 {
		t.Errorf("%d epochs, want 10 to 60", len(epochs))
	}
	dt := period.Seconds()
	for i := 1; i < len(epochs); i++ {
		a, b := epochs[i-1], epochs[i]
		if !a.hasPos || !b.hasPos {
			continue
		}
		dn := (b.lat - a.lat) * math.Pi / 180 * 6378137
		de := (b.lon - a.lon) * math.Pi / 180 * 6378137 * math.Cos(a.lat*math.Pi/180)
		v := math.Hypot(dn, de) / dt
		if v > 60 {
			t.Errorf("epoch %v: moved at %.1f m/s", b.tod, v)
		}
		if !a.hasSpeed || !b.hasSpeed {
			continue
		}
		// The positions' last decimal and the change of speed within the
		// period allow a few tenths of a m/s.
		speed := (a.speed + b.speed) / 2
		if math.Abs(v-speed) > 0.35 {
			t.Errorf("epoch %v: moved at %.2f m/s, RMC says %.2f", b.tod, v, speed)
		}
		if speed > 3 {
			bearing := math.Mod(math.Atan2(de, dn)*180/math.Pi+360, 360)
			if d := math.Abs(math.Mod(bearing-a.course+540, 360) - 180); d > 10 {
				t.Errorf("epoch %v: moved towards %.1f°, RMC course %.1f°", b.tod, bearing, a.course)
			}
		}
	}
}

// parseTimeOfDay parses hhmmss[.ss].
func parseTimeOfDay(s string) (time.Duration, error) {
	if len(s) < 6 {
		return 0, fmt.Errorf("bad time %q", s)
	}
	h, err1 := strconv.Atoi(s[0:2])
	m, err2 := strconv.Atoi(s[2:4])
	sec, err3 := strconv.ParseFloat(s[4:], 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return 0, fmt.Errorf("bad time %q", s)
	}
	return time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(math.Round(sec*1000))*time.Millisecond, nil
}

// parseDegrees parses (d)ddmm.mmmm with its hemisphere.
func parseDegrees(s, hemi string) float64 {
	v, _ := strconv.ParseFloat(s, 64)
	deg := math.Trunc(v / 100)
	deg += (v - deg*100) / 60
	if hemi == "S" || hemi == "W" {
		deg = -deg
	}
	return deg
}

// noisySentenceRE finds sentences in noisy.nmea with their line ends.
var noisySentenceRE = regexp.MustCompile(`[$!]([^$!*\r\n]*)\*([0-9A-Fa-f]{2})(\r\n|\n|\r)`)

// checkNoisy checks that noisy.nmea has every kind of damage it is meant to
// have, and nothing else wrong.
func checkNoisy(t *testing.T, data []byte) {
	t.Helper()
	var bad, lower, long, lf, cr int
	for _, m := range noisySentenceRE.FindAllSubmatch(data, -1) {
		sum, _ := strconv.ParseUint(string(m[2]), 16, 8)
		switch {
		case byte(sum) != nmeaChecksum(string(m[1])):
			bad++
		case !bytes.Equal(m[2], bytes.ToUpper(m[2])):
			lower++
		case len(m[0]) > 82:
			long++
		}
		switch string(m[3]) {
		case "\n":
			lf++
		case "\r":
			cr++
		}
	}
	for _, c := range []struct {
		what string
		ok   bool
	}{
		{"a partial sentence at the start", data[0] != '$'},
		{"UBX bytes", bytes.Contains(data, []byte{0xB5, 0x62})},
		{"one bad checksum", bad == 1},
		{"one lower-case checksum", lower == 1},
		{"over-long lines (PUBX,00 and a 12-satellite GSV)", long == 2},
		{"one line ending in LF only", lf == 1},
		{"one line ending in CR only", cr == 1},
		{"a $PUBX,00 sentence", bytes.Contains(data, []byte("$PUBX,00,"))},
		{"an !AIVDM line", bytes.Contains(data, []byte("!AIVDM,"))},
	} {
		if !c.ok {
			t.Errorf("noisy.nmea lacks %s (bad %d, lower %d, long %d, LF %d, CR %d)", c.what, bad, lower, long, lf, cr)
		}
	}
}

// TestGPSDReplayFailure checks that a gpsd that dies at once makes a clear
// error, not a hang.
func TestGPSDReplayFailure(t *testing.T) {
	began := time.Now()
	_, err := replayGPSD(t, "/bin/false", nmeaLog("$GPGGA,120000.00,5222.20000,N,00453.40000,E,1,08,1.0,10.0,M,46.0,M,,"))
	if err == nil || !strings.Contains(err.Error(), "exited before accepting connections") || errors.Is(err, errGPSDPortTaken) {
		t.Errorf("replay with /bin/false: %v", err)
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}
