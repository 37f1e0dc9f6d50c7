package enrol

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// testCloud is the fake cloud's base URL. Its requests never reach the
// network: the fake is the HTTP client's transport, so the tests run in a
// synctest bubble, whose clock makes polling and expiry instant.
const testCloud = "http://127.0.0.1:8080"

// fake plays the cloud's OAuth endpoints and its devices API.
type fake struct {
	t testing.TB

	mu          sync.Mutex
	down        bool     // the network fails
	sub         string   // the subject of the tokens
	pollAnswers []string // errors to answer the device grant's polls with, in turn
	polls       []time.Time
	deviceScope string // the scope the device authorization asked for
	rt          string // the valid refresh token
	issued      int
	expiresIn   int64
	delay       time.Duration             // each refresh takes this long
	refreshFail func(http.ResponseWriter) // when set, answers refreshes
	refreshes   []url.Values
	access      map[string]string // access token → its scope
	mine        map[string]bool   // the owner's devices
	others      map[string]bool   // another account's devices
	posted      []string
}

func newFake(t testing.TB) *fake {
	return &fake{t: t, sub: "usr:ann", expiresIn: 600, access: map[string]string{},
		mine: map[string]bool{}, others: map[string]bool{}}
}

func (f *fake) client() *http.Client { return &http.Client{Transport: f} }

// RoundTrip serves the request in process.
func (f *fake) RoundTrip(r *http.Request) (*http.Response, error) {
	f.mu.Lock()
	down := f.down
	f.mu.Unlock()
	if down {
		return nil, errors.New("dial tcp 127.0.0.1:8080: connection refused")
	}
	w := httptest.NewRecorder()
	f.ServeHTTP(w, r)
	return w.Result(), nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func oauthError(w http.ResponseWriter, code, desc string) {
	writeJSON(w, http.StatusBadRequest, map[string]string{"error": code, "error_description": desc})
}

// jwt makes an unsigned token whose payload the gateway reads.
func jwt(claims map[string]any) string {
	b, _ := json.Marshal(claims)
	return "eyJhbGciOiJFZERTQSJ9." + base64.RawURLEncoding.EncodeToString(b) + ".c2ln"
}

// issue answers tokens for scope, rotating the refresh token. f.mu is held.
func (f *fake) issue(w http.ResponseWriter, scope string) {
	f.issued++
	at := jwt(map[string]any{"sub": f.sub, "scope": scope, "jti": fmt.Sprint(f.issued)})
	f.access[at] = scope
	f.rt = fmt.Sprintf("tgr_%d", f.issued)
	writeJSON(w, http.StatusOK, map[string]any{"access_token": at, "token_type": "Bearer",
		"expires_in": f.expiresIn, "refresh_token": f.rt, "scope": scope})
}

func (f *fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == "POST" && r.Header.Get("Content-Type") == "application/x-www-form-urlencoded" {
		if err := r.ParseForm(); err != nil {
			f.t.Errorf("%s: %v", r.URL.Path, err)
		}
		if id := r.PostForm.Get("client_id"); id != "gateway" || r.PostForm.Has("client_secret") {
			f.t.Errorf("%s: client_id %q, client_secret %v", r.URL.Path, id, r.PostForm.Has("client_secret"))
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch r.URL.Path {
	case "/.well-known/openid-configuration":
		writeJSON(w, http.StatusOK, map[string]string{"issuer": testCloud, "token_endpoint": testCloud + "/token",
			"device_authorization_endpoint": testCloud + "/device_authorization",
			"revocation_endpoint":           testCloud + "/revoke", "jwks_uri": testCloud + "/jwks.json"})
	case "/device_authorization":
		f.deviceScope = r.PostForm.Get("scope")
		writeJSON(w, http.StatusOK, map[string]any{"device_code": "tgd_code", "user_code": "WDJB-MJHT",
			"verification_uri": testCloud + "/device", "verification_uri_complete": testCloud + "/device?user_code=WDJB-MJHT",
			"expires_in": 600, "interval": 1})
	case "/token":
		switch r.PostForm.Get("grant_type") {
		case "urn:ietf:params:oauth:grant-type:device_code":
			f.polls = append(f.polls, time.Now())
			if r.PostForm.Get("device_code") != "tgd_code" {
				oauthError(w, "invalid_grant", "unknown device code")
			} else if len(f.pollAnswers) > 0 {
				oauthError(w, f.pollAnswers[0], "")
				f.pollAnswers = f.pollAnswers[1:]
			} else {
				f.issue(w, "devices:read devices:write revocations:read")
			}
		case "refresh_token":
			f.refreshes = append(f.refreshes, r.PostForm)
			f.mu.Unlock()
			time.Sleep(f.delay)
			f.mu.Lock()
			switch {
			case f.refreshFail != nil:
				f.refreshFail(w)
			case r.PostForm.Get("refresh_token") != f.rt:
				oauthError(w, "invalid_grant", "refresh token already used; its grant is revoked: sign in again")
			default:
				f.issue(w, r.PostForm.Get("scope"))
			}
		default:
			oauthError(w, "unsupported_grant_type", "")
		}
	case "/api/v1/devices":
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if scope := f.access[tok]; scope != "devices:read devices:write" {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"detail": "token scope " + scope})
			return
		}
		f.devices(w, r)
	default:
		http.NotFound(w, r)
	}
}

// devices serves GET and POST /api/v1/devices. f.mu is held.
func (f *fake) devices(w http.ResponseWriter, r *http.Request) {
	if r.Method == "GET" {
		type device struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		}
		out := []device{}
		for id := range f.mine {
			out = append(out, device{id, "van " + id})
		}
		writeJSON(w, http.StatusOK, map[string]any{"devices": out})
		return
	}
	var d struct{ ID, Name string }
	if err := json.NewDecoder(r.Body).Decode(&d); err != nil || d.Name != d.ID {
		f.t.Errorf("POST /api/v1/devices: %+v, %v", d, err)
	}
	if f.mine[d.ID] || f.others[d.ID] {
		writeJSON(w, http.StatusConflict, map[string]string{"code": "conflict", "detail": "device " + d.ID + " is already registered"})
		return
	}
	f.mine[d.ID] = true
	f.posted = append(f.posted, d.ID)
	writeJSON(w, http.StatusCreated, map[string]string{"id": d.ID, "name": d.Name, "token": "tgdev_secret"})
}

