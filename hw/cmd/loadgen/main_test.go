package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"trackgate/internal/testenv"
)

func TestHelpDocumentsEveryFlag(t *testing.T) {
	testenv.CheckREADMEFlags(t, run, "--help")
}

func TestDevices(t *testing.T) {
	dir := t.TempDir()
	file := func(s string) string {
		p := filepath.Join(dir, "tokens")
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tt := range []struct {
		name, tokens string
		n            int
		want, err    string
	}{
		{"anonymous", "", 2, "load-00000::,load-00001::", ""},
		{"tokens", "a tA\n\nb tB\nc tC\n", 2, "a:a:tA,b:b:tB", ""},
		{"too few", "a tA\n", 2, "", "1 devices, 2 wanted"},
		{"bad line", "a tA extra\n", 1, "", "want \"DEVICE TOKEN\""},
		{"too many", "", 20001, "", "connections"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := ""
			if tt.tokens != "" {
				path = file(tt.tokens)
			}
			devs, err := devices(path, "load", tt.n)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("devices = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, d := range devs {
				got = append(got, d.ID+":"+d.Username+":"+d.Password)
			}
			if strings.Join(got, ",") != tt.want {
				t.Errorf("devices = %v, want %s", got, tt.want)
			}
		})
	}
}

// FuzzDevices feeds arbitrary tokens files to the parser: an error or
// devices, never a panic.
func FuzzDevices(f *testing.F) {
	f.Add("a tA\nb tB\n", 2)
	f.Add("a\n", 1)
	f.Add("\n\n\n", 0)
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, content string, n int) {
		path := filepath.Join(dir, "tokens")
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		devs, err := devices(path, "load", n%50)
		if err == nil && len(devs) != n%50 {
			t.Fatalf("%d devices, want %d", len(devs), n%50)
		}
	})
}
