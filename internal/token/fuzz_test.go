package token

import (
	"context"
	"errors"
	"testing"
	"time"
)

// FuzzVerify feeds Verify arbitrary strings, seeded with the tokens of the
// checklist table: it never panics, a rejection wraps exactly one package
// error and returns no claims, and nothing verifies but the genuine tokens
// of the table.
func FuzzVerify(f *testing.F) {
	fx := newFixture(f)
	genuine := map[string]bool{}
	for _, tc := range fx.cases(f) {
		f.Add(tc.token)
		if tc.want == nil {
			genuine[tc.token] = true
		}
	}
	f.Fuzz(func(t *testing.T, raw string) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c, err := fx.v.Verify(ctx, raw)
		if err == nil {
			if !genuine[raw] {
				t.Fatalf("forged token %q verified as %+v", raw, c)
			}
			return
		}
		if c != nil {
			t.Fatalf("rejected token returned claims %+v", c)
		}
		n := 0
		for _, e := range allErrors {
			if errors.Is(err, e) {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("Verify(%q): %v wraps %d package errors, want 1", raw, err, n)
		}
	})
}
