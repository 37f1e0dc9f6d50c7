// Package web serves the website: the pages (one single-page app, built by
// `make build` from the sources beside this file into dist/ and embedded),
// each behind the website session, and its static assets.
package web

import (
	"bytes"
	"compress/gzip"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"

	"trackgate/cloud/auth"
)

//go:embed all:dist
var dist embed.FS

// Pages are the paths of the website's pages; each is served the app,
// which shows the page the path names.
var Pages = []string{"/{$}", "/tracks", "/tracks/{id}", "/live", "/devices", "/account"}

// configPlaceholder is the text of dist/index.html the page's
// configuration replaces.
const configPlaceholder = "__TG_CONFIG__"

// DefaultTilesURL is the map tiles of OpenStreetMap.
const DefaultTilesURL = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"

// DefaultTilesAttribution credits OpenStreetMap.
const DefaultTilesAttribution = "© OpenStreetMap contributors"

// Config configures the website.
type Config struct {
	// Session checks a page request's website session, redirecting to the
	// sign-in page (and returning false) when there is none.
	Session func(w http.ResponseWriter, r *http.Request) (*auth.WebSession, bool)
	// TilesURL is the map's tile URL template ({z}/{x}/{y}, and {s} for
	// subdomains); empty for no tiles (the tracks draw on a plain
	// background).
	TilesURL, TilesAttribution string
	// MQTT is the broker URL phones connect to (tcp://, mqtts://, ws://
	// or wss://), shown in the OwnTracks settings of a new device.
	MQTT   string
	Logger *slog.Logger
}

// Server serves the website.
type Server struct {
	cfg    Config
	index  []byte           // dist/index.html, nil when the website was not built
	assets map[string]asset // dist/assets, by name
	csp    string
	mqtt   mqttSettings
}

type mqttSettings struct {
	Host      string `json:"host"`
	Port      int    `json:"port"`
	TLS       bool   `json:"tls"`
	WebSocket bool   `json:"ws"`
}

// New checks cfg and reads the embedded build.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg}
	var err error
	if s.mqtt, err = parseMQTT(cfg.MQTT); err != nil {
		return nil, err
	}
	tiles, err := tileSource(cfg.TilesURL)
	if err != nil {
		return nil, err
	}
	s.csp = "default-src 'self'; img-src 'self' data: blob:" + tiles + "; style-src 'self' 'unsafe-inline'; script-src 'self'; " +
		"connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
	if s.index, err = dist.ReadFile("dist/index.html"); err != nil || !bytes.Contains(s.index, []byte(configPlaceholder)) {
		cfg.Logger.Warn("the website is not built into this binary (run make build): its pages answer 503")
		s.index = nil
	}
	if s.assets, err = readAssets(); err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	return s, nil
}

// asset is a file of dist/assets, with its gzip encoding.
type asset struct {
	plain, gzipped []byte
}

// readAssets reads dist/assets and compresses each file once.
func readAssets() (map[string]asset, error) {
	out := map[string]asset{}
	entries, err := dist.ReadDir("dist/assets")
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		b, err := dist.ReadFile("dist/assets/" + e.Name())
		if err != nil {
			return nil, err
		}
		var z bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&z, gzip.BestCompression)
		zw.Write(b)
		if err := zw.Close(); err != nil {
			return nil, err
		}
		out[e.Name()] = asset{plain: b, gzipped: z.Bytes()}
	}
	return out, nil
}

// parseMQTT reads the broker URL phones use.
func parseMQTT(raw string) (mqttSettings, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Hostname() == "" {
		return mqttSettings{}, fmt.Errorf("web: phones' MQTT URL %q: want tcp://HOST:PORT or mqtts://HOST:PORT", raw)
	}
	m := mqttSettings{Host: u.Hostname(), Port: 1883}
	switch u.Scheme {
	case "tcp", "mqtt":
	case "ssl", "tls", "mqtts":
		m.TLS, m.Port = true, 8883
	case "ws":
		m.WebSocket, m.Port = true, 80
	case "wss":
		m.WebSocket, m.TLS, m.Port = true, true, 443
	default:
		return mqttSettings{}, fmt.Errorf("web: phones' MQTT URL %q: scheme tcp, mqtt, ssl, tls, mqtts, ws or wss", raw)
	}
	if p := u.Port(); p != "" {
		if m.Port, err = strconv.Atoi(p); err != nil || m.Port < 1 || m.Port > 65535 {
			return mqttSettings{}, fmt.Errorf("web: phones' MQTT URL %q: bad port", raw)
		}
	}
	return m, nil
}

// tileSource checks a tile URL template and returns the source its images
// come from, for the Content-Security-Policy (" " + origin, with {s}
// subdomains as a wildcard), or "" for none.
func tileSource(tmpl string) (string, error) {
	if tmpl == "" {
		return "", nil
	}
	u, err := url.Parse(strings.ReplaceAll(tmpl, "{s}", "s"))
	if err != nil || u.Scheme != "https" && u.Scheme != "http" || u.Host == "" || strings.ContainsAny(tmpl, " \t\r\n;,'\"") ||
		!strings.Contains(tmpl, "{z}") || !strings.Contains(tmpl, "{x}") || !strings.Contains(tmpl, "{y}") {
		return "", fmt.Errorf("web: tiles URL %q: want an http(s) template with {z}, {x} and {y}", tmpl)
	}
	host := u.Host
	if strings.Contains(tmpl, "{s}.") {
		host = "*." + strings.TrimPrefix(host, "s.")
	}
	return " " + u.Scheme + "://" + host, nil
}

// Mount registers the pages and assets with handle (a ServeMux's Handle,
// say).
func (s *Server) Mount(handle func(pattern string, h http.Handler)) {
	for _, p := range Pages {
		handle("GET "+p, http.HandlerFunc(s.page))
	}
	handle("GET /assets/{file}", http.HandlerFunc(s.serveAsset))
	handle("GET /favicon.ico", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
}

// page serves a page: the app with its configuration, to a signed-in
// person.
func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	if s.index == nil {
		http.Error(w, "The website was not built into this binary: build it with make build.", http.StatusServiceUnavailable)
		return
	}
	ws, ok := s.cfg.Session(w, r)
	if !ok {
		return
	}
	tiles := map[string]string{"url": s.cfg.TilesURL, "attribution": s.cfg.TilesAttribution}
	conf, err := json.Marshal(map[string]any{"user": ws.User, "csrf": ws.CSRF, "tiles": tiles, "mqtt": s.mqtt})
	if err != nil { // cannot happen: plain strings and numbers
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	// json.Marshal escapes <, > and &: the JSON cannot end the script element.
	body := bytes.Replace(s.index, []byte(configPlaceholder), conf, 1)
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", s.csp)
	h.Set("Cache-Control", "no-store")
	// Same-origin: no Referer to the tile server, while the pages' own
	// form posts keep their Origin (with no-referrer browsers send
	// Origin: null, which the CSRF check refuses).
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	w.Write(body)
}

// serveAsset serves a file of dist/assets, gzipped to clients that take
// it. The names hold a hash of the content, so they are cached for good.
func (s *Server) serveAsset(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	a, ok := s.assets[name]
	if !ok {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	if t := mime.TypeByExtension(path.Ext(name)); t != "" {
		h.Set("Content-Type", t)
	}
	h.Set("Cache-Control", "public, max-age=31536000, immutable")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Add("Vary", "Accept-Encoding")
	body := a.plain
	if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		h.Set("Content-Encoding", "gzip")
		body = a.gzipped
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.Write(body)
}
