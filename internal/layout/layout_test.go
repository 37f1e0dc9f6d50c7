// Package layout_test checks the conventions of the repository layout: every
// package has a doc comment, and imports flow one way (cmd → component →
// internal → libraries), with test-only helpers kept out of production code.
package layout_test

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

type pkg struct {
	ImportPath string
	Name       string
	Doc        string
	Imports    []string
	GoFiles    []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", "trackgate/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// component returns the top-level folder of a trackgate import path.
func component(path string) string {
	rest := strings.TrimPrefix(path, "trackgate/")
	c, _, _ := strings.Cut(rest, "/")
	return c
}

func TestEveryPackageHasADocComment(t *testing.T) {
	for _, p := range listPackages(t) {
		if len(p.GoFiles) > 0 && p.Doc == "" {
			t.Errorf("%s has no package doc comment", p.ImportPath)
		}
	}
}

func TestImportDirection(t *testing.T) {
	testOnly := map[string]bool{"trackgate/internal/testenv": true, "trackgate/broker/brokertest": true}
	for _, p := range listPackages(t) {
		from := component(p.ImportPath)
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, "trackgate/") {
				continue
			}
			if testOnly[imp] {
				t.Errorf("%s imports the test-only %s outside tests", p.ImportPath, imp)
			}
			to := component(imp)
			switch {
			case to == "internal":
			case from == "internal":
				t.Errorf("%s (internal) imports the component package %s", p.ImportPath, imp)
			case to != from && !(from == "gateway" && (to == "broker" || to == "hw")) && from != "bench":
				// The gateway embeds the broker and reads receivers through
				// hw's libraries; the benchmark harness, outside the product,
				// drives every component and provisions the cloud's store
				// as `cloud device add` does; no other component imports
				// another.
				t.Errorf("%s imports %s: components meet over MQTT and HTTP, not imports", p.ImportPath, imp)
			case strings.Contains(imp, "/cmd/"):
				t.Errorf("%s imports the command %s", p.ImportPath, imp)
			}
		}
	}
}
