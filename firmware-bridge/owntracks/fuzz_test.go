package owntracks

import "testing"

// FuzzDecode checks that no body makes Decode panic, and that every
// position it returns is valid.
func FuzzDecode(f *testing.F) {
	for _, tc := range decodeCases {
		f.Add([]byte(tc.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ps, err := Decode(body, now)
		if err != nil && len(ps) > 0 {
			t.Fatalf("positions and an error for %q", body)
		}
		for _, p := range ps {
			if err := p.Validate(now); err != nil {
				t.Fatalf("invalid position %+v from %q: %v", p, body, err)
			}
		}
	})
}