// refreshCount returns how many refreshes the fake was asked for.
func (f *fake) refreshCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.refreshes)
}

// enrolled returns a Store enrolled with f, its file written as Enroll does.
func enrolled(t *testing.T, f *fake) (*Store, string) {
	t.Helper()
	dir := t.TempDir()
	f.rt = "tgr_enrolment"
	s := newStore(filepath.Join(dir, File), f.client(), record{Cloud: testCloud, Issuer: testCloud,
		TokenEndpoint: testCloud + "/token", ClientID: "gateway", Owner: "ann", RefreshToken: f.rt, EnrolledAt: time.Now()})
	if err := s.save(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, f.client())
	if err != nil {
		t.Fatal(err)
	}
	return s, dir
}

// savedRefreshToken returns the refresh token in dir's enrolment file.
func savedRefreshToken(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, File))
	if err != nil {
		t.Fatal(err)
	}
	var rec record
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	return rec.RefreshToken
}

func TestEnroll(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(t)
		f.pollAnswers = []string{"authorization_pending", "slow_down"}
		dir := filepath.Join(t.TempDir(), "data")
		var out bytes.Buffer
		s, err := Enroll(t.Context(), testCloud+"/", dir, &out, f.client())
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"WDJB-MJHT", testCloud + "/device\n", testCloud + "/device?user_code=WDJB-MJHT"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("output lacks %q:\n%s", want, out.String())
			}
		}
		if f.deviceScope != grantScope {
			t.Errorf("device authorization scope %q, want %q", f.deviceScope, grantScope)
		}
		if len(f.polls) != 3 {
			t.Fatalf("%d polls, want 3", len(f.polls))
		}
		if d := f.polls[1].Sub(f.polls[0]); d < time.Second {
			t.Errorf("polled again after %v, before the interval", d)
		}
		if d := f.polls[2].Sub(f.polls[1]); d < 6*time.Second {
			t.Errorf("polled again %v after slow_down, want the interval grown by 5 s", d)
		}
		if s.Owner() != "ann" || s.Cloud() != testCloud {
			t.Errorf("owner %q, cloud %q", s.Owner(), s.Cloud())
		}
		for path, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, File): 0o600} {
			if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != want {
				t.Errorf("%s: %v, %v, want mode %v", path, fi.Mode(), err, want)
			}
		}
		b, _ := os.ReadFile(filepath.Join(dir, File))
		var rec record
		if err := json.Unmarshal(b, &rec); err != nil {
			t.Fatal(err)
		}
		want := record{Cloud: testCloud, Issuer: testCloud, TokenEndpoint: testCloud + "/token", RevocationEndpoint: testCloud + "/revoke",
			ClientID: "gateway", Owner: "ann", RefreshToken: f.rt, EnrolledAt: rec.EnrolledAt}
		if rec != want || rec.EnrolledAt.IsZero() {
			t.Errorf("saved %+v, want %+v", rec, want)
		}
		if o, err := Open(dir, f.client()); err != nil || o.Owner() != "ann" {
			t.Errorf("Open after Enroll: %v", err)
		}
	})
}

