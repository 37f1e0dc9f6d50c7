package topic

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		topic, device, kind string
		err                 string
	}{
		{"devices/van-1/positions", "van-1", Positions, ""},
		{"devices/358240051111110/status", "358240051111110", Status, ""},
		{"devices/alice:phone/session", "alice:phone", Session, ""},
		{"devices/a/b/c", "", "", "not a devices"},
		{"devices/a", "", "", "not a devices"},
		{"owntracks/alice/phone", "", "", "not a devices"},
		{"devices//positions", "", "", "empty device id"},
		{"devices/+/positions", "", "", `character '+' not allowed`},
		{"devices/" + strings.Repeat("x", 65) + "/positions", "", "", "more than 64"},
	} {
		device, kind, err := Parse(tc.topic)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Parse(%q) error = %v, want %q", tc.topic, err, tc.err)
			}
			continue
		}
		if err != nil || device != tc.device || kind != tc.kind {
			t.Errorf("Parse(%q) = %q, %q, %v; want %q, %q", tc.topic, device, kind, err, tc.device, tc.kind)
		}
		if got := Device(device, kind); got != tc.topic {
			t.Errorf("Device(%q, %q) = %q, want %q", device, kind, got, tc.topic)
		}
	}
	if _, _, err := Parse("x/y"); !errors.Is(err, ErrNotDevice) {
		t.Errorf("Parse(x/y) = %v, want ErrNotDevice", err)
	}
}

// FuzzParse checks that Parse never panics and that what it accepts builds
// back into the same topic with a valid device id.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"devices/van-1/positions", "devices//x", "devices/a/b/c", "owntracks/a/b", "devices/\x00/status"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		device, kind, err := Parse(s)
		if err != nil {
			return
		}
		if ValidDevice(device) != nil || Device(device, kind) != s {
			t.Fatalf("Parse(%q) = %q, %q: not a valid round trip", s, device, kind)
		}
	})
}
