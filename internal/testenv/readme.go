package testenv

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var helpFlag = regexp.MustCompile(`(?m)^\s+--([a-z0-9-]+)`)

// CheckREADMEFlags fails the test unless the repository's README.md
// documents every flag listed in help (a command's --help text) together
// with its TRACKGATE_* environment variable.
func CheckREADMEFlags(t testing.TB, help string) {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join(RepoRoot(t), "README.md"))
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	flags := helpFlag.FindAllStringSubmatch(help, -1)
	if len(flags) == 0 {
		t.Fatalf("testenv: no flags found in help text:\n%s", help)
	}
	for _, m := range flags {
		env := "TRACKGATE_" + strings.ToUpper(strings.ReplaceAll(m[1], "-", "_"))
		if !strings.Contains(string(readme), "`--"+m[1]+"`") || !strings.Contains(string(readme), env) {
			t.Errorf("README.md does not document --%s with %s", m[1], env)
		}
		if !strings.Contains(help, "["+env+"]") {
			t.Errorf("--help does not name %s for --%s", env, m[1])
		}
	}
}
