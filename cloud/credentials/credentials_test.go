package credentials

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// testProfile is a sign-in to server whose access token has left to live
// (none when left is 0).
func testProfile(server, refreshToken string, left time.Duration) *Profile {
	p := &Profile{
		Server: server, ClientID: "trackctl", TokenURL: server + "/token", RevokeURL: server + "/revoke",
		User: "ann", AccessToken: "at-stored-" + refreshToken, RefreshToken: refreshToken,
		TokenType: "Bearer", Scope: "openid tracks:read",
	}
	if left != 0 {
		p.Expiry = time.Now().Add(left).Round(time.Second)
	}
	return p
}

// tempStore is a store in a new directory of its own.
func tempStore(t *testing.T) *Store {
	t.Helper()
	return Open(filepath.Join(t.TempDir(), "trackgate", "credentials.json"))
}

// perm returns the permission bits of the file at path.
func perm(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// dirNames returns the names in dir, sorted.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestDefaultPathFileModes(t *testing.T) {
	switch runtime.GOOS {
	case "windows", "darwin", "ios", "plan9":
		t.Skip("the configuration directory does not follow XDG_CONFIG_HOME here")
	}
	config := filepath.Join(t.TempDir(), "config") // made by the first Put
	t.Setenv("XDG_CONFIG_HOME", config)
	path, err := DefaultPath()
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(config, "trackgate", "credentials.json"); path != want {
		t.Fatalf("DefaultPath() = %s, want %s", path, want)
	}
	s := Open(path)
	if s.Path() != path {
		t.Errorf("Path() = %s, want %s", s.Path(), path)
	}
	for i, name := range []string{"home", "work", "home"} { // create, then replace twice
		if err := s.Put(name, testProfile("http://127.0.0.1:8080", "rt", time.Hour), false); err != nil {
			t.Fatalf("Put %d: %v", i, err)
		}
		for _, c := range []struct {
			path string
			want fs.FileMode
		}{{config, 0o700}, {filepath.Dir(path), 0o700}, {path, 0o600}, {path + ".lock", 0o600}} {
			if got := perm(t, c.path); got != c.want {
				t.Errorf("Put %d: %s has mode %04o, want %04o", i, c.path, got, c.want)
			}
		}
		// Atomic writes leave no temporary file behind.
		if got, want := dirNames(t, filepath.Dir(path)), []string{"credentials.json", "credentials.json.lock"}; !slices.Equal(got, want) {
			t.Errorf("Put %d: directory holds %q, want %q", i, got, want)
		}
	}
}

func TestInsecureFileRefused(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("mode bits are not checked on Windows")
	}
	for _, c := range []struct {
		mode fs.FileMode
		how  string // "" when the mode is fine
	}{
		{0o600, ""},
		{0o400, ""},
		{0o644, "readable"},
		{0o640, "readable"},
		{0o604, "readable"},
		{0o620, "writable"},
		{0o602, "writable"},
		{0o610, "accessible"},
	} {
		t.Run(c.mode.String(), func(t *testing.T) {
			s := tempStore(t)
			if err := s.Put("home", testProfile("http://127.0.0.1:8080", "rt-secret", time.Hour), true); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(s.Path(), c.mode); err != nil {
				t.Fatal(err)
			}
			_, err := s.Load()
			if c.how == "" {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				return
			}
			want := "credentials file " + s.Path() + " is " + c.how + " by others (mode " + octal(c.mode) + "): run chmod 600 " + s.Path() +
				", then sign in again with trackctl login since the tokens may have leaked"
			if !errors.Is(err, ErrInsecure) || err.Error() != want {
				t.Fatalf("Load: %v\nwant %s (wrapping ErrInsecure)", err, want)
			}
			// Whatever reads the file refuses it.
			if _, _, err := s.Profile(""); !errors.Is(err, ErrInsecure) {
				t.Errorf("Profile: %v, want ErrInsecure", err)
			}
			if err := s.Put("work", testProfile("http://127.0.0.1:8080", "rt", time.Hour), false); !errors.Is(err, ErrInsecure) {
				t.Errorf("Put: %v, want ErrInsecure", err)
			}
			if _, err := s.TokenSource(t.Context(), "", nil).Token(); !errors.Is(err, ErrInsecure) {
				t.Errorf("Token: %v, want ErrInsecure", err)
			}
			if strings.Contains(err.Error(), "rt-secret") {
				t.Error("the error shows a token")
			}
		})
	}
}

