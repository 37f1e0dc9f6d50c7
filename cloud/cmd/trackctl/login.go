package main

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cli/browser"
	"golang.org/x/oauth2"

	"trackgate/cloud/credentials"
	"trackgate/internal/config"
)

// clientID is trackctl's OAuth client id at every trackgate cloud.
const clientID = "trackctl"

// defaultProfile is the profile login makes when none is named.
const defaultProfile = "default"

// scopes are what trackctl asks for.
var scopes = []string{"openid", "tracks:read", "tracks:write", "devices:read", "devices:write"}

var loginFlags struct {
	server    string
	device    bool
	noBrowser bool
	timeout   time.Duration
}

var loginCommand = command{name: "login", usage: "[--server URL] [--device] [--no-browser]",
	flags: func(fs *flag.FlagSet) {
		fs.StringVar(&loginFlags.server, "server", "", "the cloud's `URL` (default: the profile's, else http://127.0.0.1:8080)")
		fs.BoolVar(&loginFlags.device, "device", false, "sign in with a code entered on another device (no browser here)")
		fs.BoolVar(&loginFlags.noBrowser, "no-browser", false, "print the sign-in URL instead of opening a browser")
		fs.DurationVar(&loginFlags.timeout, "timeout", 10*time.Minute, "how long to wait for the sign-in")
	},
	run: login}

// metadata is the part of the server's discovery document trackctl uses.
type metadata struct {
	Issuer                string `json:"issuer"`
	AuthorizationEndpoint string `json:"authorization_endpoint"`
	TokenEndpoint         string `json:"token_endpoint"`
	DeviceEndpoint        string `json:"device_authorization_endpoint"`
	RevocationEndpoint    string `json:"revocation_endpoint"`
	IssParameterSupported bool   `json:"authorization_response_iss_parameter_supported"`
}

// discover reads the server's OAuth metadata and checks that it is the
// server asked for.
func discover(ctx context.Context, server string) (*metadata, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", server+"/.well-known/openid-configuration", nil)
	if err != nil {
		return nil, config.Usagef("--server %q: %v", server, err)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("reach %s: %w (is --server right?)", server, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s is not a trackgate cloud: its discovery document answers %s", server, resp.Status)
	}
	var m metadata
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&m); err != nil {
		return nil, fmt.Errorf("%s: discovery document: %w", server, err)
	}
	if strings.TrimRight(m.Issuer, "/") != server {
		return nil, fmt.Errorf("%s names itself %q: use --server %s", server, m.Issuer, m.Issuer)
	}
	if m.TokenEndpoint == "" || m.AuthorizationEndpoint == "" {
		return nil, fmt.Errorf("%s: discovery document lacks its endpoints", server)
	}
	return &m, nil
}

func (m *metadata) oauth2Config(redirect string) *oauth2.Config {
	return &oauth2.Config{ClientID: clientID, Scopes: scopes, RedirectURL: redirect,
		Endpoint: oauth2.Endpoint{AuthURL: m.AuthorizationEndpoint, TokenURL: m.TokenEndpoint,
			DeviceAuthURL: m.DeviceEndpoint, AuthStyle: oauth2.AuthStyleInParams}}
}

