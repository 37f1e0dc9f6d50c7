package cloud_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"trackgate/internal/testenv"
)

// binaries holds the commands built for the test run, by package.
var binaries struct {
	mu    sync.Mutex // guards built
	built map[string]*binaryBuild
}

type binaryBuild struct {
	once sync.Once
	path string
	err  error
}

// commandBinary builds the command in package pkg (relative to the
// repository root, e.g. ./cloud/cmd/trackctl) once for the test run.
func commandBinary(t testing.TB, pkg string) string {
	t.Helper()
	binaries.mu.Lock()
	if binaries.built == nil {
		binaries.built = map[string]*binaryBuild{}
	}
	b := binaries.built[pkg]
	if b == nil {
		b = &binaryBuild{}
		binaries.built[pkg] = b
	}
	binaries.mu.Unlock()
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "trackgate-test")
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(dir, filepath.Base(pkg))
		cmd := exec.Command("go", "build", "-o", b.path, pkg)
		cmd.Dir = testenv.RepoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// trackctl runs the trackctl binary as a user would, with its own
// configuration directory.
type trackctl struct {
	t      *testing.T
	bin    string
	config string // XDG_CONFIG_HOME
	server string
}

func newTrackctl(t *testing.T, server string) *trackctl {
	return &trackctl{t: t, bin: commandBinary(t, "./cloud/cmd/trackctl"), config: filepath.Join(t.TempDir(), "config"), server: server}
}

func (c *trackctl) credentials() string {
	return filepath.Join(c.config, "trackgate", "credentials.json")
}

func (c *trackctl) command(args ...string) *exec.Cmd {
	cmd := exec.Command(c.bin, args...)
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+c.config, "HOME="+c.config, "BROWSER=true", "NO_COLOR=1")
	return cmd
}