// octal formats mode's permission bits as chmod takes them.
func octal(mode fs.FileMode) string { return fmt.Sprintf("%04o", mode.Perm()) }

func TestInsecureDirectoryRefused(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("mode bits are not checked on Windows")
	}
	for _, c := range []struct {
		mode fs.FileMode
		ok   bool
	}{
		{0o700, true},
		{0o755, true},
		{0o770, false},
		{0o757, false},
		{0o777 | os.ModeSticky, false},
	} {
		t.Run(c.mode.String(), func(t *testing.T) {
			s := tempStore(t)
			if err := s.Put("home", testProfile("http://127.0.0.1:8080", "rt", time.Hour), true); err != nil {
				t.Fatal(err)
			}
			dir := filepath.Dir(s.Path())
			if err := os.Chmod(dir, c.mode); err != nil {
				t.Fatal(err)
			}
			_, err := s.Load()
			if c.ok {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				return
			}
			want := "credentials directory " + dir + " is writable by others (mode " + octal(c.mode) + "): run chmod 700 " + dir
			if !errors.Is(err, ErrInsecure) || err.Error() != want {
				t.Fatalf("Load: %v\nwant %s (wrapping ErrInsecure)", err, want)
			}
		})
	}
}

func TestProfilesRoundTrip(t *testing.T) {
	s := tempStore(t)
	if f, err := s.Load(); err != nil || len(f.Profiles) != 0 || f.Default != "" {
		t.Fatalf("Load of no file = %+v, %v; want an empty file", f, err)
	}
	if _, err := os.Stat(filepath.Dir(s.Path())); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load made the directory: %v", err)
	}
	if _, _, err := s.Profile(""); !errors.Is(err, ErrNotSignedIn) || err.Error() != "not signed in: run trackctl login [--server URL]" {
		t.Errorf("Profile(\"\") with none: %v", err)
	}

	home := testProfile("http://home.example:8080", "rt-home", time.Hour)
	work := testProfile("https://work.example", "rt-work", 2*time.Hour)
	work.User = "bob"
	steps := []struct {
		name        string
		p           *Profile
		makeDefault bool
		wantDefault string
	}{
		{"home", home, false, "home"}, // the first one becomes the default
		{"work", work, false, "home"},
		{"work", work, true, "work"},
		{"home", home, false, "work"},
	}
	for _, st := range steps {
		if err := s.Put(st.name, st.p, st.makeDefault); err != nil {
			t.Fatalf("Put(%s, %v): %v", st.name, st.makeDefault, err)
		}
		f, err := s.Load()
		if err != nil {
			t.Fatal(err)
		}
		if f.Default != st.wantDefault {
			t.Errorf("after Put(%s, %v): default %q, want %q", st.name, st.makeDefault, f.Default, st.wantDefault)
		}
	}
	for _, c := range []struct {
		ask, name string
		want      *Profile
	}{{"", "work", work}, {"home", "home", home}, {"work", "work", work}} {
		name, got, err := s.Profile(c.ask)
		if err != nil {
			t.Fatalf("Profile(%q): %v", c.ask, err)
		}
		if !got.Expiry.Equal(c.want.Expiry) {
			t.Errorf("Profile(%q) expiry %v, want %v", c.ask, got.Expiry, c.want.Expiry)
		}
		got.Expiry = c.want.Expiry
		if name != c.name || *got != *c.want {
			t.Errorf("Profile(%q) = %s %+v, want %s %+v", c.ask, name, got, c.name, c.want)
		}
	}
	if _, _, err := s.Profile("nobody"); !errors.Is(err, ErrNotSignedIn) ||
		err.Error() != "not signed in as profile nobody: run trackctl login --profile nobody [--server URL]" {
		t.Errorf("Profile(nobody): %v", err)
	}
	if err := s.Put("", home, false); err == nil {
		t.Error("Put with no name succeeded")
	}
}