func login(e *env, args []string) error {
	if err := needArgs(args, 0, 0, "no arguments"); err != nil {
		return err
	}
	name := e.profile
	st := credentials.Open(e.creds)
	server := loginFlags.server
	if server == "" {
		if _, p, err := st.Profile(name); err == nil {
			server = p.Server
		} else {
			server = "http://127.0.0.1:8080"
		}
	}
	server = strings.TrimRight(server, "/")
	if u, err := url.Parse(server); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return config.Usagef("--server %q: want http(s)://HOST[:PORT]", server)
	}
	ctx, cancel := context.WithTimeout(e.ctx, loginFlags.timeout)
	defer cancel()
	m, err := discover(ctx, server)
	if err != nil {
		return err
	}
	var tok *oauth2.Token
	if loginFlags.device {
		tok, err = deviceLogin(ctx, e, m)
	} else {
		tok, err = browserLogin(ctx, e, m)
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("no sign-in within %s: run trackctl login again", loginFlags.timeout)
		}
		return err
	}
	p := &credentials.Profile{Server: server, ClientID: clientID, TokenURL: m.TokenEndpoint, RevokeURL: m.RevocationEndpoint,
		AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, TokenType: tok.TokenType, Expiry: tok.Expiry}
	if s, ok := tok.Extra("scope").(string); ok {
		p.Scope = s
	}
	if name == "" {
		name = defaultProfile
	}
	var who struct {
		Name string `json:"name"`
	}
	c := &client{server: server, profile: name, hc: oauth2.NewClient(ctx, oauth2.StaticTokenSource(tok))}
	if err := c.call(ctx, "GET", "/api/v1/account", nil, nil, &who); err != nil {
		return fmt.Errorf("signed in, but the account could not be read: %w", err)
	}
	p.User = who.Name
	if err := st.Put(name, p, e.profile == ""); err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "Signed in to %s as %s (profile %q; tokens in %s).\n", server, who.Name, name, st.Path())
	return nil
}

// randomString returns n random bytes, base64url.
func randomString(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// browserLogin runs the authorization code flow with PKCE: the browser
// signs in at the server, which redirects to a listener on a random
// loopback port; the listener takes one request, checks its state and
// issuer, and stops.
func browserLogin(ctx context.Context, e *env, m *metadata) (*oauth2.Token, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for the sign-in redirect: %w", err)
	}
	defer ln.Close()
	redirect := fmt.Sprintf("http://%s/callback", ln.Addr())
	cfg := m.oauth2Config(redirect)
	state, verifier := randomString(24), oauth2.GenerateVerifier()
	authURL := cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier))

	type result struct {
		code string
		err  error
	}
	done := make(chan result, 1)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/callback" {
			http.NotFound(w, r)
			return
		}
		q := r.URL.Query()
		res := result{code: q.Get("code")}
		switch {
		case subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(state)) != 1:
			res.err = errors.New("the sign-in answer's state does not match this sign-in (another tab or a forged redirect): run trackctl login again")
		case (m.IssParameterSupported || q.Has("iss")) && q.Get("iss") != m.Issuer:
			res.err = fmt.Errorf("the sign-in answer comes from issuer %q, not %q: run trackctl login again", q.Get("iss"), m.Issuer)
		case q.Has("error"):
			res.err = fmt.Errorf("sign-in refused: %s %s", q.Get("error"), q.Get("error_description"))
		case res.code == "":
			res.err = errors.New("the sign-in answer has no code")
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		msg := "Signed in. You can close this tab and go back to the terminal."
		if res.err != nil {
			w.WriteHeader(http.StatusBadRequest)
			msg = "Sign-in failed: " + res.err.Error()
		}
		fmt.Fprintf(w, "<!doctype html><title>trackctl</title><p>%s</p>\n", html.EscapeString(msg))
		select {
		case done <- res:
		default:
		}
	})}
	go srv.Serve(ln)
	defer srv.Close()

	fmt.Fprintf(e.stderr, "To sign in, open this page in a browser:\n\n  %s\n\n", authURL)
	if !loginFlags.noBrowser {
		browser.Stdout, browser.Stderr = io.Discard, io.Discard
		if err := browser.OpenURL(authURL); err == nil {
			fmt.Fprintln(e.stderr, "(opened in your browser; waiting for the sign-in)")
		}
	}
	var res result
	select {
	case res = <-done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	// The answer to the browser is written before the listener stops.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	srv.Shutdown(sctx)
	cancel()
	if res.err != nil {
		return nil, res.err
	}
	tok, err := cfg.Exchange(ctx, res.code, oauth2.VerifierOption(verifier))
	if err != nil {
		return nil, fmt.Errorf("exchange the sign-in code: %w", err)
	}
	return tok, nil
}

