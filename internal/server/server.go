// Package server is the HTTP server of trackgate's processes: it mounts their handlers
// and serves the operational endpoints /healthz (the process is up), /readyz
// (its dependencies answer) and /metrics (Prometheus).
package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check is one readiness check: it returns nil when its dependency answers.
type Check struct {
	Name  string
	Check func(ctx context.Context) error
}

// Config configures the server.
type Config struct {
	Addr string // listen address, e.g. ":8080" (":0" picks a free port)
	// TLS, when set, makes the server serve HTTPS only.
	TLS      *tls.Config
	Checks   []Check
	Gatherer prometheus.Gatherer // metrics served on /metrics
	Logger   *slog.Logger
}

// Server is a process's HTTP server.
type Server struct {
	cfg   Config
	mux   *http.ServeMux
	ready chan struct{}

	mu   sync.Mutex // guards addr
	addr net.Addr
}

// New returns a Server. It does no I/O.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux(), ready: make(chan struct{})}
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
	return s
}

// Handle mounts h on pattern (http.ServeMux syntax).
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// Ready is closed once the server listens.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr returns the bound address, or nil before Ready.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// readyz runs every check with a short deadline and answers 200 when all pass,
// 503 otherwise, with each check's result.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	results := map[string]string{}
	status := http.StatusOK
	for _, c := range s.cfg.Checks {
		if err := c.Check(ctx); err != nil {
			results[c.Name] = err.Error()
			status = http.StatusServiceUnavailable
			continue
		}
		results[c.Name] = "ok"
	}
	writeJSON(w, status, results)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Run listens and serves until ctx ends, then shuts down gracefully, letting
// requests in progress finish for up to 5 seconds.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("http: listen %s: %w", s.cfg.Addr, err)
	}
	s.mu.Lock()
	s.addr = ln.Addr()
	s.mu.Unlock()
	if s.cfg.TLS != nil {
		ln = tls.NewListener(ln, s.cfg.TLS)
	}
	srv := &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.cfg.Logger.Handler(), slog.LevelWarn),
	}
	close(s.ready)
	s.cfg.Logger.Info("http listening", "addr", ln.Addr().String(), "tls", s.cfg.TLS != nil)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("http: serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("http: shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http: serve: %w", err)
	}
	return nil
}
