package auth

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzSafeReturn: a return_to that passes never leaves the server when a
// browser resolves it against the issuer.
func FuzzSafeReturn(f *testing.F) {
	for _, s := range []string{"/", "/tracks?x=1", "//evil.example", "/\\evil.example", "https://evil.example", "/%2F%2Fevil", "/\t/evil", ""} {
		f.Add(s)
	}
	base, _ := url.Parse("https://track.example/")
	f.Fuzz(func(t *testing.T, v string) {
		if !safeReturn(v) {
			return
		}
		ref, err := url.Parse(v)
		if err != nil {
			t.Fatalf("%q passed but does not parse: %v", v, err)
		}
		if got := base.ResolveReference(ref); got.Host != base.Host || got.Scheme != base.Scheme {
			t.Fatalf("%q passed but resolves to %s", v, got)
		}
	})
}

// FuzzRedirectAllowed: a redirect URI is allowed only as registered, or as
// a registered loopback URI with a port added.
func FuzzRedirectAllowed(f *testing.F) {
	registered := []string{"http://127.0.0.1/callback", "http://[::1]/callback", "https://app.example/cb", "trackgate:/callback"}
	for _, s := range []string{"http://127.0.0.1:5000/callback", "http://[::1]:1/callback", "https://app.example/cb/", "http://127.0.0.1:5000/callback#x",
		"http://localhost:5000/callback", "http://127.0.0.1:5000@evil/callback", "trackgate:/callback"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, uri string) {
		if !redirectAllowed(registered, uri) {
			return
		}
		for _, r := range registered {
			if r == uri {
				return
			}
		}
		u, err := url.Parse(uri)
		if err != nil || u.Scheme != "http" || !isLoopback(u.Hostname()) || u.User != nil || u.Fragment != "" {
			t.Fatalf("%q allowed but is not a loopback http URI", uri)
		}
		if !strings.HasPrefix(u.Path, "/callback") {
			t.Fatalf("%q allowed with path %q", uri, u.Path)
		}
	})
}

// FuzzNormalUserCode: a typed user code normalises to 8 letters of the
// alphabet, or is refused.
func FuzzNormalUserCode(f *testing.F) {
	for _, s := range []string{"BCDF-GHJK", "bcdf ghjk", "BCDFGHJKL", "AEIO-UBCD", "ＢCDF-GHJK", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, typed string) {
		got := normalUserCode(typed)
		if got == "" {
			return
		}
		if len(got) != userCodeLen || strings.Trim(got, userCodeAlphabet) != "" {
			t.Fatalf("%q normalised to %q", typed, got)
		}
		if normalUserCode(formatUserCode(got)) != got {
			t.Fatalf("%q does not survive formatting", got)
		}
	})
}

// FuzzReadForm: a token-endpoint body is parsed or refused, never more.
func FuzzReadForm(f *testing.F) {
	for _, s := range []string{"grant_type=refresh_token&refresh_token=x", "a=1&a=2", "%zz", strings.Repeat("a", 100)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		r := httptestPost(body)
		form, err := readForm(r)
		if err == nil {
			for k, v := range form {
				if len(v) != 1 {
					t.Fatalf("%q: parameter %q has %d values", body, k, len(v))
				}
			}
		}
	})
}

func httptestPost(body string) *http.Request {
	r := httptest.NewRequest("POST", "/token", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return r
}