// deviceLogin runs the device authorization grant: the user enters a code
// on the server's page from any device while trackctl polls.
func deviceLogin(ctx context.Context, e *env, m *metadata) (*oauth2.Token, error) {
	if m.DeviceEndpoint == "" {
		return nil, errors.New("the server does not offer sign-in with a code; sign in with a browser (without --device)")
	}
	cfg := m.oauth2Config("")
	da, err := cfg.DeviceAuth(ctx)
	if err != nil {
		return nil, fmt.Errorf("start the sign-in: %w", err)
	}
	fmt.Fprintf(e.stderr, "To sign in, visit\n\n  %s\n\nand enter the code  %s\n", da.VerificationURI, da.UserCode)
	if da.VerificationURIComplete != "" {
		fmt.Fprintf(e.stderr, "(or open %s)\n", da.VerificationURIComplete)
	}
	fmt.Fprintln(e.stderr, "Waiting for the sign-in…")
	tok, err := cfg.DeviceAccessToken(ctx, da)
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			switch re.ErrorCode {
			case "access_denied":
				return nil, errors.New("the sign-in was refused on the server's page")
			case "expired_token":
				return nil, errors.New("the code expired before it was entered: run trackctl login --device again")
			}
		}
		return nil, fmt.Errorf("sign-in: %w", err)
	}
	return tok, nil
}

var logoutCommand = command{name: "logout", usage: "", run: logout}

// logout revokes the profile's refresh token at the server (ending the
// sign-in) and deletes it from the credentials file.
func logout(e *env, args []string) error {
	if err := needArgs(args, 0, 0, "no arguments"); err != nil {
		return err
	}
	st := credentials.Open(e.creds)
	name, _, err := st.Profile(e.profile)
	if err != nil {
		return err
	}
	p, err := st.Remove(name)
	if err != nil {
		return err
	}
	var revokeErr error
	for _, t := range []struct{ tok, hint string }{{p.RefreshToken, "refresh_token"}, {p.AccessToken, "access_token"}} {
		if t.tok != "" && p.RevokeURL != "" && revokeErr == nil {
			revokeErr = revoke(e.ctx, p.RevokeURL, t.tok, t.hint)
		}
	}
	if revokeErr != nil {
		return fmt.Errorf("signed out here, but %s could not be told (%w): the sign-in stays valid on the server until it expires", p.Server, revokeErr)
	}
	fmt.Fprintf(e.stderr, "Signed out of %s (profile %q).\n", p.Server, name)
	return nil
}

// revoke revokes a token (RFC 7009).
func revoke(ctx context.Context, endpoint, tok, hint string) error {
	form := url.Values{"token": {tok}, "token_type_hint": {hint}, "client_id": {clientID}}
	req, err := http.NewRequestWithContext(ctx, "POST", endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("revocation answered %s", resp.Status)
	}
	return nil
}

var whoamiCommand = command{name: "whoami", usage: "", run: whoami}

func whoami(e *env, args []string) error {
	c, err := e.connect(args, 0, 0, "no arguments")
	if err != nil {
		return err
	}
	var acct struct {
		Name string `json:"name"`
		TOTP bool   `json:"totp"`
	}
	if err := c.call(e.ctx, "GET", "/api/v1/account", nil, nil, &acct); err != nil {
		return err
	}
	if e.json {
		return printJSON(e.stdout, map[string]any{"user": acct.Name, "server": c.server, "profile": c.profile, "totp": acct.TOTP})
	}
	twoFactor := "off"
	if acct.TOTP {
		twoFactor = "on"
	}
	fmt.Fprintf(e.stdout, "%s on %s (profile %s, two-factor %s)\n", acct.Name, c.server, c.profile, twoFactor)
	return nil
}
