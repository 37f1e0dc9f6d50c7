package main

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"

	"trackgate/internal/config"
	"trackgate/internal/testenv"
)

func TestHelpDocumentsEveryFlag(t *testing.T) {
	testenv.CheckREADMEFlags(t, run, "serve", "--help")
	for _, cmd := range [][]string{{"user", "add"}, {"user", "passwd"}, {"user", "totp"}, {"device", "add"}, {"device", "rm"}, {"client", "add"}, {"keys", "rotate"}} {
		testenv.CheckREADMEFlags(t, run, append(cmd, "--help")...)
	}
}

// TestAdmin runs the administration commands on a data directory: a user,
// TOTP enrolment, a device and its token, its removal, a key rotation.
func TestAdmin(t *testing.T) {
	data := t.TempDir()
	ctx := context.Background()
	cmd := func(stdin string, args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := admin(ctx, args[0]+" "+args[1], append(args[2:], "--data", data), strings.NewReader(stdin), &out, &errOut)
		return out.String(), err
	}
	if _, err := cmd("correct horse\n", "user", "add", "ann"); err != nil {
		t.Fatal(err)
	}
	if _, err := cmd("correct horse\n", "user", "add", "ann"); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second user ann: %v", err)
	}
	if _, err := cmd("", "user", "add", "bob"); config.ExitCode(err, &bytes.Buffer{}) != 2 {
		t.Fatalf("no password: %v", err)
	}
	if uri, err := cmd("", "user", "totp", "ann"); err != nil || !strings.HasPrefix(uri, "otpauth://totp/") {
		t.Fatalf("totp: %q, %v", uri, err)
	}
	tok, err := cmd("", "device", "add", "--owner", "ann", "van")
	if err != nil || strings.Count(strings.TrimSpace(tok), ".") != 2 || strings.Count(tok, "\n") != 1 {
		t.Fatalf("device add printed %q, %v; want the token alone", tok, err)
	}
	if _, err := cmd("", "device", "add", "van"); config.ExitCode(err, &bytes.Buffer{}) != 2 {
		t.Fatalf("device add without --owner: %v", err)
	}
	if _, err := cmd("", "device", "add", "--owner", "zed", "boat"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("device of an unknown owner: %v", err)
	}
	if _, err := cmd("", "device", "rm", "van"); err != nil {
		t.Fatal(err)
	}
	out, err := cmd("", "client", "add", "--service", "ingest-bridge")
	if err != nil || !strings.HasPrefix(out, `{"client_id":"ingest-bridge","client_secret":"tgs_`) {
		t.Fatalf("client add printed %q, %v", out, err)
	}
	if _, err := cmd("", "client", "add", "x"); config.ExitCode(err, &bytes.Buffer{}) != 2 {
		t.Fatalf("client add without --service or --redirect-uri: %v", err)
	}
	if _, err := cmd("new password\n", "user", "passwd", "ann"); err != nil {
		t.Fatal(err)
	}
	// AUTH.md item 13 and 12: redirect URIs an app may register.
	for i, tt := range []struct {
		uri string
		ok  bool
	}{
		{"https://app.example/cb", true},
		{"http://127.0.0.1/cb", true},
		{"http://[::1]/cb", true},
		{"com.example.track:/cb", true},
		{"http://app.example/cb", false},
		{"http://localhost/cb", false},
		{"http://127.0.0.1:8000/cb", false},
		{"https://app.example/cb#frag", false},
		{"https://*.example/cb", false},
		{"/cb", false},
		{"javascript:alert(1)", false},
	} {
		name := "app" + strconv.Itoa(i)
		out, err := cmd("", "client", "add", "--redirect-uri", tt.uri, name)
		if (err == nil) != tt.ok {
			t.Errorf("13: redirect URI %q: %q, %v", tt.uri, out, err)
		}
		if err == nil && strings.Contains(out, "client_secret") {
			t.Errorf("a public app client got a secret: %s", out)
		}
	}
	if out, err := cmd("", "client", "add", "--confidential", "--redirect-uri", "https://web.example/cb", "web"); err != nil || !strings.Contains(out, `"client_secret":"tgs_`) {
		t.Errorf("confidential app: %q, %v", out, err)
	}
	if _, err := cmd("", "keys", "rotate"); err != nil {
		t.Fatal(err)
	}
}
