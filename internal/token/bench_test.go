package token

import (
	"context"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

func BenchmarkSign(b *testing.B) {
	k := mustKey(b)
	c := validClaims()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Sign(k, c); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerify compares a full Verify with a bare jwt.Parse of the same
// token and with the checks Verify adds, so that their overhead shows.
func BenchmarkVerify(b *testing.B) {
	f := newFixture(b)
	tok := mustSign(b, f.key, validClaims())
	ctx := context.Background()
	pub := f.key.Public()

	b.Run("Verify", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := f.v.Verify(ctx, tok); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("jwt.Parse", func(b *testing.B) {
		keyfunc := func(*jwt.Token) (any, error) { return pub, nil }
		b.ReportAllocs()
		for b.Loop() {
			if _, err := jwt.Parse(tok, keyfunc, jwt.WithValidMethods([]string{Alg})); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("jwt.ParseWithClaims with Verify's parser", func(b *testing.B) {
		keyfunc := f.v.keys.Load().kf.KeyfuncCtx(ctx)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := f.v.parser.ParseWithClaims(tok, new(Claims), keyfunc); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("extra checks", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := checkCompact(tok); err != nil {
				b.Fatal(err)
			}
			header, _, _ := strings.Cut(tok, ".")
			kid, err := checkHeader(header, Type)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := f.v.keysFor(ctx, kid); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("1 MiB rejected", func(b *testing.B) {
		huge := strings.Repeat("A", 1<<20)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := f.v.Verify(ctx, huge); err == nil {
				b.Fatal("accepted")
			}
		}
	})
}
