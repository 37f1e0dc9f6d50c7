package auth

import (
	"embed"
	"html/template"
	"net/http"
	"net/url"
	"strings"
)

//go:embed pages/*.html
var pageFiles embed.FS

var pages = template.Must(template.ParseFS(pageFiles, "pages/*.html"))

// pageData is what every page template gets.
type pageData struct {
	Title    string
	Error    string // shown above the form
	Message  string // the body of a message page
	CSRF     string
	ReturnTo string
	User     string // the signed-in user, if any
	Name     string // the user name typed so far (sign-in)
	Prompt   string
	// The device verification page.
	UserCode string
	Client   string
	Scopes   []string
}

// pageHeaders are the headers of every page the server renders: no
// framing, no third-party anything, no caching, no Referer to leak a code.
func pageHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
}

// render writes page name with status.
func (s *Server) render(w http.ResponseWriter, status int, name string, d pageData) {
	pageHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := pages.ExecuteTemplate(w, name+".html", d); err != nil {
		s.log.Error("render page", "page", name, "err", err)
	}
}

// errorPage shows an error that must not be sent back to a client (an
// unknown client, a redirect URI that does not match).
func (s *Server) errorPage(w http.ResponseWriter, status int, msg string) {
	s.render(w, status, "message", pageData{Title: "Sign-in error", Error: msg})
}

// failMessage is what a page shows when something of ours failed.
const failMessage = "Something went wrong; try again."

// failPage logs a failure of ours and shows failMessage.
func (s *Server) failPage(w http.ResponseWriter, what string, err error) {
	s.log.Error(what, "err", err)
	s.errorPage(w, http.StatusInternalServerError, failMessage)
}

// safeReturn reports whether v is a path on this server to return to after
// signing in: relative, and not a scheme-relative //host or /\host.
func safeReturn(v string) bool {
	if !strings.HasPrefix(v, "/") || strings.HasPrefix(v, "//") || strings.HasPrefix(v, "/\\") || strings.ContainsAny(v, "\r\n\x00") {
		return false
	}
	u, err := url.Parse(v)
	return err == nil && u.Scheme == "" && u.Host == "" && u.User == nil
}
