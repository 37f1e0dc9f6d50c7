package gpssim

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	nmea "github.com/adrianmo/go-nmea"
)

// sentences splits rendered output into its sentences, failing unless each
// ends with CR LF.
func sentences(t testing.TB, b []byte) []string {
	t.Helper()
	s := string(b)
	if !strings.HasSuffix(s, "\r\n") {
		t.Fatalf("output does not end with CR LF: %q", s)
	}
	lines := strings.Split(strings.TrimSuffix(s, "\r\n"), "\r\n")
	for _, l := range lines {
		if !strings.HasPrefix(l, "$") || strings.ContainsAny(l, "\r\n") {
			t.Fatalf("bad sentence %q", l)
		}
	}
	return lines
}

// decoded is what a parser reads back from an epoch's sentences.
type decoded struct {
	kinds    []string // talker and type of each sentence, in order
	rmc      nmea.RMC
	gga      nmea.GGA
	vtg      *nmea.VTG
	gll      *nmea.GLL
	gsa      []nmea.GSA
	used     int            // PRNs over all GSAs
	inView   map[string]int // GSV satellites in view by talker
	gsvSeen  map[string]int // GSV satellites listed by talker
	gsvCount map[string]int // GSV sentences by talker
}

func decode(t testing.TB, lines []string) decoded {
	t.Helper()
	d := decoded{inView: map[string]int{}, gsvSeen: map[string]int{}, gsvCount: map[string]int{}}
	for _, l := range lines {
		s, err := nmea.Parse(l)
		if err != nil {
			t.Fatalf("nmea.Parse(%q): %v", l, err)
		}
		d.kinds = append(d.kinds, s.TalkerID()+s.DataType())
		switch m := s.(type) {
		case nmea.RMC:
			d.rmc = m
		case nmea.GGA:
			d.gga = m
		case nmea.VTG:
			d.vtg = &m
		case nmea.GLL:
			d.gll = &m
		case nmea.GSA:
			d.gsa = append(d.gsa, m)
			d.used += len(m.SV)
		case nmea.GSV:
			d.inView[m.TalkerID()] = int(m.NumberSVsInView)
			d.gsvSeen[m.TalkerID()] += len(m.Info)
			d.gsvCount[m.TalkerID()]++
			if int(m.TotalMessages) != max((int(m.NumberSVsInView)+3)/4, 1) || m.MessageNumber > m.TotalMessages {
				t.Errorf("%q: message %d of %d for %d satellites", l, m.MessageNumber, m.TotalMessages, m.NumberSVsInView)
			}
		default:
			t.Fatalf("unexpected sentence %q", l)
		}
	}
	return d
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func checkTime(t *testing.T, what string, got nmea.Time, want time.Time) {
	t.Helper()
	if !got.Valid || got.Hour != want.Hour() || got.Minute != want.Minute() || got.Second != want.Second() ||
		got.Millisecond != want.Nanosecond()/1e6 {
		t.Errorf("%s time = %v, want %v", what, got, want.Format("15:04:05.000"))
	}
}

// checkEpoch renders f for p, parses it back and checks that every value
// the sentences carry equals p.Round(f).
func checkEpoch(t *testing.T, p Profile, f Fix, kinds []string) {
	t.Helper()
	want := p.Round(f)
	if again := p.Round(want); again != want {
		t.Fatalf("Round is not idempotent: %+v then %+v", want, again)
	}
	d := decode(t, sentences(t, AppendEpoch(nil, p, f)))
	var gotKinds []string
	for _, k := range d.kinds {
		if len(gotKinds) == 0 || gotKinds[len(gotKinds)-1] != k || k == "GNGSA" {
			gotKinds = append(gotKinds, k)
		}
	}
	if strings.Join(gotKinds, " ") != strings.Join(kinds, " ") {
		t.Errorf("sentences %v, want %v", gotKinds, kinds)
	}

	checkTime(t, "RMC", d.rmc.Time, want.Time)
	checkTime(t, "GGA", d.gga.Time, want.Time)
	if d.rmc.Date != (nmea.Date{Valid: true, DD: want.Time.Day(), MM: int(want.Time.Month()), YY: want.Time.Year() % 100}) {
		t.Errorf("RMC date = %v, want %v", d.rmc.Date, want.Time.Format("02/01/06"))
	}
	validity, quality, mode, fixType := "A", "1", "A", "3"
	if !want.Valid {
		validity, quality, mode, fixType = "V", "0", "N", "1"
	}
	if d.rmc.Validity != validity || d.gga.FixQuality != quality || d.rmc.FFAMode != mode {
		t.Errorf("RMC validity %q mode %q, GGA quality %q; want %q %q %q",
			d.rmc.Validity, d.rmc.FFAMode, d.gga.FixQuality, validity, mode, quality)
	}
	for _, pos := range [][2]float64{{d.rmc.Latitude, d.rmc.Longitude}, {d.gga.Latitude, d.gga.Longitude}} {
		if !near(pos[0], want.Lat) || !near(pos[1], want.Lon) {
			t.Errorf("position %v, want %v, %v", pos, want.Lat, want.Lon)
		}
	}
	if !near(d.rmc.Speed*knot, want.Speed) || !near(d.rmc.Course, want.Course) {
		t.Errorf("RMC speed %v kn course %v, want %v m/s %v", d.rmc.Speed, d.rmc.Course, want.Speed, want.Course)
	}
	if !near(d.gga.Altitude, want.Alt) || !near(d.gga.Separation, want.Geoid) ||
		int(d.gga.NumSatellites) != want.Sats || !near(d.gga.HDOP, want.HDOP) {
		t.Errorf("GGA alt %v geoid %v sats %v hdop %v, want %v %v %v %v", d.gga.Altitude, d.gga.Separation,
			d.gga.NumSatellites, d.gga.HDOP, want.Alt, want.Geoid, want.Sats, want.HDOP)
	}
	if d.vtg != nil {
		if !near(d.vtg.TrueTrack, want.Course) || !near(d.vtg.GroundSpeedKnots*knot, want.Speed) ||
			math.Abs(d.vtg.GroundSpeedKPH-d.vtg.GroundSpeedKnots*1.852) > 0.0005 || d.vtg.FFAMode != mode {
			t.Errorf("VTG %+v, want course %v speed %v m/s mode %s", *d.vtg, want.Course, want.Speed, mode)
		}
	}
	if d.gll != nil {
		checkTime(t, "GLL", d.gll.Time, want.Time)
		if !near(d.gll.Latitude, want.Lat) || !near(d.gll.Longitude, want.Lon) || d.gll.Validity != validity || d.gll.FFAMode != mode {
			t.Errorf("GLL %+v, want %v, %v %s %s", *d.gll, want.Lat, want.Lon, validity, mode)
		}
	}
	for _, gsa := range d.gsa {
		if gsa.FixType != fixType || !near(gsa.PDOP, want.PDOP) || !near(gsa.HDOP, want.HDOP) || !near(gsa.VDOP, want.VDOP) {
			t.Errorf("GSA %+v, want fix %s DOPs %v %v %v", gsa, fixType, want.PDOP, want.HDOP, want.VDOP)
		}
	}
	if len(d.gsa) > 0 && d.used != want.Sats {
		t.Errorf("GSA list %d satellites, want %d", d.used, want.Sats)
	}
	inView := 0
	for talker, n := range d.inView {
		inView += n
		if d.gsvSeen[talker] != n {
			t.Errorf("%sGSV lists %d satellites, says %d", talker, d.gsvSeen[talker], n)
		}
	}
	if inView != want.SatsInView {
		t.Errorf("GSV satellites in view %d, want %d", inView, want.SatsInView)
	}
}

var epochKinds = map[Profile][]string{
	UBlox: {"GNRMC", "GNVTG", "GNGGA", "GNGSA", "GNGSA", "GNGSA", "GNGSA", "GPGSV", "GLGSV", "GAGSV", "GBGSV", "GNGLL"},
	SiRF:  {"GPGGA", "GPGSA", "GPGSV", "GPRMC"},
	MTK:   {"GPRMC", "GPGGA"},
}

// TestAppendEpoch renders fixes for every profile and checks that
// go-nmea reads back exactly the rounded fix.
func TestAppendEpoch(t *testing.T) {
	t0 := time.Date(2026, 11, 21, 10, 4, 5, 123456789, time.UTC)
	fixes := []struct {
		name string
		f    Fix
	}{
		{"amsterdam", Fix{Time: t0, Valid: true, Lat: 52.370216, Lon: 4.895168, Alt: 2.34, Geoid: 47, Speed: 13.9,
			Course: 271.456, HDOP: 0.92, PDOP: 1.47, VDOP: 1.15, Sats: 12, SatsInView: 23}},
		{"south west", Fix{Time: t0, Valid: true, Lat: -33.865143, Lon: -151.2099, Alt: -12.5, Geoid: -22.25,
			Speed: 0.004, Course: 0.001, HDOP: 1.234, PDOP: 2.5, VDOP: 2.17, Sats: 5, SatsInView: 9}},
		{"minutes carry", Fix{Time: t0, Valid: true, Lat: 52.9999999999, Lon: -0.99999999, Course: 359.999,
			Speed: 1, HDOP: 0.5, PDOP: 0.8, VDOP: 0.6, Sats: 4, SatsInView: 4}},
		{"equator, zero", Fix{Time: t0, Valid: true, Lat: 0, Lon: 0, Sats: 0, SatsInView: 0}},
		{"date line", Fix{Time: t0, Valid: true, Lat: 89.5, Lon: 179.999999, Speed: 250, Course: 90, HDOP: 120,
			PDOP: 150, VDOP: 99, Sats: 20, SatsInView: 50}},
		{"void", Fix{Time: t0, Valid: false, Lat: 52.37, Lon: 4.89, Alt: 2, Speed: 3, Course: 20, HDOP: 1,
			Sats: 7, SatsInView: 8}},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		fixes = append(fixes, struct {
			name string
			f    Fix
		}{"random " + string(rune('a'+i%26)), Fix{
			Time: t0.Add(time.Duration(rng.Int64N(int64(400 * 24 * time.Hour)))), Valid: rng.IntN(10) > 0,
			Lat: rng.Float64()*180 - 90, Lon: rng.Float64()*360 - 180, Alt: rng.Float64()*3000 - 100,
			Geoid: rng.Float64()*200 - 100, Speed: rng.Float64() * 80, Course: rng.Float64() * 360,
			HDOP: rng.Float64() * 10, PDOP: rng.Float64() * 15, VDOP: rng.Float64() * 10,
			Sats: rng.IntN(16), SatsInView: rng.IntN(40),
		}})
	}
	for _, p := range []Profile{UBlox, SiRF, MTK} {
		for _, tc := range fixes {
			t.Run(string(p)+"/"+tc.name, func(t *testing.T) {
				checkEpoch(t, p, tc.f, epochKinds[p])
			})
		}
	}
}

// TestRound checks what each profile keeps of a fix.
func TestRound(t *testing.T) {
	t0 := time.Date(2026, 11, 21, 10, 4, 5, 123456789, time.FixedZone("CET", 3600))
	f := Fix{Time: t0, Valid: true, Lat: 52.123456789, Lon: -4.987654321, Alt: 1.26, Geoid: 47.04, Speed: 10,
		Course: 12.345, HDOP: 0.876, PDOP: 1.2345, VDOP: 0.9, Sats: 14, SatsInView: 9}
	tests := []struct {
		p    Profile
		want Fix
	}{
		{UBlox, Fix{Time: time.Date(2026, 11, 21, 9, 4, 5, 120000000, time.UTC), Valid: true,
			Lat: 52 + 7.40741/60, Lon: -(4 + 59.25926/60), Alt: 1.3, Geoid: 47, Speed: 19.438 * knot,
			Course: 12.35, HDOP: 0.88, PDOP: 1.23, VDOP: 0.9, Sats: 9, SatsInView: 9}},
		{SiRF, Fix{Time: time.Date(2026, 11, 21, 9, 4, 5, 123000000, time.UTC), Valid: true,
			Lat: 52 + 7.4074/60, Lon: -(4 + 59.2593/60), Alt: 1.3, Geoid: 47, Speed: 19.44 * knot,
			Course: 12.35, HDOP: 0.9, PDOP: 1.2, VDOP: 0.9, Sats: 9, SatsInView: 9}},
		{MTK, Fix{Time: time.Date(2026, 11, 21, 9, 4, 5, 123000000, time.UTC), Valid: true,
			Lat: 52 + 7.4074/60, Lon: -(4 + 59.2593/60), Alt: 1.3, Geoid: 47, Speed: 19.44 * knot,
			Course: 12.35, HDOP: 0.88, Sats: 12}},
	}
	for _, tc := range tests {
		t.Run(string(tc.p), func(t *testing.T) {
			got := tc.p.Round(f)
			if !got.Time.Equal(tc.want.Time) || got.Time.Location() != time.UTC {
				t.Errorf("time %v, want %v", got.Time, tc.want.Time)
			}
			got.Time, tc.want.Time = time.Time{}, time.Time{}
			for _, v := range [][2]float64{{got.Lat, tc.want.Lat}, {got.Lon, tc.want.Lon}, {got.Speed, tc.want.Speed}} {
				if !near(v[0], v[1]) {
					t.Errorf("got %+v\nwant %+v", got, tc.want)
				}
			}
			got.Lat, got.Lon, got.Speed = tc.want.Lat, tc.want.Lon, tc.want.Speed
			if got != tc.want {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// TestVoidSentences checks the fields of a void fix.
func TestVoidSentences(t *testing.T) {
	f := Fix{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Lat: 1, Lon: 2, SatsInView: 3}
	tests := []struct {
		p    Profile
		want []string // prefixes of the sentences
	}{
		{UBlox, []string{"$GNRMC,030405.00,V,,,,,,,020126,,,N,V*", "$GNVTG,,,,,,,,,N*",
			"$GNGGA,030405.00,,,,,0,00,99.99,,,,,,*",
			"$GNGSA,A,1,,,,,,,,,,,,,99.99,99.99,99.99,1*", "$GNGSA,A,1,,,,,,,,,,,,,99.99,99.99,99.99,2*",
			"$GNGSA,A,1,,,,,,,,,,,,,99.99,99.99,99.99,3*", "$GNGSA,A,1,,,,,,,,,,,,,99.99,99.99,99.99,4*",
			"$GPGSV,1,1,01,", "$GLGSV,1,1,01,", "$GAGSV,1,1,01,", "$GBGSV,1,1,00,1*",
			"$GNGLL,,,,,030405.00,V,N*"}},
		{SiRF, []string{"$GPGGA,030405.000,,,,,0,00,,,M,,M,,*", "$GPGSA,A,1,,,,,,,,,,,,,,,*",
			"$GPGSV,1,1,03,", "$GPRMC,030405.000,V,,,,,,,020126,,,N*"}},
		{MTK, []string{"$GPRMC,030405.000,V,,,,,,,020126,,,N*", "$GPGGA,030405.000,,,,,0,0,,,M,,M,,*"}},
	}
	for _, tc := range tests {
		t.Run(string(tc.p), func(t *testing.T) {
			lines := sentences(t, AppendEpoch(nil, tc.p, f))
			if len(lines) != len(tc.want) {
				t.Fatalf("got %d sentences %q, want %d", len(lines), lines, len(tc.want))
			}
			for i, l := range lines {
				if !strings.HasPrefix(l, tc.want[i]) {
					t.Errorf("sentence %d = %q, want %s...", i, l, tc.want[i])
				}
			}
			checkEpoch(t, tc.p, f, epochKinds[tc.p])
		})
	}
}

// TestMidnight checks that the date rolls over with the time, at the end of
// a year too.
func TestMidnight(t *testing.T) {
	tests := []struct {
		at       time.Time
		time     string
		date     string
		timeDesc string
	}{
		{time.Date(2026, 12, 31, 23, 59, 59, 950000000, time.UTC), "235959.95", "311226", "last epoch of the year"},
		{time.Date(2027, 1, 1, 0, 0, 0, 50000000, time.UTC), "000000.05", "010127", "first epoch of the year"},
		{time.Date(2028, 2, 28, 23, 59, 59, 999999999, time.UTC), "235959.99", "280228", "truncated, not rounded"},
		{time.Date(2028, 2, 29, 0, 0, 0, 0, time.UTC), "000000.00", "290228", "leap day"},
	}
	for _, tc := range tests {
		t.Run(tc.timeDesc, func(t *testing.T) {
			f := Fix{Time: tc.at, Valid: true, Lat: 52, Lon: 5}
			rmc := sentences(t, AppendEpoch(nil, UBlox, f))[0]
			fields := strings.Split(rmc, ",")
			if fields[1] != tc.time || fields[9] != tc.date {
				t.Errorf("RMC %q: time %s date %s, want %s %s", rmc, fields[1], fields[9], tc.time, tc.date)
			}
		})
	}
}

// TestBanner checks that banners and the MTK answer are valid sentences.
func TestBanner(t *testing.T) {
	tests := []struct {
		p     Profile
		lines int
		first string
	}{
		{UBlox, 7, "$GNTXT,01,01,02,u-blox AG - www.u-blox.com*4E"},
		{MTK, 2, "$PMTK011,MTKGPS*08"},
		{SiRF, 0, ""},
	}
	for _, tc := range tests {
		t.Run(string(tc.p), func(t *testing.T) {
			b := AppendBanner(nil, tc.p)
			if tc.lines == 0 {
				if len(b) != 0 {
					t.Fatalf("banner %q, want none", b)
				}
				return
			}
			lines := sentences(t, b)
			if len(lines) != tc.lines || lines[0] != tc.first {
				t.Errorf("banner %q, want %d lines starting %q", lines, tc.lines, tc.first)
			}
			if tc.p == UBlox {
				decodeTXT(t, lines)
			}
		})
	}
	if got := string(AppendSentence(nil, "PMTK605")); got != mtkQuery+"\r\n" {
		t.Errorf("AppendSentence(PMTK605) = %q, want %q", got, mtkQuery)
	}
}

func decodeTXT(t *testing.T, lines []string) {
	t.Helper()
	for _, l := range lines {
		s, err := nmea.Parse(l)
		if err != nil {
			t.Fatalf("nmea.Parse(%q): %v", l, err)
		}
		if _, ok := s.(nmea.TXT); !ok {
			t.Errorf("%q parsed as %T", l, s)
		}
	}
}

func BenchmarkAppendEpoch(b *testing.B) {
	f := Fix{Time: time.Date(2026, 11, 21, 10, 4, 5, 0, time.UTC), Valid: true, Lat: 52.370216, Lon: 4.895168,
		Alt: 2.3, Geoid: 47, Speed: 13.9, Course: 271.4, HDOP: 0.92, PDOP: 1.47, VDOP: 1.15, Sats: 12, SatsInView: 23}
	for _, p := range []Profile{UBlox, SiRF, MTK} {
		b.Run(string(p), func(b *testing.B) {
			var buf []byte
			for b.Loop() {
				buf = AppendEpoch(buf[:0], p, f)
			}
			b.SetBytes(int64(len(buf)))
		})
	}
}