func TestEnrollFails(t *testing.T) {
	for _, tc := range []struct {
		name, cloud string
		setup       func(*fake)
		want        string
	}{
		{"plain http to another host", "http://cloud.example", nil, "https"},
		{"not http", "ftp://127.0.0.1", nil, "want https://"},
		{"another issuer", "http://localhost:8080", nil, `names itself "http://127.0.0.1:8080"`},
		{"refused", testCloud, func(f *fake) { f.pollAnswers = []string{"authorization_pending", "access_denied"} }, "refused"},
		{"code expired", testCloud, func(f *fake) { f.pollAnswers = []string{"expired_token"} }, "expired"},
		{"not a user's token", testCloud, func(f *fake) { f.sub = "svc:bridge" }, `subject "svc:bridge" is not a user`},
		{"cloud down", testCloud, func(f *fake) { f.down = true }, "reach the cloud"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFake(t)
				if tc.setup != nil {
					tc.setup(f)
				}
				dir := filepath.Join(t.TempDir(), "data")
				_, err := Enroll(t.Context(), tc.cloud, dir, new(bytes.Buffer), f.client())
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("err %v, want one saying %q", err, tc.want)
				}
				if _, err := os.Stat(filepath.Join(dir, File)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("an enrolment was saved: %v", err)
				}
			})
		})
	}
}

func TestEnrollContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(t)
		f.pollAnswers = slices.Repeat([]string{"authorization_pending"}, 100)
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		if _, err := Enroll(ctx, testCloud, t.TempDir(), new(bytes.Buffer), f.client()); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err %v, want the deadline", err)
		}
	})
}

func TestCheckURL(t *testing.T) {
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"https://cloud.example", true},
		{"https://cloud.example:8443/trackgate", true},
		{"http://127.0.0.1:8080", true},
		{"http://127.1.2.3", true},
		{"http://[::1]:8080", true},
		{"http://localhost:8080", true},
		{"http://LocalHost", true},
		{"http://cloud.example", false},
		{"http://192.168.1.10:8080", false},
		{"http://localhost.cloud.example", false},
		{"http://[::2]", false},
		{"ftp://127.0.0.1", false},
		{"127.0.0.1:8080", false},
		{"https://", false},
		{"", false},
	} {
		if err := checkURL(tc.url); (err == nil) != tc.ok {
			t.Errorf("checkURL(%q) = %v, want ok %v", tc.url, err, tc.ok)
		}
	}
}

