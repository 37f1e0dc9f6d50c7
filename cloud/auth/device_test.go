package auth

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"
	"golang.org/x/oauth2"

	"trackgate/internal/token"
)

// startDeviceAuth starts a device authorization for public client clientID
// with raw POST /device_authorization and returns the answer.
func (f *fixture) startDeviceAuth(t *testing.T, clientID, scope string) map[string]any {
	t.Helper()
	form := url.Values{"client_id": {clientID}}
	if scope != "" {
		form.Set("scope", scope)
	}
	status, _, m := f.post(t, "/device_authorization", form, "", "")
	if status != 200 {
		t.Fatalf("device authorization: %d %v", status, m)
	}
	return m
}

// pollDevice polls the token endpoint for a device code as public client clientID.
func (f *fixture) pollDevice(t *testing.T, clientID, deviceCode string) (int, map[string]any) {
	t.Helper()
	status, _, m := f.post(t, "/token", url.Values{"grant_type": {GrantDeviceCode}, "client_id": {clientID}, "device_code": {deviceCode}}, "", "")
	return status, m
}

// decideDevice opens the verification page for userCode in b, which must be
// signed in, and presses Allow (approve) or Deny.
func (b *browser) decideDevice(t *testing.T, userCode, action string) page {
	t.Helper()
	p := b.get(t, "/device?"+url.Values{"user_code": {userCode}}.Encode())
	if p.status != 200 || !strings.Contains(p.body, `value="approve"`) {
		t.Fatalf("verification page for %s: %d at %s: %.300s", userCode, p.status, p.url, p.body)
	}
	return b.submit(t, p, "/device", url.Values{"action": {action}})
}

var userCodePattern = regexp.MustCompile(`^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$`)

