package server

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// CertFiles serves a certificate from PEM files, loading them again when
// their modification time changes (checked at most every 10 seconds), so
// a renewed certificate is served without a restart.
type CertFiles struct {
	cert, key string
	log       *slog.Logger

	mu      sync.Mutex
	current *tls.Certificate
	mtime   time.Time
	checked time.Time
}

// GetCertificate returns the certificate, reloaded if its file changed; it
// fits tls.Config.GetCertificate.
func (f *CertFiles) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if time.Since(f.checked) < 10*time.Second && f.current != nil {
		return f.current, nil
	}
	f.checked = time.Now()
	cert, err := f.loadLocked()
	if err != nil && f.current != nil {
		f.log.Error("reload TLS certificate: keeping the one loaded", "err", err)
		return f.current, nil
	}
	return cert, err
}

// LoadCertFiles loads a certificate chain and its key from PEM files.
func LoadCertFiles(cert, key string, log *slog.Logger) (*CertFiles, error) {
	f := &CertFiles{cert: cert, key: key, log: log}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.loadLocked(); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *CertFiles) loadLocked() (*tls.Certificate, error) {
	fi, err := os.Stat(f.cert)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate: %w", err)
	}
	if f.current != nil && fi.ModTime().Equal(f.mtime) {
		return f.current, nil
	}
	cert, err := tls.LoadX509KeyPair(f.cert, f.key)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate %s, key %s: %w", f.cert, f.key, err)
	}
	f.current, f.mtime = &cert, fi.ModTime()
	return f.current, nil
}