func TestOpen(t *testing.T) {
	good, _ := json.Marshal(record{Cloud: testCloud, TokenEndpoint: testCloud + "/token", ClientID: "gateway", Owner: "ann", RefreshToken: "tgr_1"})
	for _, tc := range []struct {
		name    string
		content []byte // nil: no file
		mode    os.FileMode
		want    string // in the error; "" for success
	}{
		{"enrolled", good, 0o600, ""},
		{"owner read only", good, 0o400, ""},
		{"no file", nil, 0, "not enrolled"},
		{"readable by all", good, 0o644, "chmod 600"},
		{"readable by the group", good, 0o640, "enrol again"},
		{"not JSON", []byte("{"), 0o600, "unexpected EOF"},
		{"no refresh token", []byte(`{"cloud":"` + testCloud + `","owner":"ann"}`), 0o600, "incomplete"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.content != nil {
				path := filepath.Join(dir, File)
				if err := os.WriteFile(path, tc.content, 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(path, tc.mode); err != nil {
					t.Fatal(err)
				}
			}
			s, err := Open(dir, nil)
			if tc.want == "" {
				if err != nil || s.Owner() != "ann" || s.Cloud() != testCloud {
					t.Errorf("Open: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want one saying %q", err, tc.want)
			}
			if (tc.content == nil) != errors.Is(err, ErrNotEnrolled) {
				t.Errorf("err %v: is ErrNotEnrolled %v", err, errors.Is(err, ErrNotEnrolled))
			}
		})
	}
}

func TestTokenCachesPerScope(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(t)
		s, dir := enrolled(t, f)
		asked := 0
		for _, tc := range []struct {
			scope, sent string
			refreshes   int
		}{
			{"gateway", "gateway", 1},
			{"gateway", "gateway", 1},
			{"devices:read devices:write", "devices:read devices:write", 2},
			{" devices:write  devices:read", "devices:read devices:write", 2},
			{"gateway", "gateway", 2},
		} {
			tok, err := s.Token(t.Context(), tc.scope)
			if err != nil {
				t.Fatalf("Token(%q): %v", tc.scope, err)
			}
			if f.access[tok.AccessToken] != tc.sent || tok.RefreshToken != "" || !tok.Valid() {
				t.Errorf("Token(%q) is for %q (refresh token %q, valid %v)", tc.scope, f.access[tok.AccessToken], tok.RefreshToken, tok.Valid())
			}
			if n := f.refreshCount(); n != tc.refreshes {
				t.Errorf("after Token(%q): %d refreshes, want %d", tc.scope, n, tc.refreshes)
			}
			if last := f.refreshes[len(f.refreshes)-1]; tc.refreshes != asked && (last.Get("scope") != tc.sent || last.Get("grant_type") != "refresh_token") {
				t.Errorf("Token(%q): refresh form %v", tc.scope, last)
			}
			asked = tc.refreshes
			if got := savedRefreshToken(t, dir); got != f.rt {
				t.Errorf("saved refresh token %q, want the rotated %q", got, f.rt)
			}
		}
		if _, err := s.Token(t.Context(), "  "); err == nil {
			t.Error("Token with no scope succeeded")
		}
	})
}

