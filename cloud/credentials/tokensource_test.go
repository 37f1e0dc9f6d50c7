package credentials

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// fakeServer is a token endpoint for trackctl that rotates refresh tokens
// with reuse detection and no grace window: a refresh token presented a
// second time is refused with invalid_grant and revokes its whole family.
// GET /check answers 200 for a live access token and 401 otherwise.
type fakeServer struct {
	t   *testing.T
	srv *httptest.Server
	ttl int // the access tokens' expires_in, in seconds

	mu        sync.Mutex
	onRefresh func(rt string) // see setOnRefresh
	families  int
	refresh   map[string]*refreshState
	access    map[string]time.Time // access token → expiry
	revoked   map[int]bool         // by family
	latest    map[int]string       // the family's live refresh token
	refreshes int                  // successful refreshes
	refused   int                  // invalid_grant answers
	reused    int                  // reuse detections
}

// refreshState is a refresh token as the fake knows it.
type refreshState struct {
	family int
	used   bool
}

// newFakeServer starts a fake whose access tokens live ttl seconds.
func newFakeServer(t *testing.T, ttl int) *fakeServer {
	f := &fakeServer{t: t, ttl: ttl, refresh: map[string]*refreshState{}, access: map[string]time.Time{},
		revoked: map[int]bool{}, latest: map[int]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", f.token)
	mux.HandleFunc("GET /check", f.check)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

// grant starts a family and returns its first refresh token.
func (f *fakeServer) grant() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.families++
	rt := "rt-" + rand.Text()
	f.refresh[rt] = &refreshState{family: f.families}
	f.latest[f.families] = rt
	return rt
}

// setOnRefresh has fn called with each refresh token presented, before it
// is checked.
func (f *fakeServer) setOnRefresh(fn func(rt string)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.onRefresh = fn
}

// counts returns the successful refreshes, invalid_grant answers and reuse
// detections so far.
func (f *fakeServer) counts() (refreshes, refused, reused int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.refreshes, f.refused, f.reused
}

// live returns the live refresh token of the family of rt.
func (f *fakeServer) live(rt string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.latest[f.refresh[rt].family]
}

func (f *fakeServer) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if r.PostForm.Get("grant_type") != "refresh_token" || r.PostForm.Get("client_id") != "trackctl" ||
		r.PostForm.Has("client_secret") || r.Header.Get("Authorization") != "" {
		f.t.Errorf("token request %v is not trackctl's refresh", r.PostForm)
		oauthError(w, http.StatusBadRequest, "invalid_request")
		return
	}
	rt := r.PostForm.Get("refresh_token")
	f.mu.Lock()
	hook := f.onRefresh
	f.mu.Unlock()
	if hook != nil {
		hook(rt)
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.refresh[rt]
	switch {
	case st == nil || f.revoked[st.family]:
		f.refused++
		oauthError(w, http.StatusBadRequest, "invalid_grant")
		return
	case st.used:
		f.reused++
		f.refused++
		f.revoked[st.family] = true
		oauthError(w, http.StatusBadRequest, "invalid_grant")
		return
	}
	st.used = true
	f.refreshes++
	next, at := "rt-"+rand.Text(), "at-"+rand.Text()
	f.refresh[next] = &refreshState{family: st.family}
	f.latest[st.family] = next
	f.access[at] = time.Now().Add(time.Duration(f.ttl) * time.Second)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(map[string]any{
		"access_token": at, "token_type": "Bearer", "expires_in": f.ttl,
		"refresh_token": next, "scope": "openid tracks:read",
	})
}

func (f *fakeServer) check(w http.ResponseWriter, r *http.Request) {
	at, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	f.mu.Lock()
	exp, known := f.access[at]
	f.mu.Unlock()
	if !ok || !known || !time.Now().Before(exp) {
		w.WriteHeader(http.StatusUnauthorized)
	}
}

// oauthError answers an OAuth error response.
func oauthError(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": code})
}

func TestRefreshWhenLittleLifeLeft(t *testing.T) {
	for _, c := range []struct {
		name    string
		left    time.Duration // 0: no expiry
		refresh bool
	}{
		{"an hour left", time.Hour, false},
		{"31 s left", 31 * time.Second, false},
		{"no expiry", 0, false},
		{"29 s left", 29 * time.Second, true},
		{"5 s left", 5 * time.Second, true},
		{"expired", -time.Minute, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			fake := newFakeServer(t, 3600)
			s := tempStore(t)
			rt := fake.grant()
			stored := testProfile(fake.srv.URL, rt, c.left)
			if err := s.Put("home", stored, true); err != nil {
				t.Fatal(err)
			}
			// Every refresh presents the refresh token on disk, which is
			// the live one: the previous refresh's was saved in time.
			fake.setOnRefresh(func(rt string) {
				_, p, err := s.Profile("home")
				if err != nil {
					t.Errorf("read the file during a refresh: %v", err)
					return
				}
				if p.RefreshToken != rt || rt != fake.live(rt) {
					t.Error("the refresh token presented is not the live one on disk")
				}
			})

			tok, err := s.TokenSource(t.Context(), "", nil).Token()
			if err != nil {
				t.Fatalf("Token: %v", err)
			}
			_, onDisk, err := s.Profile("home")
			if err != nil {
				t.Fatal(err)
			}
			if !c.refresh {
				if refreshes, _, _ := fake.counts(); refreshes != 0 || tok.AccessToken != stored.AccessToken {
					t.Fatalf("refreshed (%d) a token with %v left", refreshes, c.left)
				}
				return
			}
			// The new refresh token is on disk by the time Token returns,
			// with the access token it handed out.
			if refreshes, _, _ := fake.counts(); refreshes != 1 {
				t.Fatalf("%d refreshes, want 1", refreshes)
			}
			if onDisk.RefreshToken == rt || onDisk.RefreshToken != fake.live(rt) {
				t.Error("the rotated refresh token is not on disk")
			}
			if tok.AccessToken == stored.AccessToken || onDisk.AccessToken != tok.AccessToken {
				t.Error("the new access token is not the one on disk")
			}
			if tok.RefreshToken != "" {
				t.Error("the token handed out carries the refresh token")
			}
			if d := time.Until(tok.Expiry); d < 59*time.Minute || !onDisk.Expiry.Equal(tok.Expiry) {
				t.Errorf("expiry %v (on disk %v), want in an hour", tok.Expiry, onDisk.Expiry)
			}

			// A later invocation whose token is near expiry again presents
			// the rotated refresh token (the fake checks it is the one on
			// disk and the live one).
			if err := s.Update(func(f *File) error {
				f.Profiles["home"].Expiry = time.Now().Add(10 * time.Second)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if _, err := s.TokenSource(t.Context(), "home", nil).Token(); err != nil {
				t.Fatalf("second refresh: %v", err)
			}
			if refreshes, refused, _ := fake.counts(); refreshes != 2 || refused != 0 {
				t.Errorf("%d refreshes, %d refused; want 2, 0", refreshes, refused)
			}
		})
	}
}

func TestShortLivedTokensShareRefresh(t *testing.T) {
	fake := newFakeServer(t, 2)
	s := tempStore(t)
	if err := s.Put("home", testProfile(fake.srv.URL, fake.grant(), time.Minute/2-time.Second), true); err != nil {
		t.Fatal(err)
	}
	ts := s.TokenSource(t.Context(), "home", nil)
	first, err := ts.Token()
	if err != nil {
		t.Fatal(err)
	}
	// A command's requests right after a refresh share its token, though
	// it has less than 30 s left.
	for range 20 {
		tok, err := ts.Token()
		if err != nil {
			t.Fatal(err)
		}
		if tok.AccessToken != first.AccessToken {
			t.Fatal("refreshed again within the reuse window")
		}
	}
	if refreshes, _, _ := fake.counts(); refreshes != 1 {
		t.Fatalf("%d refreshes, want 1", refreshes)
	}
	// After the reuse window the next call refreshes.
	time.Sleep(reuseWindow + 100*time.Millisecond)
	tok, err := ts.Token()
	if err != nil {
		t.Fatal(err)
	}
	if refreshes, refused, _ := fake.counts(); tok.AccessToken == first.AccessToken || refreshes != 2 || refused != 0 {
		t.Errorf("after the reuse window: %d refreshes, %d refused, same token %v; want 2, 0, false", refreshes, refused, tok.AccessToken == first.AccessToken)
	}
}

// hammer gets tokens for the default profile of the credentials file at
// path for d, alternating a long-lived source and a new one for each call
// (as a new invocation would), and has the server check each one.
func hammer(ctx context.Context, path string, d time.Duration) error {
	s := Open(path)
	_, p, err := s.Profile("")
	if err != nil {
		return err
	}
	shared := s.TokenSource(ctx, "", nil)
	for i, start := 0, time.Now(); time.Since(start) < d; i++ {
		src := shared
		if i%2 == 1 {
			src = s.TokenSource(ctx, "", nil)
		}
		tok, err := src.Token()
		if err != nil {
			return fmt.Errorf("call %d: %w", i, err)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.Server+"/check", nil)
		if err != nil {
			return err
		}
		tok.SetAuthHeader(req)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("call %d: check: %w", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("call %d: the server refused the token (%s)", i, resp.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

func TestConcurrentRefreshInProcess(t *testing.T) {
	fake := newFakeServer(t, 2)
	s := tempStore(t)
	if err := s.Put("home", testProfile(fake.srv.URL, fake.grant(), time.Second), true); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() { errs <- hammer(t.Context(), s.Path(), 2500*time.Millisecond) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	refreshes, refused, reused := fake.counts()
	t.Logf("%d refreshes", refreshes)
	if refused != 0 || reused != 0 || refreshes < 2 {
		t.Errorf("%d refreshes, %d refused, %d reuses; want at least 2, 0, 0", refreshes, refused, reused)
	}
}

// helperEnv names the credentials file for TestHelperProcess.
const helperEnv = "TRACKGATE_CREDENTIALS_HELPER_FILE"

// TestHelperProcess is one trackctl invocation of
// TestConcurrentRefreshAcrossProcesses, run in a process of its own.
func TestHelperProcess(t *testing.T) {
	path := os.Getenv(helperEnv)
	if path == "" {
		t.Skip("run by TestConcurrentRefreshAcrossProcesses")
	}
	if err := hammer(t.Context(), path, 2500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentRefreshAcrossProcesses(t *testing.T) {
	fake := newFakeServer(t, 2)
	s := tempStore(t)
	if err := s.Put("home", testProfile(fake.srv.URL, fake.grant(), time.Second), true); err != nil {
		t.Fatal(err)
	}
	const n = 4
	var wg sync.WaitGroup
	for i := range n {
		cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), helperEnv+"="+s.Path())
		wg.Go(func() {
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("process %d: %v\n%s", i, err, out)
			}
		})
	}
	wg.Wait()
	refreshes, refused, reused := fake.counts()
	t.Logf("%d refreshes by %d processes", refreshes, n)
	if refused != 0 || reused != 0 || refreshes < n {
		t.Errorf("%d refreshes, %d refused, %d reuses; want at least %d, 0, 0", refreshes, refused, reused, n)
	}
}

func TestRefreshFailures(t *testing.T) {
	answer := func(status int, body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			fmt.Fprint(w, body)
		}
	}
	for _, c := range []struct {
		name           string
		handler        http.HandlerFunc // nil: the server is down
		profile        string
		noRefreshToken bool
		signInAgain    bool // else the error is returned as such
	}{
		{name: "invalid_grant, default profile", handler: answer(400, `{"error":"invalid_grant"}`), signInAgain: true},
		{name: "invalid_grant, named profile", handler: answer(400, `{"error":"invalid_grant"}`), profile: "work", signInAgain: true},
		{name: "invalid_grant with another status", handler: answer(403, `{"error":"invalid_grant"}`), signInAgain: true},
		{name: "401", handler: answer(401, `{"error":"invalid_client"}`), profile: "work", signInAgain: true},
		{name: "400 without a body", handler: answer(400, ``), signInAgain: true},
		{name: "no refresh token", profile: "work", noRefreshToken: true, signInAgain: true},
		{name: "server error", handler: answer(500, `{"error":"server_error"}`)},
		{name: "unavailable", handler: answer(503, `oops`), profile: "work"},
		{name: "server down"},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if c.handler == nil {
					t.Error("unexpected token request")
					return
				}
				c.handler(w, r)
			}))
			t.Cleanup(srv.Close)
			if c.handler == nil && !c.noRefreshToken {
				srv.Close() // connection refused
			}
			s := tempStore(t)
			for _, name := range []string{"home", "work"} {
				p := testProfile(srv.URL, "rt-secret-"+name, -time.Second)
				if c.noRefreshToken {
					p.RefreshToken = ""
				}
				if err := s.Put(name, p, false); err != nil {
					t.Fatal(err)
				}
			}
			before, err := os.ReadFile(s.Path())
			if err != nil {
				t.Fatal(err)
			}

			tok, err := s.TokenSource(t.Context(), c.profile, nil).Token()
			if err == nil {
				t.Fatalf("Token succeeded: %v", tok.Expiry)
			}
			if errors.Is(err, ErrSignInAgain) != c.signInAgain {
				t.Fatalf("Token: %v; wrapping ErrSignInAgain: %v, want %v", err, errors.Is(err, ErrSignInAgain), c.signInAgain)
			}
			if c.signInAgain {
				want := "your sign-in to " + srv.URL + " has ended: run trackctl login"
				if c.profile != "" {
					want += " --profile " + c.profile
				}
				if err.Error() != want {
					t.Errorf("Token: %q, want %q", err, want)
				}
				var re *oauth2.RetrieveError
				if c.handler != nil && !errors.As(err, &re) {
					t.Errorf("Token: %v does not wrap the server's answer", err)
				}
			}
			if strings.Contains(err.Error(), "rt-secret") || strings.Contains(err.Error(), "at-stored") {
				t.Errorf("the error shows a token: %v", err)
			}
			// The stored tokens are kept.
			if after, err := os.ReadFile(s.Path()); err != nil || string(after) != string(before) {
				t.Errorf("the file changed (%v)", err)
			}
		})
	}
}

