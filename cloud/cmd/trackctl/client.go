package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"trackgate/cloud/credentials"
)

// client calls a cloud's API with the profile's tokens.
type client struct {
	server  string
	profile string // the profile's name
	hc      *http.Client
}

// apiError is an API call answered with an error (an RFC 9457 problem).
type apiError struct {
	Status int
	Code   string
	Detail string
	Title  string
	hint   string
}

func (e *apiError) Error() string {
	msg := e.Detail
	if msg == "" {
		msg = e.Title
	}
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	if e.hint != "" {
		msg += " (" + e.hint + ")"
	}
	return msg
}

// client returns an API client for the chosen profile.
func (e *env) client() (*client, error) {
	st := credentials.Open(e.creds)
	name, p, err := st.Profile(e.profile)
	if err != nil {
		return nil, err
	}
	base := &http.Client{Timeout: 60 * time.Second}
	hc := &http.Client{Transport: &oauth2.Transport{Source: st.TokenSource(context.WithoutCancel(e.ctx), name, base), Base: http.DefaultTransport}}
	return &client{server: strings.TrimRight(p.Server, "/"), profile: name, hc: hc}, nil
}

// call sends a request with an optional JSON body and decodes a JSON
// answer into out (when not nil). An error answer is an *apiError.
func (c *client) call(ctx context.Context, method, path string, q url.Values, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	resp, err := c.send(ctx, method, path, q, rd, "application/json", -1)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	return nil
}

// send sends a request and returns a successful response (2xx); an error
// answer becomes an *apiError.
func (c *client) send(ctx context.Context, method, path string, q url.Values, body io.Reader, contentType string, length int64) (*http.Response, error) {
	u := c.server + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", contentType)
		if length >= 0 {
			req.ContentLength = length
		}
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) && ue.Err != nil {
			err = ue.Err // the token source's own error, or the network's
		}
		if errors.Is(err, credentials.ErrSignInAgain) || errors.Is(err, credentials.ErrNotSignedIn) || errors.Is(err, credentials.ErrInsecure) {
			return nil, err
		}
		return nil, fmt.Errorf("%s %s: %w", method, c.server, err)
	}
	if resp.StatusCode < 300 {
		return resp, nil
	}
	defer resp.Body.Close()
	ae := &apiError{Status: resp.StatusCode}
	var p struct {
		Code   string `json:"code"`
		Title  string `json:"title"`
		Detail string `json:"detail"`
	}
	if json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&p) == nil {
		ae.Code, ae.Title, ae.Detail = p.Code, p.Title, p.Detail
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		ae.hint = "sign in again: " + c.loginCommand()
	case http.StatusForbidden:
		if ae.Code == "insufficient_scope" {
			ae.hint = "this sign-in may not do that; sign in again: " + c.loginCommand()
		}
	case http.StatusServiceUnavailable:
		ae.hint = "the server could not reach its store; try again shortly"
	}
	return nil, ae
}

func (c *client) loginCommand() string {
	cmd := "trackctl login --server " + c.server
	if c.profile != defaultProfile {
		cmd += " --profile " + c.profile
	}
	return cmd
}
