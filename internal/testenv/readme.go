package testenv

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"trackgate/internal/config"
)

var helpFlag = regexp.MustCompile(`(?m)^\s+--([a-z0-9-]+)`)

// CheckREADMEFlags runs a command's run function with args (which must ask
// for help) and fails the test unless the help text names each flag's
// TRACKGATE_* variable and the repository's README.md documents every flag
// with its variable.
func CheckREADMEFlags(t testing.TB, run config.RunFunc, args ...string) {
	t.Helper()
	var out bytes.Buffer
	if err := run(context.Background(), args, &out, &out); !errors.Is(err, config.ErrHelp) {
		t.Fatalf("run %q = %v, want the help error", args, err)
	}
	help := out.String()
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
