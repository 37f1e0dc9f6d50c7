package epoch

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"trackgate/internal/position"
)

// sum appends the checksum to a sentence body "$...".
func sum(body string) string {
	var c byte
	for i := 1; i < len(body); i++ {
		c ^= body[i]
	}
	return fmt.Sprintf("%s*%02X", body, c)
}

// run feeds the sentences (bodies without checksum) and a final Flush, and
// returns copies of the epochs emitted.
func run(t *testing.T, a *Assembler, bodies ...string) []Epoch {
	t.Helper()
	var got []Epoch
	emit := func(e *Epoch) { got = append(got, *e) }
	for _, b := range bodies {
		if err := a.AddLine([]byte(sum(b)), emit); err != nil {
			t.Fatalf("AddLine(%q): %v", b, err)
		}
	}
	a.Flush(emit)
	return got
}

func ts(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

const (
	F  = position.FieldTime | position.FieldLat | position.FieldLon | position.FieldFix
	FA = position.FieldAlt | position.FieldGeoid
)

// sameFix compares two epochs field by field with the tolerances of the gpsd
// agreement (lat/lon 1e-7°, alt 1 cm, speed 0.01 m/s, course 0.01°).
func sameFix(t *testing.T, i int, got, want Epoch) {
	t.Helper()
	g, w := got.Position, want.Position
	if got.Valid != want.Valid || g.Set != w.Set || !g.Time.Equal(w.Time) || g.Fix != w.Fix || g.Sats != w.Sats ||
		got.SatsInView != want.SatsInView {
		t.Errorf("epoch %d:\n got valid=%v %+v inView=%d\nwant valid=%v %+v inView=%d", i, got.Valid, g, got.SatsInView, want.Valid, w, want.SatsInView)
		return
	}
	near := func(name string, a, b, tol float64) {
		if math.Abs(a-b) > tol {
			t.Errorf("epoch %d: %s = %.9f, want %.9f", i, name, a, b)
		}
	}
	near("lat", g.Lat, w.Lat, 1e-7)
	near("lon", g.Lon, w.Lon, 1e-7)
	near("alt", g.Alt, w.Alt, 0.01)
	near("geoid", g.Geoid, w.Geoid, 0.01)
	near("speed", g.Speed, w.Speed, 0.01)
	near("course", g.Course, w.Course, 0.01)
	near("hdop", g.HDOP, w.HDOP, 1e-9)
	near("pdop", g.PDOP, w.PDOP, 1e-9)
	near("vdop", g.VDOP, w.VDOP, 1e-9)
}

func pos(t string, lat, lon float64, fix position.Fix, set position.Fields, f func(*position.Position)) position.Position {
	p := position.Position{Time: ts(t), Lat: lat, Lon: lon, Fix: fix, Set: set}
	if f != nil {
		f(&p)
	}
	return p
}

func TestAssemble(t *testing.T) {
	lat := 52 + 22.23184/60
	lon := 4 + 53.71112/60
	ublox := func(hms, date string, dlat float64) []string {
		la := fmt.Sprintf("%010.5f", 5222.23184+dlat)
		return []string{
			"$GNRMC," + hms + ",A," + la + ",N,00453.71112,E,10.000,90.5," + date + ",,,A,V",
			"$GNVTG,90.5,T,,M,10.000,N,18.520,K,A",
			"$GNGGA," + hms + "," + la + ",N,00453.71112,E,1,12,0.58,4.2,M,46.0,M,,",
			"$GNGSA,A,3,01,03,08,11,14,17,22,,,,,,1.05,0.58,0.88,1",
			"$GNGSA,A,3,65,66,75,,,,,,,,,,1.05,0.58,0.88,2",
			"$GPGSV,2,1,08,01,40,083,46,03,60,120,44,08,22,300,40,11,55,180,45,1",
			"$GPGSV,2,2,08,14,12,040,30,17,70,260,48,22,33,110,41,30,05,010,,1",
			"$GLGSV,1,1,04,65,20,050,38,66,45,120,42,75,60,300,40,76,10,200,,1",
			"$GNGLL," + la + ",N,00453.71112,E," + hms + ",A,A",
		}
	}
	full := func(p *position.Position) {
		p.Alt, p.Geoid, p.Speed, p.Course, p.HDOP, p.PDOP, p.VDOP, p.Sats = 4.2, 46, 10*knot, 90.5, 0.58, 1.05, 0.88, 10
		p.Set |= FA | position.FieldSpeed | position.FieldCourse | position.FieldHDOP | position.FieldPDOP | position.FieldVDOP | position.FieldSats
	}
	var ubloxStream []string
	for i, hms := range []string{"083559.00", "083600.00", "083601.00"} {
		ubloxStream = append(ubloxStream, ublox(hms, "211126", float64(i)*0.001)...)
	}

	tests := []struct {
		name  string
		now   string // host clock
		in    []string
		want  []Epoch
		ender string
	}{
		{
			name: "u-blox multi-GNSS", in: ubloxStream, ender: "GNGLL",
			want: []Epoch{
				{Valid: true, SatsInView: 12, Sentences: 9, Position: pos("2026-11-21T08:35:59Z", lat, lon, position.Fix3D, F, full)},
				{Valid: true, SatsInView: 12, Sentences: 9, Position: pos("2026-11-21T08:36:00Z", lat+0.001/60, lon, position.Fix3D, F, full)},
				{Valid: true, SatsInView: 12, Sentences: 9, Position: pos("2026-11-21T08:36:01Z", lat+0.002/60, lon, position.Fix3D, F, full)},
			},
		},
		{
			name: "RMC only, across midnight",
			in: []string{
				"$GPRMC,235959.000,A,5222.2318,N,00453.7111,W,0.00,,211126,,,A",
				"$GPRMC,000000.000,A,5222.2318,S,00453.7111,W,1.00,359.99,221126,,,D",
				"$GPRMC,000001.000,V,,,,,,,221126,,,N",
			},
			want: []Epoch{
				{Valid: true, SatsInView: -1, Sentences: 1, Position: pos("2026-11-21T23:59:59Z", 52+22.2318/60, -(4 + 53.7111/60), position.Fix2D, F|position.FieldSpeed, nil)},
				{Valid: true, SatsInView: -1, Sentences: 1, Position: pos("2026-11-22T00:00:00Z", -(52 + 22.2318/60), -(4 + 53.7111/60), position.FixDGPS, F|position.FieldSpeed|position.FieldCourse, func(p *position.Position) { p.Speed, p.Course = knot, 359.99 })},
				{SatsInView: -1, Sentences: 1, Position: position.Position{Time: ts("2026-11-22T00:00:01Z"), Fix: position.FixNone, Set: position.FieldTime | position.FieldFix}},
			},
		},
		{
			name: "GGA+GSA+ZDA, date carried across midnight",
			in: []string{
				"$GPZDA,235959.50,21,11,2026,00,00",
				"$GPGGA,235959.50,5222.2318,N,00453.7111,E,2,08,0.9,-3.5,M,46.0,M,1.2,0001",
				"$GPGSA,A,2,01,03,08,11,14,17,22,30,,,,,1.5,0.9,1.2",
				"$GPGGA,000000.50,5222.2318,N,00453.7111,E,4,08,0.9,-3.5,M,46.0,M,1.2,0001",
				"$GPGGA,000001.50,5222.2318,N,00453.7111,E,5,08,0.9,,M,,M,1.2,0001",
				"$GPGGA,000002.50,,,,,0,00,,,M,,M,,",
			},
			want: []Epoch{
				{Valid: true, SatsInView: -1, Sentences: 3, Position: pos("2026-11-21T23:59:59.5Z", 52+22.2318/60, 4+53.7111/60, position.FixDGPS, F|FA|position.FieldHDOP|position.FieldPDOP|position.FieldVDOP|position.FieldSats,
					func(p *position.Position) {
						p.Alt, p.Geoid, p.HDOP, p.PDOP, p.VDOP, p.Sats = -3.5, 46, 0.9, 1.5, 1.2, 8
					})},
				{Valid: true, SatsInView: -1, Sentences: 1, Position: pos("2026-11-22T00:00:00.5Z", 52+22.2318/60, 4+53.7111/60, position.FixRTK, F|FA|position.FieldHDOP|position.FieldSats,
					func(p *position.Position) { p.Alt, p.Geoid, p.HDOP, p.Sats = -3.5, 46, 0.9, 8 })},
				{Valid: true, SatsInView: -1, Sentences: 1, Position: pos("2026-11-22T00:00:01.5Z", 52+22.2318/60, 4+53.7111/60, position.FixFloat, F|position.FieldHDOP|position.FieldSats,
					func(p *position.Position) { p.HDOP, p.Sats = 0.9, 8 })},
				{SatsInView: -1, Sentences: 1, Position: position.Position{Time: ts("2026-11-22T00:00:02.5Z"), Fix: position.FixNone, Set: position.FieldTime | position.FieldFix}},
			},
		},
		{
			name: "GNS only, dated from the clock across midnight", now: "2026-11-22T00:00:00.2Z",
			in: []string{
				"$GNGNS,235959.00,5222.23184,N,00453.71112,E,AAN,14,0.7,4.2,46.0,,,V",
				"$GNGNS,000000.00,5222.23184,N,00453.71112,E,RRN,14,0.7,4.2,46.0,,,V",
				"$GNGNS,000001.00,,,,,NNN,00,,,,,,V",
			},
			want: []Epoch{
				{Valid: true, SatsInView: -1, Sentences: 1, Position: pos("2026-11-21T23:59:59Z", lat, lon, position.Fix3D, F|FA|position.FieldHDOP|position.FieldSats,
					func(p *position.Position) { p.Alt, p.Geoid, p.HDOP, p.Sats = 4.2, 46, 0.7, 14 })},
				{Valid: true, SatsInView: -1, Sentences: 1, Position: pos("2026-11-22T00:00:00Z", lat, lon, position.FixRTK, F|FA|position.FieldHDOP|position.FieldSats,
					func(p *position.Position) { p.Alt, p.Geoid, p.HDOP, p.Sats = 4.2, 46, 0.7, 14 })},
				{SatsInView: -1, Sentences: 1, Position: position.Position{Time: ts("2026-11-22T00:00:01Z"), Fix: position.FixNone, Set: position.FieldTime | position.FieldFix}},
			},
		},
		{
			name: "cold start: void then valid, 10 Hz",
			in: []string{
				"$GNRMC,083559.90,V,,,,,,,211126,,,N,V",
				"$GNGGA,083559.90,,,,,0,00,99.99,,,,,,",
				"$GNGSA,A,1,,,,,,,,,,,,,99.99,99.99,99.99,1",
				"$GNRMC,083600.00,A,5222.23184,N,00453.71112,E,0.010,,211126,,,A,V",
				"$GNGGA,083600.00,5222.23184,N,00453.71112,E,1,04,2.50,4.2,M,46.0,M,,",
				"$GNGSA,A,2,01,03,08,11,,,,,,,,,3.10,2.50,1.80,1",
				"$GNRMC,083600.10,A,5222.23184,N,00453.71112,E,0.010,,211126,,,A,V",
			},
			want: []Epoch{
				{SatsInView: -1, Sentences: 3, Position: position.Position{Time: ts("2026-11-21T08:35:59.9Z"), Fix: position.FixNone, Set: position.FieldTime | position.FieldFix}},
				{Valid: true, SatsInView: -1, Sentences: 3, Position: pos("2026-11-21T08:36:00Z", lat, lon, position.Fix2D, F|FA|position.FieldSpeed|position.FieldHDOP|position.FieldPDOP|position.FieldVDOP|position.FieldSats,
					func(p *position.Position) {
						p.Alt, p.Geoid, p.Speed, p.HDOP, p.PDOP, p.VDOP, p.Sats = 4.2, 46, 0.01*knot, 2.5, 3.1, 1.8, 4
					})},
				{Valid: true, SatsInView: -1, Sentences: 1, Position: pos("2026-11-21T08:36:00.1Z", lat, lon, position.Fix2D, F|position.FieldSpeed,
					func(p *position.Position) { p.Speed = 0.01 * knot })},
			},
		},
		{
			name: "GLL void and proprietary ignored",
			in: []string{
				"$PUBX,00,083559.00,5222.23184,N,00453.71112,E,4.2,G3,2.1,2.0,0.007,77.52,0.007,,0.92,1.19,0.77,9,0,0",
				"$GPGLL,5222.2318,N,00453.7111,E,083559.00,V,N",
				"$GPTXT,01,01,02,u-blox AG - www.u-blox.com",
			},
			want: []Epoch{
				{SatsInView: -1, Sentences: 1, Position: position.Position{Time: ts("2026-11-21T08:35:59Z"), Fix: position.FixNone, Set: position.FieldTime | position.FieldFix}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := ts("2026-11-21T12:00:00Z")
			if tt.now != "" {
				now = ts(tt.now)
			}
			a := New(Options{Now: func() time.Time { return now }})
			got := run(t, a, tt.in...)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d epochs, want %d: %+v", len(got), len(tt.want), got)
			}
			for i := range got {
				sameFix(t, i, got[i], tt.want[i])
				if got[i].Sentences != tt.want[i].Sentences {
					t.Errorf("epoch %d: %d sentences, want %d", i, got[i].Sentences, tt.want[i].Sentences)
				}
			}
			if tt.ender != "" && a.Ender() != tt.ender {
				t.Errorf("learned ender %q, want %q", a.Ender(), tt.ender)
			}
		})
	}
}

// newFeeder returns an Assembler, the epochs it emits (copied), its emit
// function, and a function that adds one sentence body (checksum added),
// failing the test on an error.
func newFeeder(t *testing.T) (*Assembler, *[]Epoch, func(*Epoch), func(string)) {
	a := New(Options{})
	got := new([]Epoch)
	emit := func(e *Epoch) { *got = append(*got, *e) }
	add := func(body string) {
		t.Helper()
		if err := a.AddLine([]byte(sum(body)), emit); err != nil {
			t.Fatal(err)
		}
	}
	return a, got, emit, add
}

// threeRMCGGAEpochs adds three epochs of RMC then GGA, 08:36:00 to 02.
func threeRMCGGAEpochs(add func(string)) {
	for i := range 3 {
		add(fmt.Sprintf("$GPRMC,08360%d.00,A,5222.2318,N,00453.7111,E,0.0,,211126,,,A", i))
		add(fmt.Sprintf("$GPGGA,08360%d.00,5222.2318,N,00453.7111,E,1,08,0.9,4.2,M,46.0,M,,", i))
	}
}

// TestEnderFlushesAtOnce checks that once the last sentence of an epoch is
// learned, the epoch is handed on when it arrives, not when the next starts.
func TestEnderFlushesAtOnce(t *testing.T) {
	a, gotp, emit, add := newFeeder(t)
	threeRMCGGAEpochs(add)
	// Epochs 0 and 1 were handed on by the change of time, and taught the
	// Assembler that GGA ends an epoch: epoch 2 is out at its GGA.
	if len(*gotp) != 3 || a.Pending() || a.Ender() != "GPGGA" {
		t.Fatalf("got %d epochs, pending %v, ender %q; want 3, false, GPGGA", len(*gotp), a.Pending(), a.Ender())
	}
	// The receiver changes its output: a GSA after GGA reopens nothing (no
	// time), but a second GGA with epoch 2's time does.
	add("$GPGSA,A,3,01,03,08,11,14,17,22,30,,,,,1.5,0.9,1.2")
	add("$GPGLL,5222.2318,N,00453.7111,E,083602.00,A,A")
	a.Flush(emit)
	if len(*gotp) != 4 || !(*gotp)[3].Reopened || (*gotp)[3].Position.PDOP != 1.5 || !(*gotp)[3].Position.Time.Equal((*gotp)[2].Position.Time) {
		t.Fatalf("want epoch 2 reopened with the GSA's PDOP, got %+v", (*gotp)[3:])
	}
	if a.Ender() != "" {
		t.Errorf("ender %q kept after it proved wrong", a.Ender())
	}
	if st := a.Stats(); st.Epochs != 4 || st.Reopened != 1 || st.Fixes != 4 || st.Parsed != 8 {
		t.Errorf("stats %+v", st)
	}
}

func TestBadSentences(t *testing.T) {
	a := New(Options{})
	var n int
	emit := func(*Epoch) { n++ }
	for _, body := range []string{
		"$GPRMC,256000.00,A,5222.2318,N,00453.7111,E,0.0,,211126,,,A", // hour 25
		"$GPRMC,083600.00,A,5222.2318,N,00453.7111,E,0.0,,311126,,,A", // 31 November
		"$GPGGA,083600.00,5222.2318,X,00453.7111,E,1,08,0.9,4.2,M,46.0,M,,",
		"$GPGSA,A,3",
		"$GPGGA,",
	} {
		if err := a.AddLine([]byte(sum(body)), emit); err == nil {
			t.Errorf("AddLine(%q): no error", body)
		}
	}
	a.Flush(emit)
	if st := a.Stats(); st.ParseErrors != 5 || n != 0 {
		t.Errorf("stats %+v, %d epochs; want 5 parse errors, no epoch", st, n)
	}
	if strings.Contains(fmt.Sprint(a.Stats()), "-") {
		t.Errorf("negative counter: %+v", a.Stats())
	}
}

// TestTimelessWaits checks that sentences without a time (here a GSV group
// a receiver sends after the learned end of its epoch) are not handed on as
// an epoch of their own when the line goes quiet, but join the next one;
// while a void epoch whose sentences have empty times is handed on.
func TestTimelessWaits(t *testing.T) {
	a, gotp, emit, add := newFeeder(t)
	threeRMCGGAEpochs(add)
	add("$GPGSV,1,1,04,01,40,083,46,03,60,120,44,08,22,300,40,11,55,180,45")
	a.Flush(emit) // the line is quiet until the next second
	if len(*gotp) != 3 || !a.Pending() {
		t.Fatalf("%d epochs, pending %v: the GSV alone was handed on", len(*gotp), a.Pending())
	}
	add("$GPRMC,083603.00,A,5222.2318,N,00453.7111,E,0.0,,211126,,,A")
	add("$GPGGA,083603.00,5222.2318,N,00453.7111,E,1,08,0.9,4.2,M,46.0,M,,")
	if len(*gotp) != 4 || (*gotp)[3].SatsInView != 4 || !(*gotp)[3].Valid {
		t.Fatalf("want the GSV in epoch 3, got %+v", (*gotp)[3:])
	}

	// A receiver without a solution nor a time.
	b := New(Options{})
	*gotp = nil
	for _, body := range []string{"$GPRMC,,V,,,,,,,,,,N", "$GPGSV,1,1,00"} {
		if err := b.AddLine([]byte(sum(body)), emit); err != nil {
			t.Fatal(err)
		}
	}
	b.Flush(emit)
	if len(*gotp) != 1 || (*gotp)[0].Valid || (*gotp)[0].Position.Has(position.FieldTime) {
		t.Fatalf("want one void epoch without time, got %+v", (*gotp))
	}
}

// TestWeekRollover checks that a date before 2017 (a receiver whose GPS week
// count wrapped) is moved on by 1024 weeks, as gpsd does: the u-blox
// manual's example RMC of 9 December 2002 is dated 25 July 2022.
func TestWeekRollover(t *testing.T) {
	a := New(Options{})
	got := run(t, a,
		"$GPRMC,083559.00,A,4717.11437,N,00833.91522,E,0.004,77.52,091202,,,A",
		"$GPZDA,083600.00,31,12,2016,00,00",
		"$GPRMC,083601.00,A,4717.11437,N,00833.91522,E,0.004,77.52,010117,,,A")
	want := []string{"2022-07-25T08:35:59Z", "2036-08-16T08:36:00Z", "2017-01-01T08:36:01Z"}
	if len(got) != len(want) {
		t.Fatalf("got %d epochs, want %d", len(got), len(want))
	}
	for i, w := range want {
		if !got[i].Position.Time.Equal(ts(w)) {
			t.Errorf("epoch %d at %v, want %s", i, got[i].Position.Time, w)
		}
	}
	if a.Stats().Rollovers != 2 {
		t.Errorf("rollovers %d, want 2", a.Stats().Rollovers)
	}
}
