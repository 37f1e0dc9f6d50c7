package gpssim

import (
	"bytes"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestParseFaults(t *testing.T) {
	tests := []struct {
		in      string
		want    Faults
		wantErr string // substring of the error; "" for none
	}{
		{in: "", want: Faults{}},
		{in: "  ", want: Faults{}},
		{in: "badsum=0.01,garbage=0.05,drop=0.01,void=5s,unplug=30s,replug=5s", want: Faults{
			BadChecksum: 0.01, Garbage: 0.05, Drop: 0.01, Void: 5 * time.Second,
			UnplugAfter: 30 * time.Second, ReplugAfter: 5 * time.Second}},
		{in: " drop = 1 , void=1m30s ", want: Faults{Drop: 1, Void: 90 * time.Second}},
		{in: "unplug=2s", want: Faults{UnplugAfter: 2 * time.Second}},
		{in: "badsum=0", want: Faults{}},
		{in: "drop", wantErr: `"drop" is not key=value`},
		{in: "drop=0.1,", wantErr: `"" is not key=value`},
		{in: "loss=0.1", wantErr: `unknown key "loss" (want one of badsum, garbage, drop, void, unplug, replug)`},
		{in: "drop=lots", wantErr: `drop="lots": want a probability from 0 to 1`},
		{in: "drop=1.5", wantErr: "drop=1.5: want a probability from 0 to 1"},
		{in: "garbage=-0.1", wantErr: "garbage=-0.1: want a probability"},
		{in: "badsum=NaN", wantErr: "badsum=NaN: want a probability"},
		{in: "void=5", wantErr: `void="5": want a duration such as 5s`},
		{in: "unplug=-1s", wantErr: "unplug=-1s: want a duration of 0 or more"},
		{in: "replug=5s", wantErr: "replug needs unplug"},
		{in: "drop=0.1,drop=0.2", wantErr: "drop given twice"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseFaults(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseFaults(%q) = %+v, %v; want an error with %q", tc.in, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseFaults(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
			if again, err := ParseFaults(got.String()); err != nil || again != got {
				t.Errorf("ParseFaults(%q) = %+v, %v; want %+v", got.String(), again, err, got)
			}
		})
	}
}

func FuzzParseFaults(f *testing.F) {
	for _, s := range []string{"", "badsum=0.01,garbage=0.05,drop=0.01,void=5s,unplug=30s,replug=5s",
		"drop=1", "void=1h2m3.5s", "x=1", "drop=0x1p-3", "unplug=1ns,replug=1ns"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseFaults(s)
		if err != nil {
			return
		}
		if err := got.validate(); err != nil {
			t.Fatalf("ParseFaults(%q) = %+v, which is invalid: %v", s, got, err)
		}
		again, err := ParseFaults(got.String())
		if err != nil || again != got {
			t.Fatalf("ParseFaults(%q) = %+v; its String %q parses as %+v, %v", s, got, got.String(), again, err)
		}
	})
}

// TestInjectorRates runs many sentences through the faults and checks that
// each fault happens at about its rate, and that what is left intact is
// unchanged.
func TestInjectorRates(t *testing.T) {
	const n = 20000
	f := Fix{Time: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC), Valid: true, Lat: 52.37, Lon: 4.89, Sats: 8, SatsInView: 10}
	epoch := AppendEpoch(nil, MTK, f) // two sentences
	tests := []struct {
		name                  string
		faults                Faults
		badsum, garbage, drop float64
	}{
		{"none", Faults{}, 0, 0, 0},
		{"each", Faults{BadChecksum: 0.05, Garbage: 0.1, Drop: 0.02}, 0.05, 0.1, 0.02},
		{"all dropped", Faults{Drop: 1, Garbage: 1}, 0, 0, 1},
		{"all garbled", Faults{BadChecksum: 1, Garbage: 1}, 1, 1, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := injector{f: tc.faults, rng: rand.New(rand.NewPCG(7, 7))}
			var src, out []byte
			for range n / 2 {
				src = append(src, epoch...)
			}
			out = in.apply(out, src)
			var badsum, garbage, kept int
			for line := range strings.SplitSeq(strings.TrimSuffix(string(out), "\r\n"), "\r\n") {
				if line == "" {
					continue
				}
				kept++
				i := strings.IndexByte(line, '$')
				if i < 0 {
					t.Fatalf("line without a sentence: %q", line)
				}
				if i > 0 {
					garbage++
					if i > 16 || strings.ContainsAny(line[:i], "$\r\n") {
						t.Fatalf("bad garbage %q", line[:i])
					}
				}
				s := line[i:]
				if !bytes.Contains(epoch, []byte(s[:len(s)-2])) {
					t.Fatalf("sentence changed beyond its checksum: %q", s)
				}
				if !bytes.Contains(epoch, []byte(s+"\r\n")) {
					badsum++
				}
			}
			check := func(what string, got int, total int, want float64) {
				rate := float64(got) / float64(max(total, 1))
				if math.Abs(rate-want) > 0.01+want*0.15 {
					t.Errorf("%s: %d of %d (%.3f), want about %.3f", what, got, total, rate, want)
				}
			}
			check("dropped", n-kept, n, tc.drop)
			check("bad checksums", badsum, kept, tc.badsum)
			check("garbage", garbage, kept, tc.garbage)
		})
	}
}
