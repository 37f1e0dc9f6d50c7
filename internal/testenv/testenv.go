package testenv

import (
	"net"
	"os"
	"path/filepath"
	"testing"
)

// RepoRoot returns the module root: the nearest directory, starting at the
// working directory and walking up, that contains a go.mod file. It fails the
// test if there is none.
func RepoRoot(t testing.TB) string {
	t.Helper()
	root, err := findRepoRoot()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return root
}

func findRepoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", &os.PathError{Op: "find go.mod above", Path: wd, Err: os.ErrNotExist}
		}
		dir = parent
	}
}

// FreeAddr returns a loopback address "127.0.0.1:PORT" whose port was free a
// moment ago (it listens on port 0, closes the listener and returns its
// address). Another process may grab the port in between, so use it quickly.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return freeAddrs(t, 1)[0]
}

// freeAddrs returns n distinct free loopback addresses. All listeners are held
// open until every port has been picked so that the ports differ.
func freeAddrs(t testing.TB, n int) []string {
	t.Helper()
	addrs := make([]string, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("testenv: find free loopback port: %v", err)
		}
		defer l.Close()
		addrs = append(addrs, l.Addr().String())
	}
	return addrs
}
