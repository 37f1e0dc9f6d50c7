package token

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
)

// b64url marks the bytes of the base64url alphabet (RFC 4648 §5).
var b64url = func() (t [256]bool) {
	for _, c := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" {
		t[c] = true
	}
	return t
}()

// segment decodes one base64url segment. It is strict, like the parser
// Verify uses: no padding and no stray bits in the last character, so that
// every token has exactly one serialization.
var segment = base64.RawURLEncoding.Strict()

// keySourceParams are the JWS header parameters that name or carry a key
// (RFC 7515 §4.1.2–4.1.6). Keys come only from the configured JWKS, so a
// token that carries any of them is forged or meant for someone else.
var keySourceParams = [...]string{"jku", "jwk", "x5u", "x5c"}

// checkCompact checks the shape of raw before anything is decoded: the JWS
// compact serialization, three base64url segments separated by dots, without
// padding, of which the header and the payload are not empty. An empty
// signature passes here so that alg "none" is reported as such.
func checkCompact(raw string) error {
	if raw == "" {
		return fmt.Errorf("%w: empty", ErrMalformed)
	}
	if raw[0] == '{' {
		return fmt.Errorf("%w: JWS JSON serialization is not accepted", ErrMalformed)
	}
	dots := 0
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case b64url[c]:
		case c == '.':
			dots++
		case c == '=':
			return fmt.Errorf("%w: base64 padding at offset %d", ErrMalformed, i)
		default:
			return fmt.Errorf("%w: byte %q at offset %d is not base64url", ErrMalformed, c, i)
		}
	}
	if dots != 2 {
		return fmt.Errorf("%w: %d segments, want 3", ErrMalformed, dots+1)
	}
	header, rest, _ := strings.Cut(raw, ".")
	if header == "" || rest[0] == '.' {
		return fmt.Errorf("%w: empty header or payload", ErrMalformed)
	}
	return nil
}

// checkHeader decodes the JOSE header seg and checks it: alg exactly "EdDSA",
// no crit, no key-source parameter, typ equal to want (case-insensitively,
// with or without the "application/" prefix, RFC 7515 §4.1.9), and a kid of
// 1 to MaxKIDLen bytes, which it returns. It decodes into a map, as the JWT
// parser does, so that both read the same members.
func checkHeader(seg, want string) (kid string, err error) {
	b, err := segment.DecodeString(seg)
	if err != nil {
		return "", fmt.Errorf("%w: header: %w", ErrMalformed, err)
	}
	var h map[string]any
	if err := json.Unmarshal(b, &h); err != nil {
		return "", fmt.Errorf("%w: header: %w", ErrMalformed, err)
	}
	if alg, ok := h["alg"].(string); !ok || alg != Alg {
		return "", fmt.Errorf("%w: alg %s, want %q", ErrAlgorithm, clip(h["alg"]), Alg)
	}
	if crit, ok := h["crit"]; ok {
		return "", fmt.Errorf("%w: crit %s", ErrCritical, clip(crit))
	}
	for _, p := range keySourceParams {
		if _, ok := h[p]; ok {
			return "", fmt.Errorf("%w: header parameter %q is not accepted: keys come only from the configured JWKS", ErrMalformed, p)
		}
	}
	if typ, ok := h["typ"].(string); !ok || !typeMatches(typ, want) {
		return "", fmt.Errorf("%w: typ %s, want %q", ErrType, clip(h["typ"]), want)
	}
	kid, ok := h["kid"].(string)
	switch {
	case !ok || kid == "":
		return "", fmt.Errorf("%w: no kid in the header", ErrUnknownKey)
	case len(kid) > MaxKIDLen:
		return "", fmt.Errorf("%w: kid of %d bytes, limit %d", ErrUnknownKey, len(kid), MaxKIDLen)
	}
	return kid, nil
}

// typeMatches reports whether the header typ names the media type want.
func typeMatches(typ, want string) bool {
	if len(typ) > len("application/") && strings.EqualFold(typ[:len("application/")], "application/") {
		typ = typ[len("application/"):]
	}
	return strings.EqualFold(typ, want)
}

// clip renders a header or claim value for an error message: quoted, and
// cut to a length that is safe to log.
func clip(v any) string {
	if v == nil {
		return "missing"
	}
	return fmt.Sprintf("%q", truncate(fmt.Sprint(v)))
}

// truncate cuts s to at most 64 bytes, marking the cut.
func truncate(s string) string {
	if len(s) <= 64 {
		return s
	}
	return s[:60] + "…"
}
