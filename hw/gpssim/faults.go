package gpssim

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// Faults are the misbehaviours of a real receiver and its cable that a Sim
// reproduces. The zero value is a perfect receiver.
type Faults struct {
	BadChecksum float64       // probability per sentence of a corrupted checksum
	Garbage     float64       // probability per sentence of 1 to 16 random bytes (never '$', CR or LF) inserted before it
	Drop        float64       // probability per sentence of leaving it out
	Void        time.Duration // the first Void of the run sends void fixes (a cold start)
	UnplugAfter time.Duration // 0: never. After this long plugged in, unplug: close the pty, remove the link
	ReplugAfter time.Duration // this long after unplugging, plug in again (a new pty, the link re-pointed) and repeat the cycle; 0: stay unplugged
}

// faultKeys are the keys of a faults spec, in the order String writes them.
var faultKeys = []string{"badsum", "garbage", "drop", "void", "unplug", "replug"}

// field returns the Faults field a key of the spec sets.
func (f *Faults) field(key string) any {
	switch key {
	case "badsum":
		return &f.BadChecksum
	case "garbage":
		return &f.Garbage
	case "drop":
		return &f.Drop
	case "void":
		return &f.Void
	case "unplug":
		return &f.UnplugAfter
	case "replug":
		return &f.ReplugAfter
	}
	return nil
}

// ParseFaults parses a comma-separated list of key=value settings, such as
// "badsum=0.01,garbage=0.05,drop=0.01,void=5s,unplug=30s,replug=5s". badsum,
// garbage and drop are probabilities from 0 to 1; void, unplug and replug
// are durations. The empty string is no faults.
func ParseFaults(s string) (Faults, error) {
	var f Faults
	if strings.TrimSpace(s) == "" {
		return f, nil
	}
	seen := map[string]bool{}
	for item := range strings.SplitSeq(s, ",") {
		key, value, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok {
			return Faults{}, fmt.Errorf("faults %q: %q is not key=value", s, item)
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if seen[key] {
			return Faults{}, fmt.Errorf("faults %q: %s given twice", s, key)
		}
		seen[key] = true
		switch p := f.field(key).(type) {
		case *float64:
			v, err := strconv.ParseFloat(value, 64)
			if err != nil {
				return Faults{}, fmt.Errorf("faults %q: %s=%q: want a probability from 0 to 1", s, key, value)
			}
			*p = v
		case *time.Duration:
			v, err := time.ParseDuration(value)
			if err != nil {
				return Faults{}, fmt.Errorf("faults %q: %s=%q: want a duration such as 5s", s, key, value)
			}
			*p = v
		default:
			return Faults{}, fmt.Errorf("faults %q: unknown key %q (want one of %s)", s, key, strings.Join(faultKeys, ", "))
		}
	}
	if err := f.validate(); err != nil {
		return Faults{}, fmt.Errorf("faults %q: %w", s, err)
	}
	return f, nil
}

// String returns f in the form ParseFaults reads, leaving out zero values.
func (f Faults) String() string {
	var b strings.Builder
	for _, key := range faultKeys {
		var v string
		switch p := f.field(key).(type) {
		case *float64:
			if *p != 0 {
				v = strconv.FormatFloat(*p, 'g', -1, 64)
			}
		case *time.Duration:
			if *p != 0 {
				v = p.String()
			}
		}
		if v != "" {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(key + "=" + v)
		}
	}
	return b.String()
}

func (f Faults) validate() error {
	for _, key := range faultKeys {
		switch p := f.field(key).(type) {
		case *float64:
			if !(*p >= 0 && *p <= 1) {
				return fmt.Errorf("%s=%v: want a probability from 0 to 1", key, *p)
			}
		case *time.Duration:
			if *p < 0 {
				return fmt.Errorf("%s=%v: want a duration of 0 or more", key, *p)
			}
		}
	}
	if f.ReplugAfter > 0 && f.UnplugAfter == 0 {
		return errors.New("replug needs unplug")
	}
	return nil
}

// injector corrupts sentences as the faults say.
type injector struct {
	f   Faults
	rng *rand.Rand
}

// apply appends the sentences of src ("$...*HH\r\n" each) to dst, dropping,
// prefixing with garbage or corrupting the checksum of each with the
// probabilities of the faults.
func (in *injector) apply(dst, src []byte) []byte {
	if in.f.Drop == 0 && in.f.Garbage == 0 && in.f.BadChecksum == 0 {
		return append(dst, src...)
	}
	for len(src) > 0 {
		n := bytes.Index(src, []byte("\r\n")) + 2
		if n < 2 {
			n = len(src)
		}
		line := src[:n]
		src = src[n:]
		drop, garbage, badsum := in.rng.Float64() < in.f.Drop, in.rng.Float64() < in.f.Garbage, in.rng.Float64() < in.f.BadChecksum
		if drop {
			continue
		}
		if garbage {
			// No '$', CR or LF, so that the sentence stays intact for a
			// reader that looks for the next '$'.
			dst = in.garbage(dst, 1+in.rng.IntN(16), "$\r\n")
		}
		start := len(dst)
		dst = append(dst, line...)
		if star := bytes.LastIndexByte(dst[start:], '*'); badsum && star >= 0 && start+star+3 <= len(dst) {
			sum, err := strconv.ParseUint(string(dst[start+star+1:start+star+3]), 16, 8)
			if err == nil {
				wrong := byte(sum) ^ byte(1+in.rng.IntN(255))
				const hex = "0123456789ABCDEF"
				dst[start+star+1], dst[start+star+2] = hex[wrong>>4], hex[wrong&15]
			}
		}
	}
	return dst
}

// garbage appends n random bytes, none of them in avoid.
func (in *injector) garbage(dst []byte, n int, avoid string) []byte {
	for range n {
		c := byte(in.rng.Uint32())
		for strings.IndexByte(avoid, c) >= 0 {
			c = byte(in.rng.Uint32())
		}
		dst = append(dst, c)
	}
	return dst
}