func TestSignedOutMeanwhile(t *testing.T) {
	fake := newFakeServer(t, 2)
	s := tempStore(t)
	if err := s.Put("home", testProfile(fake.srv.URL, fake.grant(), time.Second), true); err != nil {
		t.Fatal(err)
	}
	ts := s.TokenSource(t.Context(), "", nil)
	if _, err := ts.Token(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Remove(""); err != nil {
		t.Fatal(err)
	}
	time.Sleep(reuseWindow + 100*time.Millisecond) // the token needs refreshing
	if _, err := ts.Token(); !errors.Is(err, ErrNotSignedIn) || err.Error() != "not signed in: run trackctl login [--server URL]" {
		t.Errorf("Token after sign-out: %v, want ErrNotSignedIn", err)
	}
	if _, err := s.TokenSource(t.Context(), "home", nil).Token(); !errors.Is(err, ErrNotSignedIn) {
		t.Errorf("new source after sign-out: %v, want ErrNotSignedIn", err)
	}
	if refreshes, _, _ := fake.counts(); refreshes != 1 {
		t.Errorf("%d refreshes, want 1", refreshes)
	}
}

func TestRefreshWaitsForLockUntilContextEnds(t *testing.T) {
	fake := newFakeServer(t, 60)
	s := tempStore(t)
	if err := s.Put("home", testProfile(fake.srv.URL, fake.grant(), time.Second), true); err != nil {
		t.Fatal(err)
	}
	held, release := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		done <- s.Update(func(*File) error {
			close(held)
			<-release
			return nil
		})
	}()
	<-held
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	ts := s.TokenSource(ctx, "", nil)
	if _, err := ts.Token(); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Token while another holds the lock: %v, want the context's error", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Once the lock is free, a source refreshes.
	if _, err := s.TokenSource(t.Context(), "", nil).Token(); err != nil {
		t.Errorf("Token after the lock is released: %v", err)
	}
}