// TestDeviceGrant covers the device authorization grant (AUTH.md K 87–93)
// with trackctl and the gateway as devices.
func TestDeviceGrant(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	clk := f.moveClock()
	ctx := context.Background()
	// ann's browser is signed in with her password and TOTP code; tia
	// signs in through the verification page.
	b := f.browser(t)
	b.signIn(t, b.get(t, "/login"), "ann", userPassword, f.user(t, "ann", userPassword, true))
	tiaSecret := f.user(t, "tia", userPassword, true)
	introspect := f.resourceServer(t)
	apiVerifier := f.verifier(t, f.srv.APIAudience())
	interval := 5 * time.Second

	t.Run("92 the verification page requires sign-in with TOTP, shows the client and scopes, asks Allow or Deny", func(t *testing.T) {
		d := f.startDeviceAuth(t, "trackctl", "tracks:read devices:read")
		code := jsonStr(d, "user_code")
		b := f.browser(t)
		p := b.get(t, "/device?"+url.Values{"user_code": {code}}.Encode())
		if p.url.Path != "/login" || !strings.Contains(p.body, `action="/login"`) || strings.Contains(p.body, "approve") {
			t.Fatalf("signed out: %d at %s", p.status, p.url)
		}
		if rt := p.hidden().Get("return_to"); rt != "/device?user_code="+url.QueryEscape(code) {
			t.Errorf("return_to %q", rt)
		}
		// A POST while signed out decides nothing: it is sent to sign in.
		if p = b.post(t, "/device", url.Values{"user_code": {code}, "action": {"approve"}}); p.url.Path != "/login" || !strings.Contains(p.body, `action="/login"`) {
			t.Fatalf("POST signed out: %d at %s", p.status, p.url)
		}
		// The password alone is not enough: the page wants the TOTP code.
		p = b.submit(t, p, "/login", url.Values{"username": {"tia"}, "password": {userPassword}})
		if p.url.Path != "/login/totp" {
			t.Fatalf("after the password: %d at %s", p.status, p.url)
		}
		if p2 := b.get(t, "/device?"+url.Values{"user_code": {code}}.Encode()); p2.url.Path != "/login/totp" || strings.Contains(p2.body, "approve") {
			t.Fatalf("half signed in: %d at %s", p2.status, p2.url)
		}
		totpCode, err := totp.GenerateCode(tiaSecret, f.srv.now())
		if err != nil {
			t.Fatal(err)
		}
		p = b.submit(t, p, "/login/totp", url.Values{"code": {totpCode}})
		if p.status != 200 || p.url.Path != "/device" || p.url.Query().Get("user_code") != code {
			t.Fatalf("after TOTP: %d at %s", p.status, p.url)
		}
		for _, want := range []string{"trackctl (command line)", "read your tracks", "list your devices", code,
			`name="action" value="approve">Allow</button>`, `name="action" value="deny" class="secondary">Deny</button>`, "<b>tia</b>"} {
			if !strings.Contains(p.body, want) {
				t.Errorf("the confirmation page lacks %q: %s", want, p.body)
			}
		}
		if strings.Contains(p.body, "write") {
			t.Error("the page shows scopes that were not asked for")
		}
		for _, h := range []string{"Content-Security-Policy", "X-Frame-Options", "Referrer-Policy"} {
			if p.header.Get(h) == "" {
				t.Errorf("7 9: no %s", h)
			}
		}
		// A forged form decides nothing.
		if p := b.post(t, "/device", url.Values{"user_code": {code}, "action": {"approve"}, "csrf": {"forged"}}); p.status != http.StatusForbidden {
			t.Errorf("forged csrf: %d", p.status)
		}
		status, m := f.pollDevice(t, "trackctl", jsonStr(d, "device_code"))
		wantOAuthError(t, status, m, 400, "authorization_pending")
	})

	t.Run("87 device authorization response", func(t *testing.T) {
		status, h, m := f.post(t, "/device_authorization", url.Values{"client_id": {"trackctl"}, "scope": {"tracks:read"}}, "", "")
		if status != 200 || h.Get("Cache-Control") != "no-store" {
			t.Fatalf("6: %d %v", status, h)
		}
		verify := f.http.URL + "/device"
		if jsonStr(m, "device_code") == "" || !userCodePattern.MatchString(jsonStr(m, "user_code")) || m["verification_uri"] != verify ||
			m["verification_uri_complete"] != verify+"?user_code="+jsonStr(m, "user_code") || m["expires_in"] != 600.0 || m["interval"] != 5.0 {
			t.Errorf("%v", m)
		}
		for _, tc := range []struct {
			name   string
			form   url.Values
			status int
			err    string
		}{
			{"87 unknown client", url.Values{"client_id": {"nobody"}}, 401, "invalid_client"},
			{"87 no client", url.Values{}, 401, "invalid_client"},
			{"37 client without the device grant", url.Values{"client_id": {"phone"}}, 400, "unauthorized_client"},
			{"87 scope the client may not have", url.Values{"client_id": {"gateway"}, "scope": {"tracks:read"}}, 400, "invalid_scope"},
			{"87 broker scope", url.Values{"client_id": {"trackctl"}, "scope": {"device"}}, 400, "invalid_scope"},
			{"87 gateway scope for a client that does not list it", url.Values{"client_id": {"trackctl"}, "scope": {"gateway"}}, 400, "invalid_scope"},
			{"87 introspect scope", url.Values{"client_id": {"gateway"}, "scope": {"introspect"}}, 400, "invalid_scope"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				status, _, m := f.post(t, "/device_authorization", tc.form, "", "")
				wantOAuthError(t, status, m, tc.status, tc.err)
			})
		}
		resp, err := http.Get(f.http.URL + "/device_authorization?client_id=trackctl")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("34: GET: %d", resp.StatusCode)
		}
	})

	t.Run("88 authorization_pending, then slow_down when polling too fast, and the interval grows by 5 s", func(t *testing.T) {
		d := f.startDeviceAuth(t, "trackctl", "tracks:read")
		dc := jsonStr(d, "device_code")
		steps := []struct {
			wait time.Duration
			err  string
		}{
			{0, "authorization_pending"},
			{interval, "authorization_pending"}, // on time
			{0, "slow_down"},                    // too soon: the interval is now 10 s
			{interval, "slow_down"},             // 5 s was enough before, not now: 15 s
			{3 * interval, "authorization_pending"},
		}
		for i, s := range steps {
			clk.advance(s.wait)
			status, m := f.pollDevice(t, "trackctl", dc)
			if status != 400 || m["error"] != s.err {
				t.Errorf("poll %d after %v: %d %v, want %s", i+1, s.wait, status, m, s.err)
			}
		}
		// Approved, a poll that comes too soon is still slow_down and
		// does not spend the approval.
		b.decideDevice(t, jsonStr(d, "user_code"), "approve")
		status, m := f.pollDevice(t, "trackctl", dc)
		wantOAuthError(t, status, m, 400, "slow_down")
		clk.advance(4 * interval)
		if status, m := f.pollDevice(t, "trackctl", dc); status != 200 || m["access_token"] == nil {
			t.Errorf("poll after approval: %d %v", status, m)
		}
	})

	t.Run("89 approval gives tokens once", func(t *testing.T) {
		d := f.startDeviceAuth(t, "trackctl", "tracks:read devices:read")
		clk.advance(interval)
		status, m := f.pollDevice(t, "trackctl", jsonStr(d, "device_code"))
		wantOAuthError(t, status, m, 400, "authorization_pending")
		if p := b.decideDevice(t, jsonStr(d, "user_code"), "approve"); p.status != 200 || !strings.Contains(p.body, "connected") {
			t.Fatalf("approve: %d %.300s", p.status, p.body)
		}
		clk.advance(interval)
		status, h, m := f.post(t, "/token", url.Values{"grant_type": {GrantDeviceCode}, "client_id": {"trackctl"}, "device_code": {jsonStr(d, "device_code")}}, "", "")
		if status != 200 || h.Get("Cache-Control") != "no-store" || m["scope"] != "devices:read tracks:read" || !refreshTokenFormat.MatchString(jsonStr(m, "refresh_token")) {
			t.Fatalf("tokens: %d %v %v", status, h, m)
		}
		c, err := apiVerifier.Verify(ctx, jsonStr(m, "access_token"))
		if err != nil {
			t.Fatal(err)
		}
		if c.Subject != "usr:ann" || c.ClientID != "trackctl" || c.Scope != "devices:read tracks:read" || strings.Join(c.AMR, " ") != "pwd otp" {
			t.Errorf("claims %+v", c)
		}
		clk.advance(interval)
		status, m2 := f.pollDevice(t, "trackctl", jsonStr(d, "device_code"))
		wantOAuthError(t, status, m2, 400, "invalid_grant")
		// The first tokens stay good: a second poll is no attack on them.
		if in := introspect(t, jsonStr(m, "refresh_token")); in["active"] != true {
			t.Errorf("refresh token after a second poll: %v", in)
		}
		// The user code is spent too.
		p := b.get(t, "/device?"+url.Values{"user_code": {jsonStr(d, "user_code")}}.Encode())
		if p.status != 400 || strings.Contains(p.body, "approve") {
			t.Errorf("verification page for a used code: %d", p.status)
		}
		// The refresh token from the device grant rotates as any other.
		f.refreshOK(t, jsonStr(m, "refresh_token"), nil)
	})

	t.Run("89 denial gives access_denied", func(t *testing.T) {
		d := f.startDeviceAuth(t, "trackctl", "")
		if p := b.decideDevice(t, jsonStr(d, "user_code"), "deny"); p.status != 200 || !strings.Contains(p.body, "denied") {
			t.Fatalf("deny: %d %.300s", p.status, p.body)
		}
		for range 2 {
			clk.advance(interval)
			status, m := f.pollDevice(t, "trackctl", jsonStr(d, "device_code"))
			wantOAuthError(t, status, m, 400, "access_denied")
		}
		p := b.get(t, "/device?"+url.Values{"user_code": {jsonStr(d, "user_code")}}.Encode())
		if p.status != 400 || strings.Contains(p.body, "approve") {
			t.Errorf("verification page for a denied code: %d", p.status)
		}
	})

	t.Run("91 device codes have 256 random bits", func(t *testing.T) {
		seen := map[string]bool{}
		for range 5 {
			dc := jsonStr(f.startDeviceAuth(t, "gateway", ""), "device_code")
			raw, ok := strings.CutPrefix(dc, "tgd_")
			b, err := base64.RawURLEncoding.DecodeString(raw)
			if !ok || err != nil || len(b) < 16 {
				t.Errorf("device code %q: %d random bytes", dc, len(b))
			}
			if seen[dc] {
				t.Errorf("device code %s issued twice", dc)
			}
			seen[dc] = true
		}
		// No device code is stored in the clear.
		db := readDBFiles(t, f.dir)
		for dc := range seen {
			if bytes.Contains(db, []byte(dc[4:])) {
				t.Errorf("device code %s in the database", dc)
			}
		}
	})

	t.Run("93 a device code polled by another client", func(t *testing.T) {
		d := f.startDeviceAuth(t, "trackctl", "tracks:read")
		dc := jsonStr(d, "device_code")
		clk.advance(interval)
		status, m := f.pollDevice(t, "trackctl", dc)
		wantOAuthError(t, status, m, 400, "authorization_pending")
		clk.advance(interval)
		status, m = f.pollDevice(t, "gateway", dc)
		wantOAuthError(t, status, m, 400, "invalid_grant")
		// The other client's poll does not count against trackctl's interval.
		status, m = f.pollDevice(t, "trackctl", dc)
		wantOAuthError(t, status, m, 400, "authorization_pending")
		b.decideDevice(t, jsonStr(d, "user_code"), "approve")
		clk.advance(4 * interval)
		status, m = f.pollDevice(t, "gateway", dc)
		wantOAuthError(t, status, m, 400, "invalid_grant")
		// Nor does it take the tokens meant for trackctl.
		clk.advance(4 * interval)
		status, m = f.pollDevice(t, "trackctl", dc)
		if status != 200 || m["access_token"] == nil {
			t.Errorf("trackctl after the gateway polled its code: %d %v", status, m)
		}
		status, m = f.pollDevice(t, "phone", dc)
		wantOAuthError(t, status, m, 400, "unauthorized_client")
	})

	t.Run("88 malformed polls", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			form url.Values
			err  string
		}{
			{"missing device_code", url.Values{}, "invalid_request"},
			{"unknown device_code", url.Values{"device_code": {"tgd_" + newSecret()}}, "invalid_grant"},
			{"user code as device code", url.Values{"device_code": {"BCDF-GHJK"}}, "invalid_grant"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				form := url.Values{"grant_type": {GrantDeviceCode}, "client_id": {"trackctl"}}
				for k, v := range tc.form {
					form[k] = v
				}
				status, _, m := f.post(t, "/token", form, "", "")
				wantOAuthError(t, status, m, 400, tc.err)
			})
		}
	})

	t.Run("87 89 happy path with x/oauth2 for the gateway", func(t *testing.T) {
		cfg := &oauth2.Config{ClientID: "gateway", Scopes: []string{"devices:read", "devices:write"},
			Endpoint: oauth2.Endpoint{TokenURL: f.http.URL + "/token", DeviceAuthURL: f.http.URL + "/device_authorization", AuthStyle: oauth2.AuthStyleInParams}}
		da, err := cfg.DeviceAuth(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if da.Interval != 5 || time.Until(da.Expiry) < 9*time.Minute || da.VerificationURI != f.http.URL+"/device" {
			t.Errorf("device auth %+v", da)
		}
		if p := b.decideDevice(t, da.UserCode, "approve"); p.status != 200 {
			t.Fatalf("approve: %d", p.status)
		}
		da.Interval = 1 // x/oauth2 waits this long before its first poll
		tok, err := cfg.DeviceAccessToken(ctx, da)
		if err != nil {
			t.Fatal(err)
		}
		c, err := apiVerifier.Verify(ctx, tok.AccessToken)
		if err != nil {
			t.Fatal(err)
		}
		if c.Subject != "usr:ann" || c.ClientID != "gateway" || c.Scope != "devices:read devices:write" || tok.RefreshToken == "" {
			t.Errorf("claims %+v, token %+v", c, tok)
		}
		// The gateway refreshes through x/oauth2 too.
		expired := *tok
		expired.Expiry = time.Now().Add(-time.Minute)
		next, err := cfg.TokenSource(ctx, &expired).Token()
		if err != nil || next.RefreshToken == tok.RefreshToken {
			t.Errorf("refresh: %+v %v", next, err)
		}
	})

	t.Run("89 expiry gives expired_token", func(t *testing.T) {
		pending := f.startDeviceAuth(t, "trackctl", "")
		approved := f.startDeviceAuth(t, "trackctl", "")
		b.decideDevice(t, jsonStr(approved, "user_code"), "approve")
		clk.advance(10 * time.Minute)
		for _, d := range []map[string]any{pending, approved} {
			status, m := f.pollDevice(t, "trackctl", jsonStr(d, "device_code"))
			wantOAuthError(t, status, m, 400, "expired_token")
		}
		p := b.get(t, "/device?"+url.Values{"user_code": {jsonStr(pending, "user_code")}}.Encode())
		if p.status != 400 || strings.Contains(p.body, "approve") {
			t.Errorf("verification page for an expired code: %d", p.status)
		}
	})

	t.Run("90 user codes: 8 letters of BCDFGHJKLMNPQRSTVWXZ, case- and dash-insensitive", func(t *testing.T) {
		seen := map[string]bool{}
		for range 10 {
			code := jsonStr(f.startDeviceAuth(t, "trackctl", ""), "user_code")
			if !userCodePattern.MatchString(code) || seen[code] {
				t.Errorf("user code %q", code)
			}
			seen[code] = true
		}
		d := f.startDeviceAuth(t, "trackctl", "")
		code := jsonStr(d, "user_code")
		plain := strings.ReplaceAll(code, "-", "")
		for _, typed := range []string{code, strings.ToLower(code), plain, strings.ToLower(plain), " " + plain[:2] + " " + plain[2:6] + "-" + plain[6:] + " ",
			strings.ToLower(plain[:4]) + "--" + plain[4:]} {
			p := b.get(t, "/device?"+url.Values{"user_code": {typed}}.Encode())
			if p.status != 200 || !strings.Contains(p.body, `value="approve"`) || !strings.Contains(p.body, code) {
				t.Errorf("typed %q: %d", typed, p.status)
			}
		}
		// Deciding with a lower-case, dashless code works as well.
		p := b.get(t, "/device?"+url.Values{"user_code": {code}}.Encode())
		form := p.hidden()
		form.Set("user_code", strings.ToLower(plain))
		form.Set("action", "approve")
		if p := b.post(t, "/device", form); p.status != 200 || !strings.Contains(p.body, "connected") {
			t.Errorf("approve with %q: %d", strings.ToLower(plain), p.status)
		}
		clk.advance(interval)
		if status, m := f.pollDevice(t, "trackctl", jsonStr(d, "device_code")); status != 200 {
			t.Errorf("poll: %d %v", status, m)
		}
	})

	// Last: it blocks the verification page for this address.
	t.Run("90 wrong user codes are throttled", func(t *testing.T) {
		clk.advance(15*time.Minute + time.Second) // forget the failures of the subtests above
		d := f.startDeviceAuth(t, "trackctl", "")
		wrong := []string{"BBBB-BBBB", "hello", "AEIO-UAEI", "BCDF-GHJ", "BCDF-GHJKL", "", "0000-0000", "ZZZZ-ZZZZ", "bbbb bbbb", "DDDD-DDDD"}
		for i, typed := range wrong {
			if typed == "" {
				// A POST counts as well.
				p := b.get(t, "/device?"+url.Values{"user_code": {jsonStr(d, "user_code")}}.Encode())
				form := p.hidden()
				form.Set("user_code", "CCCC-CCCC")
				form.Set("action", "approve")
				if p := b.post(t, "/device", form); p.status != 400 {
					t.Errorf("attempt %d (POST): %d", i+1, p.status)
				}
				continue
			}
			if p := b.get(t, "/device?"+url.Values{"user_code": {typed}}.Encode()); p.status != 400 {
				t.Errorf("attempt %d (%q): %d", i+1, typed, p.status)
			}
		}
		// Now even the right code is refused, in another session from the
		// same address too.
		other := f.browser(t)
		other.signIn(t, other.get(t, "/login"), "tia", userPassword, tiaSecret)
		for name, b := range map[string]*browser{"this session": b, "another session": other} {
			p := b.get(t, "/device?"+url.Values{"user_code": {jsonStr(d, "user_code")}}.Encode())
			if p.status != http.StatusTooManyRequests || strings.Contains(p.body, `value="approve"`) {
				t.Errorf("after 10 failures, %s: %d at %s", name, p.status, p.url)
			}
		}
		clk.advance(15*time.Minute + time.Second)
		d = f.startDeviceAuth(t, "trackctl", "")
		b.decideDevice(t, jsonStr(d, "user_code"), "approve")
	})
}

