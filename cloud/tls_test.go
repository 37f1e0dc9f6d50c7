package cloud

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"trackgate/internal/server"
)

// selfSigned writes a certificate for 127.0.0.1 and its key to dir and
// returns their paths and a pool that trusts the certificate.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "trackgate test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestItem1PlainHTTPOnlyOnLoopback: without TLS the cloud refuses to listen
// where others can reach it.
func TestItem1PlainHTTPOnlyOnLoopback(t *testing.T) {
	for _, tt := range []struct {
		addr string
		tls  TLSConfig
		ok   bool
	}{
		{"127.0.0.1:8080", TLSConfig{}, true},
		{"[::1]:8080", TLSConfig{}, true},
		{":8080", TLSConfig{}, false},
		{"0.0.0.0:8080", TLSConfig{}, false},
		{"192.0.2.7:8080", TLSConfig{}, false},
		{"localhost:8080", TLSConfig{}, false},
		{":8443", TLSConfig{Cert: "c", Key: "k"}, true},
		{":8443", TLSConfig{Cert: "c"}, false},
		{":8443", TLSConfig{ACMEDomain: "track.example"}, true},
		{":8443", TLSConfig{ACMEDomain: "track.example", Cert: "c", Key: "k"}, false},
		{"127.0.0.1:8080", TLSConfig{Redirect: ":80"}, false},
	} {
		if err := tt.tls.check(tt.addr); (err == nil) != tt.ok {
			t.Errorf("%s %+v: %v, want ok %v", tt.addr, tt.tls, err, tt.ok)
		}
	}
}

// TestItem1HTTPS serves the ops endpoints over HTTPS from certificate
// files; the plain-HTTP listener redirects GETs and refuses the rest
// without reading them.
func TestItem1HTTPS(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t, t.TempDir())
	cfg, redirect, err := TLSConfig{Cert: certFile, Key: keyFile}.build(t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(server.Config{Addr: "127.0.0.1:0", TLS: cfg, Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-srv.Ready()
	addr := srv.Addr().String()

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get("https://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("https /healthz: %d", resp.StatusCode)
	}
	if resp, err := http.Get("http://" + addr + "/healthz"); err == nil && resp.StatusCode == 200 {
		t.Error("plain HTTP answered on the HTTPS port")
	}

	for _, tt := range []struct {
		method, target string
		status         int
		location       string
	}{
		{"GET", "http://track.example/authorize?client_id=x", http.StatusPermanentRedirect, "https://track.example/authorize?client_id=x"},
		{"GET", "http://track.example:80/.well-known/jwks.json", http.StatusPermanentRedirect, "https://track.example/.well-known/jwks.json"},
		{"POST", "http://track.example/token", http.StatusBadRequest, ""},
	} {
		req := httptest.NewRequest(tt.method, tt.target, strings.NewReader("grant_type=password&password=secret"))
		rec := httptest.NewRecorder()
		redirect.ServeHTTP(rec, req)
		if rec.Code != tt.status || rec.Header().Get("Location") != tt.location {
			t.Errorf("%s %s: %d %q", tt.method, tt.target, rec.Code, rec.Header().Get("Location"))
		}
	}
}
