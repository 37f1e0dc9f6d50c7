package position

import (
	"math"
	"strconv"
	"testing"
)

// TestAppendFloat: the fast path and strconv write the same text, and what
// is written reads back as the same float64.
func TestAppendFloat(t *testing.T) {
	for _, tt := range []struct {
		v    float64
		want string
		fast bool // written by appendDecimal
	}{
		{52.3702157, "52.3702157", true},
		{-4.8951679, "-4.8951679", true},
		{0.1, "0.1", true},
		{0.007, "0.007", true},
		{-0.000105, "-0.000105", true},
		{12, "12", true},
		{1e15, "1000000000000000", true},
		{123456.123456789, "123456.123456789", true},
		{0, "0", false},
		{math.Copysign(0, -1), "-0", false},
		{1.0 / 3, "0.3333333333333333", false},
		{math.Pi, "3.141592653589793", false},
		{5e-7, "5e-07", true}, // written as an exponent by appendFloat, as encoding/json does
		{1e21, "1e+21", false},
		{9007199254740993, "9007199254740992", false},
	} {
		got := string(appendFloat(nil, tt.v))
		if got != tt.want {
			t.Errorf("appendFloat(%v) = %q, want %q", tt.v, got, tt.want)
		}
		abs := math.Abs(tt.v)
		_, fast := appendDecimal(nil, tt.v, abs)
		if fast != tt.fast {
			t.Errorf("appendDecimal(%v) ok = %v, want %v", tt.v, fast, tt.fast)
		}
	}
}

// FuzzAppendFloat: wherever the fast path answers, it writes what strconv
// writes, byte for byte.
func FuzzAppendFloat(f *testing.F) {
	for _, v := range []float64{52.3702157, -0.5, 1e-6, 0.000999, 4503599627370495.5, 12.25} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v float64) { checkAppendDecimal(t, v) })
}

// FuzzAppendFloatDecimal feeds the fast path the decimals GPS devices
// send, most of which it takes, rather than random bit patterns, most of
// which it leaves to strconv.
func FuzzAppendFloatDecimal(f *testing.F) {
	f.Add(int64(523702157), uint8(7))
	f.Add(int64(-105), uint8(6))
	f.Fuzz(func(t *testing.T, m int64, k uint8) { checkAppendDecimal(t, float64(m)/math.Pow10(int(k%12))) })
}

// checkAppendDecimal fails when the fast path answers for v with other text
// than strconv's.
func checkAppendDecimal(t *testing.T, v float64) {
	got, ok := appendDecimal(nil, v, math.Abs(v))
	if !ok {
		return
	}
	if want := strconv.AppendFloat(nil, v, 'f', -1, 64); string(got) != string(want) {
		t.Fatalf("appendDecimal(%v) = %q, strconv %q", v, got, want)
	}
}

func BenchmarkAppendFloat(b *testing.B) {
	buf := make([]byte, 0, 32)
	for b.Loop() {
		buf = appendFloat(buf[:0], 52.3702157)
	}
}
