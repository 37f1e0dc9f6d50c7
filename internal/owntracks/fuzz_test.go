package owntracks

import (
	"errors"
	"testing"

	"trackgate/internal/position"
)

// FuzzDecode checks that no payload makes Decode panic, that an error comes
// without a message and a message without an error, and that a decoded
// location is a valid position that survives the wire contract: encoded
// with AppendJSON and accepted again by position.Accept, it is the same.
func FuzzDecode(f *testing.F) {
	for _, tc := range decodeCases {
		if len(tc.payload) <= 4<<10 { // the oversize case only slows mutation down
			f.Add([]byte(tc.payload))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data, now)
		if err != nil {
			if m != nil {
				t.Fatalf("Decode(%q) returned %+v with error %v", data, m, err)
			}
			return
		}
		if m == nil {
			t.Fatalf("Decode(%q) returned neither a message nor an error", data)
		}
		switch m.Type {
		case "":
			t.Fatalf("Decode(%q) returned a message without a type", data)
		case TypeEncrypted:
			t.Fatalf("Decode(%q) accepted an encrypted message", data)
		case TypeLocation:
		default:
			if m.Position != nil {
				t.Fatalf("Decode(%q): a %q message with a position", data, m.Type)
			}
			return
		}
		p := m.Position
		if p == nil {
			t.Fatalf("Decode(%q): a location without a position", data)
		}
		if err := p.Validate(now); err != nil {
			t.Fatalf("Decode(%q) gave an invalid position %+v: %v", data, p, err)
		}
		if p.Has(position.FieldCourse) && (p.Course < 0 || p.Course >= 360) {
			t.Fatalf("Decode(%q): course %v", data, p.Course)
		}
		again, errs := position.Accept(p.AppendJSON(nil), now, nil)
		if len(errs) != 0 || len(again) != 1 {
			t.Fatalf("Decode(%q) gave %+v, which the wire contract refuses: %v", data, p, errors.Join(asErrors(errs)...))
		}
		// Fields not in Set may hold anything: compare what is present.
		q := again[0]
		if q.Set != p.Set || !q.Time.Equal(p.Time) || string(q.AppendJSON(nil)) != string(p.AppendJSON(nil)) {
			t.Fatalf("round trip of %s gave %s", p.AppendJSON(nil), q.AppendJSON(nil))
		}
	})
}

func asErrors(errs []*position.Error) []error {
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = e
	}
	return out
}
