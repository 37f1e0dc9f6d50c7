// Package enrol enrols a gateway with a trackgate cloud and keeps its
// credentials. Enrolment is the OAuth 2.0 device authorization grant
// (RFC 8628) as the public client "gateway": the gateway shows a code, its
// owner approves it on the cloud's website, and the gateway keeps the
// grant's refresh token in its data directory (enrolment.json, mode 0600).
// A Store then turns that refresh token into access tokens: a broker token
// (scope "gateway") to publish its devices' positions, and API tokens to
// register those devices.
//
// The gateway meets the cloud only over HTTP: nothing here imports the
// cloud's packages.
package enrol

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"trackgate/internal/atomicfile"
)

// clientID is the gateway's OAuth client id at every trackgate cloud.
const clientID = "gateway"

// grantScope is what enrolment asks for: the API scopes to register
// devices and read revocations, and the broker scope of a gateway.
const grantScope = "devices:read devices:write revocations:read gateway"

// File is the enrolment's file in the data directory.
const File = "enrolment.json"

// userPrefix starts the subject of a person's tokens.
const userPrefix = "usr:"

// ErrNotEnrolled means the data directory holds no enrolment.
var ErrNotEnrolled = errors.New("this gateway is not enrolled with a cloud: run `gateway enroll --cloud URL`")

// ErrRevoked means the cloud refused the enrolment's refresh token
// (invalid_grant): the enrolment was revoked or has expired. Token wraps it
// with the cloud's description and the hint to enrol again.
var ErrRevoked = errors.New("the cloud refused this gateway's enrolment (revoked or expired)")

// defaultClient is the HTTP client used when none is given.
var defaultClient = &http.Client{Timeout: 30 * time.Second}

// record is the enrolment as saved in the data directory.
type record struct {
	Cloud              string    `json:"cloud"`
	Issuer             string    `json:"issuer"`
	TokenEndpoint      string    `json:"token_endpoint"`
	RevocationEndpoint string    `json:"revocation_endpoint"`
	ClientID           string    `json:"client_id"`
	Owner              string    `json:"owner"`
	RefreshToken       string    `json:"refresh_token"`
	EnrolledAt         time.Time `json:"enrolled_at"`
}

// metadata is the part of the cloud's discovery document enrolment uses.
type metadata struct {
	Issuer             string `json:"issuer"`
	TokenEndpoint      string `json:"token_endpoint"`
	DeviceEndpoint     string `json:"device_authorization_endpoint"`
	RevocationEndpoint string `json:"revocation_endpoint"`
}

// Enroll runs the device grant against the cloud at base URL cloud. It
// reads the cloud's discovery document, asks for a device code, writes to
// out the verification URL (the complete one too) and the user code for
// the owner to approve on the cloud's website, and polls until the owner
// does (at the interval the cloud asks, slower when told to slow down;
// ctx ending stops it). It then saves the enrolment in dataDir, made with
// mode 0700 when missing, and returns its Store. A previous enrolment
// there is replaced. The owner is the user the first access token is for.
//
// The cloud must be https, or http on a loopback host (127.0.0.0/8, ::1,
// localhost). hc makes the requests; nil means a client with a 30 s timeout.
func Enroll(ctx context.Context, cloud, dataDir string, out io.Writer, hc *http.Client) (*Store, error) {
	if hc == nil {
		hc = defaultClient
	}
	cloud = strings.TrimRight(cloud, "/")
	if err := checkURL(cloud); err != nil {
		return nil, fmt.Errorf("cloud: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	m, err := discover(ctx, cloud, hc)
	if err != nil {
		return nil, err
	}
	cfg := &oauth2.Config{ClientID: clientID, Endpoint: oauth2.Endpoint{TokenURL: m.TokenEndpoint,
		DeviceAuthURL: m.DeviceEndpoint, AuthStyle: oauth2.AuthStyleInParams}}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, hc)
	da, err := cfg.DeviceAuth(ctx, oauth2.SetAuthURLParam("scope", grantScope))
	if err != nil {
		return nil, fmt.Errorf("start the enrolment: %w", err)
	}
	fmt.Fprintf(out, "To enrol this gateway, sign in to the cloud at\n\n  %s\n\nand enter the code  %s\n", da.VerificationURI, da.UserCode)
	if da.VerificationURIComplete != "" {
		fmt.Fprintf(out, "(or open %s)\n", da.VerificationURIComplete)
	}
	fmt.Fprintln(out, "Waiting for the approval…")
	tok, err := cfg.DeviceAccessToken(ctx, da)
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			switch re.ErrorCode {
			case "access_denied":
				return nil, errors.New("the enrolment was refused on the cloud's website")
			case "expired_token":
				return nil, errors.New("the code expired before it was approved: run `gateway enroll` again")
			}
		}
		return nil, fmt.Errorf("enrolment: %w", err)
	}
	if tok.RefreshToken == "" {
		return nil, errors.New("enrolment: the cloud gave no refresh token")
	}
	owner, err := subjectUser(tok.AccessToken)
	if err != nil {
		return nil, fmt.Errorf("enrolment: the access token: %w", err)
	}
	s := newStore(filepath.Join(dataDir, File), hc, record{Cloud: cloud, Issuer: m.Issuer,
		TokenEndpoint: m.TokenEndpoint, RevocationEndpoint: m.RevocationEndpoint, ClientID: clientID,
		Owner: owner, RefreshToken: tok.RefreshToken, EnrolledAt: time.Now().UTC().Truncate(time.Second)})
	if err := s.save(); err != nil {
		return nil, fmt.Errorf("enrolled, but: %w", err)
	}
	return s, nil
}