func TestTokenRenewsNearExpiry(t *testing.T) {
	for _, tc := range []struct {
		name      string
		expiresIn int64
		renewAt   time.Duration // after the refresh
	}{
		{"a fifth of an hour is capped at 2 min", 3600, 58 * time.Minute},
		{"a fifth of 10 min", 600, 8 * time.Minute},
		{"a fifth of 1 min", 60, 48 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFake(t)
				f.expiresIn = tc.expiresIn
				s, dir := enrolled(t, f)
				first, err := s.Token(t.Context(), "gateway")
				if err != nil {
					t.Fatal(err)
				}
				if want := time.Now().Add(time.Duration(tc.expiresIn) * time.Second); !first.Expiry.Equal(want) {
					t.Errorf("expiry %v, want %v", first.Expiry, want)
				}
				time.Sleep(tc.renewAt - time.Second)
				if tok, err := s.Token(t.Context(), "gateway"); err != nil || tok.AccessToken != first.AccessToken || f.refreshCount() != 1 {
					t.Errorf("1 s before renewal: %v, %d refreshes, same token %v", err, f.refreshCount(), tok.AccessToken == first.AccessToken)
				}
				time.Sleep(2 * time.Second)
				if tok, err := s.Token(t.Context(), "gateway"); err != nil || tok.AccessToken == first.AccessToken || f.refreshCount() != 2 {
					t.Errorf("1 s after renewal: %v, %d refreshes, same token %v", err, f.refreshCount(), tok.AccessToken == first.AccessToken)
				}
				if got := savedRefreshToken(t, dir); got != f.rt {
					t.Errorf("saved refresh token %q, want the rotated %q", got, f.rt)
				}
			})
		})
	}
}

func TestTokenConcurrentCallsRefreshOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(t)
		f.delay = time.Second
		s, _ := enrolled(t, f)
		toks := make([]string, 10)
		var wg sync.WaitGroup
		for i := range toks {
			wg.Go(func() {
				tok, err := s.Token(t.Context(), "gateway")
				if err != nil {
					t.Error(err)
					return
				}
				toks[i] = tok.AccessToken
			})
		}
		wg.Wait()
		if n := f.refreshCount(); n != 1 {
			t.Errorf("%d refreshes, want 1", n)
		}
		if toks[0] == "" || slices.ContainsFunc(toks, func(s string) bool { return s != toks[0] }) {
			t.Errorf("the callers got different tokens: %q", toks)
		}
	})
}

func TestTokenWaitEndsWithContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(t)
		f.delay = time.Minute
		s, _ := enrolled(t, f)
		done := make(chan error)
		go func() { // holds the lock for a minute
			_, err := s.Token(t.Context(), "gateway")
			done <- err
		}()
		synctest.Wait()
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		if _, err := s.Token(ctx, "devices:read"); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err %v, want the deadline", err)
		}
		if err := <-done; err != nil {
			t.Errorf("the slow refresh: %v", err)
		}
	})
}

