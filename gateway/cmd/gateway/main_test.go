package main

import (
	"testing"

	"trackgate/internal/testenv"
)

func TestHelpDocumentsEveryFlag(t *testing.T) {
	testenv.CheckREADMEFlags(t, run, "--help")
}

func TestEnrollHelpDocumentsEveryFlag(t *testing.T) {
	testenv.CheckREADMEFlags(t, run, "enroll", "--help")
}
