package receiver

import "testing"

// FuzzParseSpec checks that ParseSpec never panics and that what it accepts
// prints back to a spec that parses to the same thing.
func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{"serial:/dev/ttyUSB0@9600=van", "tcp://[::1]:10110=boat", "usb:1546:01a8:SN@4800=x", "tcp://h=b", "=", "serial:@=@"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		s, err := ParseSpec(v)
		if err != nil {
			return
		}
		again, err := ParseSpec(s.String())
		if err != nil || again != s {
			t.Fatalf("ParseSpec(%q) = %+v; its String %q parses to %+v, %v", v, s, s.String(), again, err)
		}
	})
}