func TestTokenFailures(t *testing.T) {
	for _, tc := range []struct {
		name    string
		setup   func(*fake, *Store)
		revoked bool
		want    string
	}{
		{"grant revoked", func(f *fake, _ *Store) {
			f.refreshFail = func(w http.ResponseWriter) { oauthError(w, "invalid_grant", "grant revoked by its owner") }
		}, true, "grant revoked by its owner"},
		{"refresh token reused", func(f *fake, s *Store) { s.rec.RefreshToken = "tgr_spent" }, true, "already used"},
		{"server error", func(f *fake, _ *Store) {
			f.refreshFail = func(w http.ResponseWriter) { http.Error(w, "database locked", http.StatusInternalServerError) }
		}, false, "500 Internal Server Error"},
		{"server error naming invalid_grant", func(f *fake, _ *Store) {
			f.refreshFail = func(w http.ResponseWriter) {
				writeJSON(w, http.StatusBadGateway, map[string]string{"error": "invalid_grant"})
			}
		}, false, "502 Bad Gateway"},
		{"unavailable", func(f *fake, _ *Store) {
			f.refreshFail = func(w http.ResponseWriter) {
				writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable", "error_description": "store down"})
			}
		}, false, "temporarily_unavailable store down"},
		{"network down", func(f *fake, _ *Store) { f.down = true }, false, "connection refused"},
		{"not JSON", func(f *fake, _ *Store) {
			f.refreshFail = func(w http.ResponseWriter) { w.Write([]byte("<html>")) }
		}, false, "the token endpoint's answer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFake(t)
				s, dir := enrolled(t, f)
				saved := savedRefreshToken(t, dir)
				tc.setup(f, s)
				_, err := s.Token(t.Context(), "gateway")
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err %v, want one saying %q", err, tc.want)
				}
				if errors.Is(err, ErrRevoked) != tc.revoked || (s.Revoked() != nil) != tc.revoked {
					t.Fatalf("err %v, Revoked() %v: want revoked %v", err, s.Revoked(), tc.revoked)
				}
				if got := savedRefreshToken(t, dir); got != saved {
					t.Errorf("saved refresh token changed to %q", got)
				}
				asked := f.refreshCount()
				if tc.revoked {
					if !strings.Contains(err.Error(), "gateway enroll") {
						t.Errorf("err %v does not say to enrol again", err)
					}
					for _, scope := range []string{"gateway", "devices:read devices:write"} {
						if _, err2 := s.Token(t.Context(), scope); err2 != err {
							t.Errorf("Token(%q) after revocation: %v, want %v", scope, err2, err)
						}
					}
					if n := f.refreshCount(); n != asked {
						t.Errorf("%d more refreshes after revocation", n-asked)
					}
					return
				}
				f.mu.Lock()
				f.refreshFail, f.down = nil, false
				f.mu.Unlock()
				if _, err := s.Token(t.Context(), "gateway"); err != nil {
					t.Errorf("Token once the cloud is back: %v", err)
				}
			})
		})
	}
}

func TestRegisterDevices(t *testing.T) {
	f := newFake(t)
	f.mine["van-1"] = true
	f.others["van-9"] = true
	s, _ := enrolled(t, f)
	for _, tc := range []struct {
		name      string
		ids       []string
		added     []string
		wantErr   string
		allPosted []string
	}{
		{"missing ones added", []string{"van-1", "van-2", "van-3", "van-2"}, []string{"van-2", "van-3"}, "", []string{"van-2", "van-3"}},
		{"all there", []string{"van-3", "van-1", "van-2"}, nil, "", []string{"van-2", "van-3"}},
		{"none", nil, nil, "", []string{"van-2", "van-3"}},
		{"another account's", []string{"van-4", "van-9", "van-5"}, []string{"van-4"}, "van-9: the id belongs to another account", []string{"van-2", "van-3", "van-4"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			added, err := s.RegisterDevices(t.Context(), tc.ids)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("err %v, want %q", err, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "tgdev_secret") {
				t.Errorf("err %v shows a device token", err)
			}
			if !slices.Equal(added, tc.added) {
				t.Errorf("added %q, want %q", added, tc.added)
			}
			if !slices.Equal(f.posted, tc.allPosted) {
				t.Errorf("posted %q, want %q", f.posted, tc.allPosted)
			}
		})
	}
	if n := f.refreshCount(); n != 1 {
		t.Errorf("%d refreshes, want 1 (the API token cached)", n)
	}
}

func TestRegisterDevicesFailures(t *testing.T) {
	f := newFake(t)
	s, _ := enrolled(t, f)
	f.down = true
	if _, err := s.RegisterDevices(t.Context(), []string{"van-1"}); err == nil || !strings.Contains(err.Error(), "register devices") {
		t.Errorf("cloud down: %v", err)
	}
	f.down = false
	if _, err := s.Token(t.Context(), apiScope); err != nil {
		t.Fatal(err)
	}
	f.access = map[string]string{} // the cloud forgot the token
	if _, err := s.RegisterDevices(t.Context(), []string{"van-1"}); err == nil || !strings.Contains(err.Error(), "401 Unauthorized") {
		t.Errorf("token refused: %v", err)
	}
}
