package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"testing"

	"trackgate/internal/testenv"
)

func TestHelpDocumentsEveryFlag(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--help"}, &out, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("run --help = %v, want flag.ErrHelp", err)
	}
	testenv.CheckREADMEFlags(t, out.String())
}
