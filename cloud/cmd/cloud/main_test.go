package main

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"trackgate/internal/config"
	"trackgate/internal/testenv"
)

func TestHelpDocumentsEveryFlag(t *testing.T) {
	testenv.CheckREADMEFlags(t, run, "serve", "--help")
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{nil, {"nonsense"}, {"serve", "--no-such-flag"}} {
		var out bytes.Buffer
		var ue *config.UsageError
		if err := run(context.Background(), args, &out, &out); !errors.As(err, &ue) {
			t.Errorf("run %q = %v, want a usage error", args, err)
		}
	}
}
