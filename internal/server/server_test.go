package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestEndpoints(t *testing.T) {
	var healthy atomic.Bool
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "trackgate_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	s := New(Config{Addr: "127.0.0.1:0", Gatherer: reg, Checks: []Check{
		{Name: "always", Check: func(context.Context) error { return nil }},
		{Name: "flaky", Check: func(context.Context) error {
			if !healthy.Load() {
				return errors.New("down")
			}
			return nil
		}},
	}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	<-s.Ready()
	base := "http://" + s.Addr().String()
	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d", code)
	}
	code, body := get("/readyz")
	var res map[string]string
	if err := json.Unmarshal([]byte(body), &res); err != nil || code != http.StatusServiceUnavailable || res["flaky"] != "down" || res["always"] != "ok" {
		t.Errorf("/readyz with a failing check = %d %s", code, body)
	}
	healthy.Store(true)
	if code, body := get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz with passing checks = %d %s", code, body)
	}
	if _, body := get("/metrics"); !strings.Contains(body, "trackgate_test_total 3") {
		t.Errorf("/metrics lacks the registered counter:\n%s", body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}