func TestRemove(t *testing.T) {
	put := func(t *testing.T, s *Store, names ...string) {
		t.Helper()
		for _, n := range names {
			if err := s.Put(n, testProfile("http://"+n+".example", "rt-"+n, time.Hour), false); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, c := range []struct {
		name        string
		profiles    []string // the first is the default
		remove      string
		wantRemoved string // "" for an error wrapping ErrNotSignedIn
		wantLeft    []string
		wantDefault string
	}{
		{"the default, none left", []string{"a"}, "", "a", nil, ""},
		{"by name, none left", []string{"a"}, "a", "a", nil, ""},
		{"the default, one left", []string{"a", "b"}, "a", "a", []string{"b"}, "b"},
		{"the default, two left", []string{"a", "b", "c"}, "", "a", []string{"b", "c"}, ""},
		{"another one", []string{"a", "b", "c"}, "c", "c", []string{"a", "b"}, "a"},
		{"missing", []string{"a"}, "z", "", []string{"a"}, "a"},
		{"nothing to remove", nil, "", "", nil, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := tempStore(t)
			put(t, s, c.profiles...)
			p, err := s.Remove(c.remove)
			if c.wantRemoved == "" {
				if !errors.Is(err, ErrNotSignedIn) {
					t.Fatalf("Remove(%q): %v, want ErrNotSignedIn", c.remove, err)
				}
			} else if err != nil || p.RefreshToken != "rt-"+c.wantRemoved {
				t.Fatalf("Remove(%q) = %+v, %v; want profile %s", c.remove, p, err, c.wantRemoved)
			}
			_, statErr := os.Stat(s.Path())
			if len(c.wantLeft) == 0 {
				if !errors.Is(statErr, fs.ErrNotExist) {
					t.Errorf("the file is still there with no profile: %v", statErr)
				}
				return
			}
			f, err := s.Load()
			if err != nil {
				t.Fatal(err)
			}
			var left []string
			for n := range f.Profiles {
				left = append(left, n)
			}
			slices.Sort(left)
			if !slices.Equal(left, c.wantLeft) || f.Default != c.wantDefault {
				t.Errorf("left %q (default %q), want %q (default %q)", left, f.Default, c.wantLeft, c.wantDefault)
			}
			if c.wantDefault == "" {
				_, _, err := s.Profile("")
				if want := "pass --profile with one of " + strings.Join(c.wantLeft, ", "); !errors.Is(err, ErrNotSignedIn) || !strings.Contains(err.Error(), want) {
					t.Errorf("Profile(\"\") with no default: %v, want ErrNotSignedIn saying %q", err, want)
				}
			}
		})
	}
}

func TestUpdateKeepsFileWhenFnFails(t *testing.T) {
	s := tempStore(t)
	if err := s.Put("home", testProfile("http://127.0.0.1:8080", "rt", time.Hour), true); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err = s.Update(func(f *File) error {
		delete(f.Profiles, "home")
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update: %v, want fn's error", err)
	}
	if after, err := os.ReadFile(s.Path()); err != nil || string(after) != string(before) {
		t.Errorf("the file changed although fn failed (%v)", err)
	}
}

func TestDamagedFile(t *testing.T) {
	s := tempStore(t)
	if err := os.MkdirAll(filepath.Dir(s.Path()), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.Path(), []byte(`{"profiles": {"home": `), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(); err == nil || !strings.Contains(err.Error(), "is damaged: remove it and sign in again") {
		t.Errorf("Load of a damaged file: %v", err)
	}
}