// TestGatewayBrokerToken: the gateway enrols with the device grant and gets
// an API token; refreshing with scope=gateway gives it a broker token for
// its owner's devices, with rotation and revocation as for any grant.
func TestGatewayBrokerToken(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	clk := f.moveClock()
	ctx := context.Background()
	b := f.browser(t)
	b.signIn(t, b.get(t, "/login"), "ann", userPassword, f.user(t, "ann", userPassword, true))
	f.user(t, "bob", userPassword, false)
	for _, d := range []struct{ owner, id string }{{"ann", "van-2"}, {"bob", "car-1"}, {"ann", "van-1"}} {
		if _, err := f.srv.AddDevice(ctx, d.owner, d.id, "", nil); err != nil {
			t.Fatal(err)
		}
	}
	apiVerifier := f.verifier(t, f.srv.APIAudience())
	mqttVerifier := f.verifier(t, AudienceMQTT)

	d := f.startDeviceAuth(t, "gateway", "")
	if p := b.decideDevice(t, jsonStr(d, "user_code"), "approve"); p.status != 200 {
		t.Fatalf("approve: %d", p.status)
	}
	clk.advance(5 * time.Second)
	status, m := f.pollDevice(t, "gateway", jsonStr(d, "device_code"))
	if status != 200 {
		t.Fatalf("poll: %d %v", status, m)
	}
	// The grant holds gateway, a broker scope: the first token is the
	// API's, without it.
	resp, rt := m, ""
	var mqttJTI string
	for _, step := range []struct {
		name    string
		scope   string // of the refresh; "-" for the device grant's first token
		mqtt    bool
		want    string
		devices []string
	}{
		{"the device grant's token is the API's, without gateway", "-", false, "devices:read devices:write revocations:read", nil},
		{"scope=gateway is a broker token for ann's devices", "gateway", true, "gateway", []string{"van-1", "van-2"}},
		{"scope=devices:write is an API token", "devices:write", false, "devices:write", nil},
		{"no scope is an API token with the API scopes", "", false, "devices:read devices:write revocations:read", nil},
	} {
		t.Run(step.name, func(t *testing.T) {
			if step.scope != "-" {
				var extra url.Values
				if step.scope != "" {
					extra = url.Values{"scope": {step.scope}}
				}
				status, resp = f.refreshAs(t, "gateway", rt, extra)
				if status != 200 {
					t.Fatalf("refresh: %d %v", status, resp)
				}
			}
			if next := jsonStr(resp, "refresh_token"); next == rt || !refreshTokenFormat.MatchString(next) {
				t.Errorf("refresh token not rotated: %v", resp)
			}
			rt = jsonStr(resp, "refresh_token")
			if resp["scope"] != step.want || resp["id_token"] != nil {
				t.Errorf("response %v, want scope %q and no ID token", resp, step.want)
			}
			tok := jsonStr(resp, "access_token")
			v, other := apiVerifier, mqttVerifier
			if step.mqtt {
				v, other = mqttVerifier, apiVerifier
			}
			c, err := v.Verify(ctx, tok)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := other.Verify(ctx, tok); !errors.Is(err, token.ErrAudience) {
				t.Errorf("verified for the other audience: %v", err)
			}
			if c.Subject != "usr:ann" || c.ClientID != "gateway" || c.Scope != step.want || !slices.Equal(c.Devices, step.devices) {
				t.Errorf("claims %+v, want devices %q", c, step.devices)
			}
			if step.mqtt {
				mqttJTI = c.ID
			}
		})
	}

	// Revoking the grant revokes the broker token issued on it.
	before := f.revokeCalls.Load()
	if status, _, m := f.post(t, "/revoke", url.Values{"token": {rt}, "client_id": {"gateway"}}, "", ""); status != 200 {
		t.Fatalf("revoke: %d %v", status, m)
	}
	if got := f.revokeCalls.Load(); got != before+1 {
		t.Errorf("OnRevoke called %d times by the revocation, want once", got-before)
	}
	req, _ := http.NewRequest("GET", f.http.URL+"/api/v1/revocations", nil)
	status, _, m = do(t, req)
	listed, _ := json.Marshal(m["revocations"])
	if status != 200 || mqttJTI == "" || !strings.Contains(string(listed), `"jti":"`+mqttJTI+`"`) {
		t.Errorf("revocations %d %s lack the broker token %q", status, listed, mqttJTI)
	}
	if status, m := f.refreshAs(t, "gateway", rt, url.Values{"scope": {"gateway"}}); status != 400 || m["error"] != "invalid_grant" {
		t.Errorf("refresh after revocation: %d %v", status, m)
	}
}

