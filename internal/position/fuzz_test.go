package position

import (
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzAccept checks that no payload makes the decoder panic or hang, that it
// accepts only valid JSON, that what it accepts is valid, and that encoding an
// accepted position and decoding it again gives the same position.
func FuzzAccept(f *testing.F) {
	for _, tc := range acceptCases {
		f.Add([]byte(tc.payload))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, errs := Accept(data, now, nil)
		if len(got) > 0 && !json.Valid(data) {
			t.Fatalf("accepted positions from invalid JSON %q", data)
		}
		for _, e := range errs {
			if e == nil || e.Reason == "" {
				t.Fatalf("empty error for %q", data)
			}
		}
		for _, p := range got {
			if err := p.Validate(now); err != nil {
				t.Fatalf("accepted an invalid position %+v: %v", p, err)
			}
			again, errs := Accept(p.AppendJSON(nil), now, nil)
			if len(errs) != 0 || len(again) != 1 || !reflect.DeepEqual(again[0], p) {
				t.Fatalf("round trip of %+v gave %+v, %v", p, again, errs)
			}
		}
	})
}