// run runs trackctl to its end: its output and exit status.
func (c *trackctl) run(args ...string) (stdout, stderr string, code int) {
	c.t.Helper()
	cmd := c.command(args...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		c.t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

// ok runs trackctl and fails the test unless it exits 0.
func (c *trackctl) ok(args ...string) string {
	c.t.Helper()
	out, errOut, code := c.run(args...)
	if code != 0 {
		c.t.Fatalf("trackctl %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// jsonOut runs trackctl with --json and decodes its output.
func (c *trackctl) jsonOut(v any, args ...string) {
	c.t.Helper()
	out := c.ok(append(args, "--json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		c.t.Fatalf("trackctl %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// background starts trackctl, its standard error read line by line into
// lines.
func (c *trackctl) background(args ...string) (cmd *exec.Cmd, lines chan string, out *syncBuffer) {
	c.t.Helper()
	cmd = c.command(args...)
	out = &syncBuffer{}
	cmd.Stdout = out
	stderr, err := cmd.StderrPipe()
	if err != nil {
		c.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	lines = make(chan string, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			out.Write([]byte(sc.Text() + "\n"))
			lines <- sc.Text()
		}
	}()
	c.t.Cleanup(func() { cmd.Process.Kill() })
	return cmd, lines, out
}

// waitLine returns the first line matching re.
func waitLine(t *testing.T, lines chan string, re *regexp.Regexp) []string {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("trackctl ended before printing %s", re)
			}
			if m := re.FindStringSubmatch(l); m != nil {
				return m
			}
		case <-timeout:
			t.Fatalf("trackctl did not print %s", re)
		}
	}
}

// waitExit waits for cmd to end and returns its exit status.
func waitExit(t *testing.T, cmd *exec.Cmd, out *syncBuffer) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(60 * time.Second):
		t.Fatalf("trackctl did not end:\n%s", out)
	}
	return -1
}

var signInURL = regexp.MustCompile(`^\s+(http://\S+/authorize\?\S+)$`)

// browserLogin signs in with `trackctl login` (browser flow), the browser
// being a cookie-keeping HTTP client that signs in on the form and follows
// the redirect to trackctl's loopback listener.
func (c *trackctl) browserLogin(user, password string, extra ...string) {
	c.t.Helper()
	cmd, lines, out := c.background(append([]string{"login", "--no-browser", "--server", c.server}, extra...)...)
	authURL := waitLine(c.t, lines, signInURL)[1]
	b := newWebBrowser(c.t, c.server)
	resp, body := b.follow(b.do(http.MethodGet, authURL, nil, nil))
	if resp.Request.URL.Path != "/login" {
		c.t.Fatalf("the sign-in URL led to %s", resp.Request.URL)
	}
	resp, body = b.follow(b.do(http.MethodPost, "/login", signInForm(body, user, password), nil))
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Signed in") || resp.Request.URL.Host == strings.TrimPrefix(c.server, "http://") {
		c.t.Fatalf("after signing in: %s at %s: %.300s", resp.Status, resp.Request.URL, body)
	}
	if code := waitExit(c.t, cmd, out); code != 0 {
		c.t.Fatalf("trackctl login: exit %d\n%s", code, out)
	}
	for l := range lines {
		c.t.Log(l)
	}
}

// hiddenFields are the hidden fields of the form on page.
func hiddenFields(page string) url.Values {
	form := url.Values{}
	for _, m := range hiddenField.FindAllStringSubmatch(page, -1) {
		form.Set(m[1], html.UnescapeString(m[2]))
	}
	return form
}

// signInForm fills the sign-in form of page.
func signInForm(page, user, password string) url.Values {
	form := hiddenFields(page)
	form.Set("username", user)
	form.Set("password", password)
	return form
}

// TestTrackctlSignIn: `trackctl login --device` approved on the server's
// page (password and TOTP), the credentials file's modes, commands that
// keep working across many refreshes of 5-second access tokens, two
// processes refreshing at once, and logout (AUTH.md section O).
func TestTrackctlSignIn(t *testing.T) {
	s := startWebStack(t, func(s *stack) { s.cfg.Auth.AccessTokenTTL = 5 * time.Second })
	ctx := context.Background()
	a := s.openAuth(t)
	if err := a.AddUser(ctx, "ann", "ann's correct horse"); err != nil {
		t.Fatal(err)
	}
	uri, err := a.EnrolTOTP(ctx, "ann")
	if err != nil {
		t.Fatal(err)
	}
	key, err := otp.NewKeyFromURL(uri)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.AddDevice(ctx, "ann", "van", "Van", nil); err != nil {
		t.Fatal(err)
	}
	c := newTrackctl(t, s.httpURL)

	// Not signed in: exit 3 with what to do.
	if _, errOut, code := c.run("tracks", "ls"); code != 3 || !strings.Contains(errOut, "trackctl login") {
		t.Fatalf("tracks ls before login: exit %d: %s", code, errOut)
	}

	cmd, lines, out := c.background("login", "--device", "--server", s.httpURL)
	userCode := waitLine(t, lines, regexp.MustCompile(`enter the code\s+(\S+)`))[1]
	b := newWebBrowser(t, s.httpURL)
	devicePage := "/device?" + url.Values{"user_code": {userCode}}.Encode()
	resp, body := b.follow(b.do(http.MethodGet, devicePage, nil, nil))
	if resp.Request.URL.Path != "/login" {
		t.Fatalf("the device page led to %s", resp.Request.URL)
	}
	resp, body = b.follow(b.do(http.MethodPost, "/login", signInForm(body, "ann", "ann's correct horse"), nil))
	if resp.Request.URL.Path != "/login/totp" {
		t.Fatalf("after the password: %s at %s", resp.Status, resp.Request.URL)
	}
	code, err := totp.GenerateCode(key.Secret(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	form := hiddenFields(body)
	form.Set("code", code)
	resp, body = b.follow(b.do(http.MethodPost, "/login/totp", form, nil))
	if resp.Request.URL.Path != "/device" || !strings.Contains(body, "approve") {
		t.Fatalf("after the code: %s at %s: %.300s", resp.Status, resp.Request.URL, body)
	}
	form = hiddenFields(body)
	form.Set("action", "approve")
	if resp, body = b.do(http.MethodPost, "/device", form, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("approving: %s: %.300s", resp.Status, body)
	}
	if code := waitExit(t, cmd, out); code != 0 {
		t.Fatalf("trackctl login --device: exit %d\n%s", code, out)
	}

	// 118: a 0600 file in a 0700 directory.
	for path, want := range map[string]os.FileMode{filepath.Dir(c.credentials()): 0o700, c.credentials(): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), want)
		}
	}
	if out := c.ok("whoami"); !strings.Contains(out, "ann on "+s.httpURL) || !strings.Contains(out, "two-factor on") {
		t.Errorf("whoami: %q", out)
	}
	// A file others can read is refused, with the fix.
	if err := os.Chmod(c.credentials(), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := c.run("whoami"); code != 3 || !strings.Contains(errOut, "chmod 600 "+c.credentials()) {
		t.Errorf("whoami with a 0644 file: exit %d: %s", code, errOut)
	}
	if err := os.Chmod(c.credentials(), 0o600); err != nil {
		t.Fatal(err)
	}

	// 121: with 5-second access tokens every command refreshes; they keep
	// working, each rotated refresh token saved (119).
	refreshTokens := map[string]bool{}
	for i := 0; i < 8; i++ {
		var devs []struct {
			ID string `json:"id"`
		}
		c.jsonOut(&devs, "devices", "ls")
		if len(devs) != 1 || devs[0].ID != "van" {
			t.Fatalf("devices ls: %+v", devs)
		}
		refreshTokens[storedRefreshToken(t, c)] = true
		time.Sleep(time.Second)
	}
	if len(refreshTokens) < 4 {
		t.Errorf("%d refresh tokens over 8 commands, 8 s, with 5-second access tokens: not refreshed", len(refreshTokens))
	}

	// 120: two processes refreshing at once do not trip reuse detection.
	var wg sync.WaitGroup
	errs := make(chan string, 20)
	for p := 0; p < 2; p++ {
		wg.Go(func() {
			for i := 0; i < 6; i++ {
				if out, errOut, code := c.run("tracks", "ls", "--json"); code != 0 {
					errs <- fmt.Sprintf("process %d, run %d: exit %d: %s%s", p, i, code, out, errOut)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	c.ok("whoami")

	// 122: logout revokes the refresh token and deletes the file.
	old := storedRefreshToken(t, c)
	if _, errOut, code := c.run("logout"); code != 0 || !strings.Contains(errOut, "Signed out") {
		t.Fatalf("logout: exit %d: %s", code, errOut)
	}
	if _, err := os.Stat(c.credentials()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("credentials file after logout: %v", err)
	}
	resp, err = http.PostForm(s.httpURL+"/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {old}, "client_id": {"trackctl"}})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(raw), "invalid_grant") {
		t.Errorf("the refresh token after logout: %s %s", resp.Status, raw)
	}
	if _, _, code := c.run("whoami"); code != 3 {
		t.Errorf("whoami after logout: exit %d", code)
	}
}

func storedRefreshToken(t *testing.T, c *trackctl) string {
	t.Helper()
	raw, err := os.ReadFile(c.credentials())
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Profiles map[string]struct {
			RefreshToken string `json:"refresh_token"`
		} `json:"profiles"`
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	return f.Profiles["default"].RefreshToken
}

// TestTrackctlBrowserLogin: the loopback redirect of `trackctl login`
// takes one request, checks its state, and profiles keep several sign-ins.
func TestTrackctlBrowserLogin(t *testing.T) {
	s := startWebStack(t, nil)
	a := s.openAuth(t)
	for _, u := range []string{"ann", "bob"} {
		if err := a.AddUser(context.Background(), u, u+"'s correct horse"); err != nil {
			t.Fatal(err)
		}
	}
	c := newTrackctl(t, s.httpURL)

	// A redirect with another state is refused, and ends the attempt.
	cmd, lines, out := c.background("login", "--no-browser", "--server", s.httpURL)
	authURL, err := url.Parse(waitLine(t, lines, signInURL)[1])
	if err != nil {
		t.Fatal(err)
	}
	callback, err := url.Parse(authURL.Query().Get("redirect_uri"))
	if err != nil || callback.Hostname() != "127.0.0.1" || callback.Port() == "" || callback.Path != "/callback" {
		t.Fatalf("redirect_uri %q", authURL.Query().Get("redirect_uri"))
	}
	if authURL.Query().Get("code_challenge_method") != "S256" || authURL.Query().Get("code_challenge") == "" {
		t.Errorf("sign-in URL without PKCE S256: %s", authURL)
	}
	q := url.Values{"code": {"stolen"}, "state": {"not-the-state"}, "iss": {s.httpURL}}
	resp, err := http.Get(callback.String() + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a forged redirect: %s", resp.Status)
	}
	if code := waitExit(t, cmd, out); code != 1 || !strings.Contains(out.String(), "state does not match") {
		t.Errorf("login after a forged redirect: exit %d\n%s", code, out)
	}
	if _, err := http.Get(callback.String()); err == nil {
		t.Error("the loopback listener still answers after the login ended")
	}

	c.browserLogin("ann", "ann's correct horse")
	c.browserLogin("bob", "bob's correct horse", "--profile", "bob")
	if out := c.ok("whoami"); !strings.HasPrefix(out, "ann on ") {
		t.Errorf("whoami (default profile): %q", out)
	}
	if out := c.ok("whoami", "--profile", "bob"); !strings.HasPrefix(out, "bob on ") {
		t.Errorf("whoami --profile bob: %q", out)
	}
	c.ok("logout", "--profile", "bob")
	if _, errOut, code := c.run("whoami", "--profile", "bob"); code != 3 || !strings.Contains(errOut, "--profile bob") {
		t.Errorf("whoami --profile bob after its logout: exit %d: %s", code, errOut)
	}
	c.ok("whoami")
	if _, _, code := c.run("tracks", "show"); code != 2 {
		t.Errorf("tracks show without an id: exit %d, want 2", code)
	}
}

// writeGPX writes a GPX 1.1 track of n points, one a second from start.
func writeGPX(t testing.TB, path string, start time.Time, n int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?>
<gpx version="1.1" creator="test" xmlns="http://www.topografix.com/GPX/1/1">
<trk><name>test</name><trkseg>
`)
	for i := 0; i < n; i++ {
		lat := 52.0 + float64(i)*1e-5
		lon := 4.0 + float64(i%1000)*1e-5
		fmt.Fprintf(w, "<trkpt lat=\"%.7f\" lon=\"%.7f\"><ele>%.1f</ele><time>%s</time></trkpt>\n",
			lat, lon, float64(i%200), start.Add(time.Duration(i)*time.Second).UTC().Format(time.RFC3339))
	}
	fmt.Fprint(w, "</trkseg></trk>\n</gpx>\n")
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// importedJob is what `trackctl import --json` prints of a job.
type importedJob struct {
	ID        string  `json:"id"`
	State     string  `json:"state"`
	Total     *int64  `json:"total_items"`
	Processed int64   `json:"processed_items"`
	Track     *string `json:"track"`
	Error     string  `json:"error"`
	Started   *time.Time
	Ended     *time.Time
}

// TestTrackctlImport: a 100,000-point GPX imported through trackctl ends
// completed with exactly 100,000 points in InfluxDB and a track; the same
// file again adds none; a malformed file fails with its line; Ctrl-C in a
// terminal cancels the import on the server.
func TestTrackctlImport(t *testing.T) {
	s := startWebStack(t, func(s *stack) { s.cfg.ImportBatchSize = 1000 })
	ctx := context.Background()
	a := s.openAuth(t)
	if err := a.AddUser(ctx, "ann", "ann's correct horse"); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"van", "boat"} {
		if _, err := a.AddDevice(ctx, "ann", d, "", nil); err != nil {
			t.Fatal(err)
		}
	}
	c := newTrackctl(t, s.httpURL)
	c.browserLogin("ann", "ann's correct horse")
	dir := t.TempDir()

	const n = 100_000
	start := time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC)
	end := start.Add((n - 1) * time.Second)
	big := filepath.Join(dir, "big.gpx")
	writeGPX(t, big, start, n)

	var jobs []importedJob
	c.jsonOut(&jobs, "import", big, "--device", "van")
	if len(jobs) != 1 || jobs[0].State != "completed" || jobs[0].Processed != n || jobs[0].Total == nil || *jobs[0].Total != n || jobs[0].Track == nil {
		t.Fatalf("import: %+v", jobs)
	}
	first := jobs[0]
	took := first.Ended.Sub(*first.Started)
	t.Logf("imported %d points in %v: %.0f points/s", n, took, n/took.Seconds())
	if got := s.countPoints(t, "van", start, end); got != n {
		t.Errorf("InfluxDB holds %d points of the import, want %d", got, n)
	}

	// The same file again: no point and no track more.
	c.jsonOut(&jobs, "import", big, "--device", "van")
	if len(jobs) != 1 || jobs[0].State != "completed" || jobs[0].Track == nil || *jobs[0].Track != *first.Track {
		t.Fatalf("import again: %+v (first track %s)", jobs, *first.Track)
	}
	if got := s.countPoints(t, "van", start.Add(-time.Hour), end.Add(time.Hour)); got != n {
		t.Errorf("after importing again InfluxDB holds %d points, want %d", got, n)
	}
	var tracks []struct {
		ID      string `json:"id"`
		Summary struct {
			Points int `json:"points"`
		} `json:"summary"`
	}
	c.jsonOut(&tracks, "tracks", "ls", "--device", "van")
	if len(tracks) != 1 || tracks[0].ID != *first.Track {
		t.Fatalf("tracks of van: %+v", tracks)
	}
	if tracks[0].Summary.Points != n {
		t.Errorf("the imported track's summary has %d points, want %d", tracks[0].Summary.Points, n)
	}

	// Its exports import back: the same points, the same track.
	for _, format := range []string{"geojson", "csv", "json"} {
		exported := filepath.Join(dir, "export."+format)
		c.ok("tracks", "export", *first.Track, "--format", format, "-o", exported)
		c.jsonOut(&jobs, "import", exported, "--device", "van")
		if len(jobs) != 1 || jobs[0].State != "completed" || jobs[0].Processed != n || jobs[0].Track == nil || *jobs[0].Track != *first.Track {
			t.Fatalf("import of the %s export: %+v", format, jobs)
		}
	}
	if got := s.countPoints(t, "van", start.Add(-time.Hour), end.Add(time.Hour)); got != n {
		t.Errorf("after importing the exports InfluxDB holds %d points, want %d", got, n)
	}

	// Tables for people.
	table := c.ok("jobs", "ls")
	t.Logf("trackctl jobs ls:\n%s", table)
	if !regexp.MustCompile(`(?m)^ID +KIND +DEVICE +FILE +STATE +PROGRESS +ITEMS +CREATED +TRACK\n.* import +van +export\.json +completed +100% +100000/100000 positions `).MatchString(table) {
		t.Errorf("jobs ls table:\n%s", table)
	}
	show := c.ok("tracks", "show", *first.Track)
	t.Logf("trackctl tracks show:\n%s", show)
	if !regexp.MustCompile(`(?m)^points: +100000$`).MatchString(show) || !regexp.MustCompile(`(?m)^name: +big$`).MatchString(show) {
		t.Errorf("tracks show:\n%s", show)
	}

	// A file of no format the importer reads is refused at the upload.
	junk := filepath.Join(dir, "junk.bin")
	if err := os.WriteFile(junk, []byte{0x89, 'P', 'N', 'G', 0, 1, 2}, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := c.run("import", junk, "--device", "van"); code != 1 || !strings.Contains(errOut, "unknown file format") {
		t.Errorf("import of a PNG: exit %d: %s", code, errOut)
	}

	// A malformed file fails with the line of its problem, and writes nothing.
	bad := filepath.Join(dir, "bad.gpx")
	if err := os.WriteFile(bad, []byte(`<?xml version="1.0"?>
<gpx version="1.1" xmlns="http://www.topografix.com/GPX/1/1"><trk><trkseg>
<trkpt lat="10.5" lon="20.5"><time>2026-05-01T10:00:00Z</time></trkpt>
<trkpt lat="10.6" lon="20.6"><time>2026-05-01T10:00:01Z</time></trkpt>
<trkpt lat="north" lon="20.7"><time>2026-05-01T10:00:02Z</time></trkpt>
</trkseg></trk></gpx>
`), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := c.run("import", bad, "--device", "boat", "--json")
	if code != 1 || !strings.Contains(errOut, "line 5") {
		t.Errorf("import of a malformed file: exit %d: %s", code, errOut)
	}
	if err := json.Unmarshal([]byte(out), &jobs); err != nil || len(jobs) != 1 || jobs[0].State != "failed" || !strings.HasPrefix(jobs[0].Error, "line 5:") {
		t.Errorf("the failed job: %+v %v", jobs, err)
	}
	if got := s.countPoints(t, "boat", start.AddDate(0, -2, 0), end); got != 0 {
		t.Errorf("a failed import left %d points", got)
	}

	// Ctrl-C in a terminal cancels the import on the server; the points
	// it wrote are removed, as the span held none before.
	const nCancel = 400_000
	cancelStart := start.AddDate(0, 1, 0)
	cancelFile := filepath.Join(dir, "long.gpx")
	writeGPX(t, cancelFile, cancelStart, nCancel)
	cmd := c.command("import", cancelFile, "--device", "boat")
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 24, Cols: 120})
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	screen := &syncBuffer{}
	copied := make(chan struct{})
	go func() {
		io.Copy(screen, tty) // until the terminal closes with the process
		close(copied)
	}()
	progress := regexp.MustCompile(`import long\.gpx.*\d+%.*\([1-9]\d*/400000, [\d.]+ positions/s\)`)
	eventually(t, "the progress bar", func() bool { return progress.MatchString(screen.String()) })
	if _, err := tty.Write([]byte{3}); err != nil { // Ctrl-C
		t.Fatal(err)
	}
	code = waitExit(t, cmd, screen)
	select {
	case <-copied:
	case <-time.After(5 * time.Second):
	}
	if code != 1 || !strings.Contains(screen.String(), "Cancelling job") || !strings.Contains(screen.String(), "import cancelled") {
		t.Errorf("import cancelled with Ctrl-C: exit %d\n%s", code, screen)
	}
	c.jsonOut(&jobs, "jobs", "ls", "--limit", "1")
	if len(jobs) != 1 || jobs[0].State != "cancelled" || jobs[0].Processed == 0 || jobs[0].Processed >= nCancel {
		t.Fatalf("the cancelled job: %+v", jobs)
	}
	if got := s.countPoints(t, "boat", cancelStart, cancelStart.Add(nCancel*time.Second)); got != 0 {
		t.Errorf("a cancelled import left %d points", got)
	}
	c.jsonOut(&tracks, "tracks", "ls", "--device", "boat")
	if len(tracks) != 0 {
		t.Errorf("a cancelled import made tracks: %+v", tracks)
	}

	// A cloud stopped mid-import takes the job up again at its next start.
	resumeStart := start.AddDate(0, 2, 0)
	resume := filepath.Join(dir, "resume.gpx")
	writeGPX(t, resume, resumeStart, nCancel)
	id := strings.TrimSpace(c.ok("import", resume, "--device", "boat", "--no-wait"))
	var j importedJob
	eventually(t, "the import to write", func() bool {
		c.jsonOut(&j, "jobs", "show", id)
		return j.State == "running" && j.Processed > 0
	})
	s.stopCloud()
	stopped := time.Now()
	s.stopCloud = s.startCloud(t)
	c.jsonOut(&j, "jobs", "show", id, "--wait")
	// Started again from the start after the restart: it had not ended.
	if j.State != "completed" || j.Processed != nCancel || j.Track == nil || !j.Started.After(stopped) {
		t.Fatalf("the import after the cloud started again: %+v (stopped at %v)", j, stopped)
	}
	if got := s.countPoints(t, "boat", resumeStart, resumeStart.Add(nCancel*time.Second)); got != nCancel {
		t.Errorf("the resumed import left %d points, want %d", got, nCancel)
	}
}