// TestDevicesAPI covers the devices API and device tokens (AUTH.md L 96,
// 97).
func TestDevicesAPI(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	f.user(t, "ann", userPassword, false)
	f.user(t, "bob", userPassword, false)
	annB := f.browser(t)
	_, ann := annB.trackctlTokens(t, "ann", "devices:read", "devices:write")
	_, annRead := annB.trackctlTokens(t, "ann", "devices:read", "tracks:read")
	_, bob := f.browser(t).trackctlTokens(t, "bob", "devices:read", "devices:write")
	introspect := f.resourceServer(t)
	mqtt := f.verifier(t, AudienceMQTT)

	api := func(t *testing.T, method, path, bearer, body string) (int, http.Header, map[string]any) {
		t.Helper()
		var r *strings.Reader
		if body != "" {
			r = strings.NewReader(body)
		} else {
			r = strings.NewReader("")
		}
		req, _ := http.NewRequest(method, f.http.URL+path, r)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		return do(t, req)
	}
	list := func(t *testing.T, owner string) []string {
		t.Helper()
		u, err := f.st.UserByName(ctx, owner)
		if err != nil {
			t.Fatal(err)
		}
		devs, err := f.st.Devices(ctx, u.ID)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, d := range devs {
			ids = append(ids, d.ID+"="+d.Name)
		}
		return ids
	}

	// ann adds her van; the subtests check the answer, and use its token.
	addStatus, addHeader, added := api(t, "POST", "/api/v1/devices", ann.AccessToken, `{"id":"van-1","name":"Van"}`)
	devTok := jsonStr(added, "token")
	c, err := mqtt.Verify(ctx, devTok)
	if err != nil {
		t.Fatalf("device token of %d %v: %v", addStatus, added, err)
	}
	devJTI := c.ID

	t.Run("96 adding a device gives 201 and a device token for the broker", func(t *testing.T) {
		if addStatus != http.StatusCreated || addHeader.Get("Location") != "/api/v1/devices/van-1" || addHeader.Get("Cache-Control") != "no-store" ||
			added["id"] != "van-1" || added["name"] != "Van" {
			t.Errorf("%d %v %v", addStatus, addHeader, added)
		}
		if c.Subject != "van-1" || c.ClientID != "van-1" || len(c.Audience) != 1 || c.Audience[0] != AudienceMQTT || c.Scope != ScopeDevice {
			t.Errorf("claims %+v", c)
		}
		if got := list(t, "ann"); strings.Join(got, ",") != "van-1=Van" {
			t.Errorf("ann's devices %v", got)
		}
		if got := list(t, "bob"); len(got) != 0 {
			t.Errorf("bob sees %v", got)
		}
	})

	for _, tc := range []struct {
		name   string
		bearer func() string
		method string
		path   string
		body   string
		status int
		err    string
	}{
		{"97 an id starting with usr: is 400", func() string { return ann.AccessToken }, "POST", "/api/v1/devices", `{"id":"usr:bob","name":"x"}`, 400, "invalid_request"},
		{"97 an id usr: alone is 400", func() string { return ann.AccessToken }, "POST", "/api/v1/devices", `{"id":"usr:"}`, 400, "invalid_request"},
		{"an id with a slash is 400", func() string { return ann.AccessToken }, "POST", "/api/v1/devices", `{"id":"a/b"}`, 400, "invalid_request"},
		{"an empty id is 400", func() string { return ann.AccessToken }, "POST", "/api/v1/devices", `{"name":"x"}`, 400, "invalid_request"},
		{"an unknown field is 400", func() string { return ann.AccessToken }, "POST", "/api/v1/devices", `{"id":"x","owner":"bob"}`, 400, "invalid_request"},
		{"a duplicate is 409", func() string { return ann.AccessToken }, "POST", "/api/v1/devices", `{"id":"van-1"}`, 409, "conflict"},
		{"another user's duplicate is 409", func() string { return bob.AccessToken }, "POST", "/api/v1/devices", `{"id":"van-1"}`, 409, "conflict"},
		{"76 no token is 401", func() string { return "" }, "POST", "/api/v1/devices", "", 401, "invalid_token"},
		{"76 a garbage token is 401", func() string { return "x.y.z" }, "POST", "/api/v1/devices", "", 401, "invalid_token"},
		{"76 devices:read cannot add", func() string { return annRead.AccessToken }, "POST", "/api/v1/devices", `{"id":"car"}`, 403, "insufficient_scope"},
		{"76 devices:read cannot remove", func() string { return annRead.AccessToken }, "DELETE", "/api/v1/devices/van-1", "", 403, "insufficient_scope"},
		{"97 a device token cannot add devices", func() string { return devTok }, "POST", "/api/v1/devices", "", 403, "insufficient_scope"},
		{"97 a device token cannot add", func() string { return devTok }, "POST", "/api/v1/devices", `{"id":"car"}`, 403, "insufficient_scope"},
		{"97 a device token cannot remove", func() string { return devTok }, "DELETE", "/api/v1/devices/van-1", "", 403, "insufficient_scope"},
		{"97 a device token gets no userinfo", func() string { return devTok }, "GET", "/userinfo", "", 403, "insufficient_scope"},
		{"97 a service token is not a user's", func() string {
			id, secret := f.service(t, "svc-devices", "devices:write")
			return f.ccToken(t, id, secret)
		}, "POST", "/api/v1/devices", `{"id":"car"}`, 403, "insufficient_scope"},
		{"another user's device is 404", func() string { return bob.AccessToken }, "DELETE", "/api/v1/devices/van-1", "", 404, "not_found"},
		{"a missing device is 404", func() string { return ann.AccessToken }, "DELETE", "/api/v1/devices/nothing", "", 404, "not_found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, h, m := api(t, tc.method, tc.path, tc.bearer(), tc.body)
			if status != tc.status || m["code"] != tc.err {
				t.Errorf("%d %v, want %d %s", status, m, tc.status, tc.err)
			}
			if status == 401 || status == 403 {
				if !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("WWW-Authenticate %q", h.Get("WWW-Authenticate"))
				}
			}
		})
	}
	if got := list(t, "ann"); strings.Join(got, ",") != "van-1=Van" {
		t.Errorf("after the refused requests ann has %v", got)
	}

	t.Run("96 removing a device revokes its token", func(t *testing.T) {
		if m := introspect(t, devTok); m["active"] != true || m["sub"] != "van-1" {
			t.Errorf("device token before removal: %v", m)
		}
		if status, _, m := api(t, "DELETE", "/api/v1/devices/van-1", ann.AccessToken, ""); status != http.StatusNoContent {
			t.Fatalf("delete: %d %v", status, m)
		}
		if got := list(t, "ann"); len(got) != 0 {
			t.Errorf("after removal: %v", got)
		}
		status, _, m := api(t, "GET", "/api/v1/revocations", "", "")
		if status != 200 {
			t.Fatalf("revocations: %d %v", status, m)
		}
		listed, _ := json.Marshal(m["revocations"])
		if devJTI == "" || !strings.Contains(string(listed), `"jti":"`+devJTI+`"`) {
			t.Errorf("revocations %s lack the device token %s", listed, devJTI)
		}
		if _, err := mqtt.Verify(ctx, devTok); err == nil {
			t.Error("the removed device's token still verifies")
		}
		if m := introspect(t, devTok); !exactlyInactive(m) {
			t.Errorf("device token after removal: %v", m)
		}
		if status, _, _ := api(t, "DELETE", "/api/v1/devices/van-1", ann.AccessToken, ""); status != 404 {
			t.Errorf("second delete: %d", status)
		}
	})
}
