package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"trackgate/internal/testenv"
)

func TestHelpDocumentsEveryFlag(t *testing.T) {
	testenv.CheckREADMEFlags(t, run, "--help")
}

// TestEveryAdapterIsListed: every adapter package under firmware-bridge is
// in the protocol list, once.
func TestEveryAdapterIsListed(t *testing.T) {
	dir := filepath.Join(testenv.RepoRoot(t), "firmware-bridge")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range protocols() {
		if slices.Contains(names, p.Name) {
			t.Errorf("protocol %s is listed twice", p.Name)
		}
		names = append(names, p.Name)
	}
	pkgOf := map[string]string{"owntracks": "owntracks-http"}
	for _, e := range entries {
		if !e.IsDir() || e.Name() == "bridge" || e.Name() == "cmd" {
			continue
		}
		name := e.Name()
		if n, ok := pkgOf[name]; ok {
			name = n
		}
		if !slices.Contains(names, name) {
			t.Errorf("adapter package %s is not in protocols()", e.Name())
		}
	}
}
