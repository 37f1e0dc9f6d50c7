package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"trackgate/internal/testenv"
)

// TestHarness runs the harness on a small load of every trackgate scenario
// (the baseline needs make bench-e2e's tools): the real influxd, cloud,
// gateway and loadgen, built here. Every scenario stores what was
// published, and the table shows them all.
func TestHarness(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole stack")
	}
	root := testenv.RepoRoot(t)
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "./cloud/cmd/cloud", "./gateway/cmd/gateway", "./hw/cmd/loadgen")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out := t.TempDir()
	var log bytes.Buffer
	logOut = &log
	t.Cleanup(func() { logOut = os.Stderr })
	var table bytes.Buffer
	err := run(t.Context(), []string{"--bin", bin, "--influxd", filepath.Join(root, ".tools/bin/influxd"), "--out", out,
		"--runs", "1", "--duration", "2s", "--scenarios", "a,b,c,d", "--phones", "20", "--idle", "100",
		"--receivers", "2", "--latency-rate", "400", "--batch", "2"}, &table)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, log.String())
	}
	b, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var results []Result
	if err := json.Unmarshal(b, &results); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range results {
		seen[r.Scenario] = true
		if r.Published == 0 || r.Lost != 0 || r.Stored < r.Published || r.PerSecond <= 0 {
			t.Errorf("%s: published %d, stored %d, lost %d, %.0f/s", r.Scenario, r.Published, r.Stored, r.Lost, r.PerSecond)
		}
		if r.Procs["gateway"].PeakRSSMB <= 0 || r.Procs["cloud"].CPUSeconds <= 0 {
			t.Errorf("%s: process figures %+v", r.Scenario, r.Procs)
		}
		if (r.Scenario == "b" || r.Scenario == "d") && (r.Latency == nil || r.Latency.P50 <= 0 || r.Latency.Beyond != 0) {
			t.Errorf("%s: latency %+v", r.Scenario, r.Latency)
		}
		if r.Scenario == "c" && r.Notes["gateway_rss_idle_mb"] <= 0 {
			t.Errorf("c: notes %v", r.Notes)
		}
	}
	for _, s := range []string{"a", "b", "c", "d"} {
		if !seen[s] {
			t.Errorf("no result for scenario %s\n%s", s, log.String())
		}
	}
	for _, want := range []string{"20 phones, as fast as acknowledged", "100 idle authenticated connections", "2 serial receivers", "targets:"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("the table lacks %q:\n%s", want, table.String())
		}
	}
	for _, p := range []string{"gateway.cpu.pprof", "cloud.cpu.pprof", "influxd.cpu.pprof", "loadgen.cpu.pprof", "gateway.allocs.pprof", "gateway.idle.heap.pprof"} {
		if _, err := os.Stat(filepath.Join(out, "profiles", p)); err != nil {
			t.Errorf("profile: %v", err)
		}
	}
}
