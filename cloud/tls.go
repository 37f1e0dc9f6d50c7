package cloud

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"

	"trackgate/internal/server"
)

// TLSConfig configures the cloud's HTTPS: certificate files, or automatic
// certificates from an ACME CA (Let's Encrypt by default).
type TLSConfig struct {
	Cert, Key     string // PEM files, read again when they change (a renewal)
	ACMEDomain    string // comma-separated host names to get certificates for
	ACMEEmail     string // contact address given to the CA
	ACMEDirectory string // the CA's directory URL; default Let's Encrypt
	// Redirect is a plain-HTTP listen address that redirects to HTTPS (and
	// answers ACME HTTP-01 challenges); empty for none.
	Redirect string
}

// enabled reports whether HTTPS is configured.
func (c TLSConfig) enabled() bool { return c.Cert != "" || c.Key != "" || c.ACMEDomain != "" }

// check reports a configuration that cannot work, and plain HTTP on an
// address others can reach: tokens and passwords cross it.
func (c TLSConfig) check(httpAddr string) error {
	switch {
	case (c.Cert == "") != (c.Key == ""):
		return errors.New("give both --tls-cert and --tls-key")
	case c.Cert != "" && c.ACMEDomain != "":
		return errors.New("--tls-cert and --acme-domain exclude each other")
	case !c.enabled() && c.Redirect != "":
		return errors.New("--http-redirect needs HTTPS (--tls-cert/--tls-key or --acme-domain)")
	case !c.enabled() && !loopbackAddr(httpAddr):
		return fmt.Errorf("plain HTTP on %s: serve HTTPS (--tls-cert/--tls-key or --acme-domain), or listen on a loopback address behind a TLS proxy", httpAddr)
	}
	return nil
}

// loopbackAddr reports whether a listen address binds a loopback address
// only ("127.0.0.1:8080", "[::1]:8080"; not ":8080", which is every
// address).
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// build returns the TLS configuration of the HTTPS server and the handler
// of the redirect listener; dataDir keeps ACME accounts and certificates.
func (c TLSConfig) build(dataDir string, log *slog.Logger) (*tls.Config, http.Handler, error) {
	redirect := http.HandlerFunc(toHTTPS)
	if c.ACMEDomain != "" {
		m := &autocert.Manager{
			Prompt:     autocert.AcceptTOS,
			Cache:      autocert.DirCache(filepath.Join(dataDir, "acme")),
			HostPolicy: autocert.HostWhitelist(strings.Split(c.ACMEDomain, ",")...),
			Email:      c.ACMEEmail,
		}
		if c.ACMEDirectory != "" {
			m.Client = &acme.Client{DirectoryURL: c.ACMEDirectory}
		}
		cfg := m.TLSConfig()
		cfg.MinVersion = tls.VersionTLS12
		return cfg, m.HTTPHandler(redirect), nil
	}
	files, err := server.LoadCertFiles(c.Cert, c.Key, log)
	if err != nil {
		return nil, nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: files.GetCertificate, NextProtos: []string{"http/1.1"}}, redirect, nil
}

// toHTTPS redirects a GET or HEAD to the same URL over https on the
// default port, and refuses every other request without reading it:
// credentials sent in plain text are not processed.
func toHTTPS(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "use https", http.StatusBadRequest)
		return
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusPermanentRedirect)
}

// runRedirect serves the plain-HTTP redirect listener until ctx ends.
func runRedirect(ctx context.Context, addr string, h http.Handler, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("http redirect: listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("redirecting plain HTTP to HTTPS", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("http redirect: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shutdownCtx)
}
