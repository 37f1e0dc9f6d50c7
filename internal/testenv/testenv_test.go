package testenv

import (
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	testPoint = "position,device=d1 lat=52.37,lon=4.89 1700000000000000000"
	testFlux  = `from(bucket:"trackgate/autogen") |> range(start: 2000-01-01T00:00:00Z) |> filter(fn: (r) => r._measurement == "position")`
)

func TestRepoRoot(t *testing.T) {
	root := RepoRoot(t)
	data, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatalf("read go.mod: %v", err)
	}
	if !strings.Contains(string(data), "module trackgate") {
		t.Errorf("RepoRoot = %s: go.mod is not the trackgate module", root)
	}
}

func TestFreeAddr(t *testing.T) {
	addr := FreeAddr(t)
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host != "127.0.0.1" {
		t.Fatalf("FreeAddr = %q, want 127.0.0.1:PORT (err %v)", addr, err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on FreeAddr %s: %v", addr, err)
	}
	l.Close()
}

func TestInfluxWriteQueryRestart(t *testing.T) {
	began := time.Now()
	inf := StartInflux(t)
	t.Logf("StartInflux took %v", time.Since(began))
	if inf.Database != "trackgate" || !strings.HasPrefix(inf.URL, "http://127.0.0.1:") {
		t.Fatalf("Influx = {URL: %q, Database: %q}", inf.URL, inf.Database)
	}

	post(t, inf.URL+"/api/v2/write?bucket=trackgate/autogen&precision=ns", "text/plain; charset=utf-8", "", testPoint, http.StatusNoContent)

	checkPoint := func(t *testing.T) {
		t.Helper()
		csv := post(t, inf.URL+"/api/v2/query", "application/vnd.flux", "application/csv", testFlux, http.StatusOK)
		for _, want := range []string{",52.37,lat,position,d1", ",4.89,lon,position,d1", "2023-11-14T22:13:20Z"} {
			if !strings.Contains(csv, want) {
				t.Errorf("flux result lacks %q:\n%s", want, csv)
			}
		}

		body, err := inf.Query(`SELECT lat, lon FROM position WHERE device = 'd1'`)
		if err != nil {
			t.Fatalf("Query: %v", err)
		}
		const want = `"values":[["2023-11-14T22:13:20Z",52.37,4.89]]`
		if !strings.Contains(string(body), want) {
			t.Errorf("InfluxQL result = %s, want it to contain %s", body, want)
		}
	}

	t.Run("read", checkPoint)

	t.Run("query error", func(t *testing.T) {
		if _, err := inf.Query("SELECT FROM"); err == nil {
			t.Error("Query with a syntax error: want error")
		}
		if _, err := inf.Query(`SELECT * FROM "nosuchdb".."position"`); err == nil {
			t.Error("Query with a statement error: want error")
		}
	})

	t.Run("after kill", func(t *testing.T) {
		inf.Kill()
		if _, err := http.Get(inf.URL + "/ping"); err == nil {
			t.Fatal("influxd still answers after Kill")
		}
		began := time.Now()
		inf.Start()
		t.Logf("restart took %v", time.Since(began))
		checkPoint(t)
	})

	t.Run("after stop", func(t *testing.T) {
		inf.Stop()
		inf.Start()
		checkPoint(t)
	})
}

// post sends body to url and returns the response body, failing the test if
// the status differs from want.
func post(t *testing.T, url, contentType, accept, body string, want int) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	req.Header.Set("Content-Type", contentType)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: read body: %v", url, err)
	}
	if resp.StatusCode != want {
		t.Fatalf("POST %s: status %s, want %d: %s", url, resp.Status, want, data)
	}
	return string(data)
}
