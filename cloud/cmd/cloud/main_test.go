package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"testing"

	"trackgate/internal/config"
	"trackgate/internal/testenv"
)

func TestHelpDocumentsEveryFlag(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"serve", "--help"}, &out, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("run --help = %v, want flag.ErrHelp", err)
	}
	testenv.CheckREADMEFlags(t, out.String())
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