// Open loads the enrolment saved in dataDir: ErrNotEnrolled when there is
// none. A file that its group or others may access is refused: its tokens
// may have leaked. hc makes the Store's requests; nil means a client with
// a 30 s timeout.
func Open(dataDir string, hc *http.Client) (*Store, error) {
	if hc == nil {
		hc = defaultClient
	}
	path := filepath.Join(dataDir, File)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", dataDir, ErrNotEnrolled)
	}
	if err != nil {
		return nil, fmt.Errorf("enrolment: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("enrolment: %w", err)
	}
	if mode := fi.Mode().Perm(); mode&0o077 != 0 {
		return nil, fmt.Errorf("%s has mode %04o, so others may have read its tokens: run chmod 600 %s, and as they may have leaked, enrol again with `gateway enroll`", path, mode, path)
	}
	var rec record
	if err := json.NewDecoder(io.LimitReader(f, 1<<20)).Decode(&rec); err != nil {
		return nil, fmt.Errorf("enrolment %s: %w", path, err)
	}
	if rec.Cloud == "" || rec.TokenEndpoint == "" || rec.ClientID == "" || rec.Owner == "" || rec.RefreshToken == "" {
		return nil, fmt.Errorf("enrolment %s is incomplete: run `gateway enroll` again", path)
	}
	return newStore(path, hc, rec), nil
}

// checkURL checks that u is an http(s) URL with a host, and https unless
// the host is a loopback one.
func checkURL(u string) error {
	p, err := url.Parse(u)
	if err != nil {
		return err
	}
	if p.Host == "" || (p.Scheme != "https" && p.Scheme != "http") {
		return fmt.Errorf("%q: want https://HOST[:PORT]", u)
	}
	if p.Scheme == "http" && !loopback(p.Hostname()) {
		return fmt.Errorf("%q: the cloud must be reached over https (plain http only on 127.0.0.1, ::1 or localhost)", u)
	}
	return nil
}

// loopback reports whether host is localhost or a loopback address.
func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// discover reads the cloud's OAuth metadata and checks that it is the cloud
// asked for and that its endpoints are as safe to reach as it is.
func discover(ctx context.Context, cloud string, hc *http.Client) (*metadata, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", cloud+"/.well-known/openid-configuration", nil)
	if err != nil {
		return nil, fmt.Errorf("cloud %q: %w", cloud, err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reach the cloud: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s is not a trackgate cloud: its discovery document answers %s", cloud, resp.Status)
	}
	var m metadata
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&m); err != nil {
		return nil, fmt.Errorf("%s: discovery document: %w", cloud, err)
	}
	if strings.TrimRight(m.Issuer, "/") != cloud {
		return nil, fmt.Errorf("%s names itself %q: use --cloud %s", cloud, m.Issuer, strings.TrimRight(m.Issuer, "/"))
	}
	if m.TokenEndpoint == "" || m.DeviceEndpoint == "" {
		return nil, fmt.Errorf("%s: the discovery document lacks the token or device authorization endpoint", cloud)
	}
	for _, e := range []string{m.TokenEndpoint, m.DeviceEndpoint, m.RevocationEndpoint} {
		if e == "" {
			continue
		}
		if err := checkURL(e); err != nil {
			return nil, fmt.Errorf("%s: discovery document: endpoint %w", cloud, err)
		}
	}
	return &m, nil
}

// subjectUser returns the user name in the sub claim ("usr:NAME") of a JWT
// access token. The token is not verified: it came straight from the token
// endpoint, over the connection the gateway chose.
func subjectUser(jwt string) (string, error) {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return "", errors.New("not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", fmt.Errorf("payload: %w", err)
	}
	var c struct {
		Sub string `json:"sub"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return "", fmt.Errorf("payload: %w", err)
	}
	name, ok := strings.CutPrefix(c.Sub, userPrefix)
	if !ok || name == "" {
		return "", fmt.Errorf("subject %q is not a user", c.Sub)
	}
	return name, nil
}

// save writes the enrolment to its file (mode 0600), replacing it whole.
func (s *Store) save() error {
	b, err := json.MarshalIndent(s.rec, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(s.path, append(b, '\n')); err != nil {
		return fmt.Errorf("save the enrolment: %w", err)
	}
	return nil
}
