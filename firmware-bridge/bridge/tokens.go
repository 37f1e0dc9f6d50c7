package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"trackgate/internal/atomicfile"
)

// Token kinds: the bridge holds one token for each audience.
const (
	tokenMQTT = "mqtt" // scope bridge: publish the devices' positions
	tokenAPI  = "api"  // scope devices:resolve: look devices up
)

// tokenScopes are the scopes asked for each kind of token.
var tokenScopes = map[string][]string{tokenMQTT: {"bridge"}, tokenAPI: {"devices:resolve"}}

// storedToken is an access token as the token file keeps it.
type storedToken struct {
	AccessToken string    `json:"access_token"`
	Expiry      time.Time `json:"expiry"`
	Obtained    time.Time `json:"obtained"`
}

// fresh reports whether t can still be used at now: it has more than a
// fifth of its lifetime, or two minutes, left.
func (t storedToken) fresh(now time.Time) bool {
	if t.AccessToken == "" {
		return false
	}
	margin := min(2*time.Minute, t.Expiry.Sub(t.Obtained)/5)
	return now.Add(margin).Before(t.Expiry)
}

// ErrCredentials is a refusal of the bridge's own credentials by the
// cloud: a wrong client id or secret, or a client without the bridge's
// scopes.
var ErrCredentials = errors.New("the cloud refused the bridge's client credentials")

// tokens gets the bridge's access tokens with the client credentials grant
// (no refresh token: a new one is asked for before the old one runs out)
// and keeps them in a file of mode 0600, so that a restart does not ask
// again.
type tokens struct {
	file string
	log  *slog.Logger
	cfgs map[string]*clientcredentials.Config
	now  func() time.Time

	mu     sync.Mutex // guards stored; held while a token is fetched
	stored map[string]storedToken
}

func newTokens(cloud, clientID, secret, file string, log *slog.Logger) *tokens {
	t := &tokens{file: file, log: log, now: time.Now, cfgs: map[string]*clientcredentials.Config{}}
	for kind, scopes := range tokenScopes {
		t.cfgs[kind] = &clientcredentials.Config{ClientID: clientID, ClientSecret: secret,
			TokenURL: strings.TrimSuffix(cloud, "/") + "/token", Scopes: scopes, AuthStyle: oauth2.AuthStyleInHeader}
	}
	return t
}

// load reads the token file. A file others may read is not trusted (its
// tokens may have leaked; they are replaced), nor is a malformed one.
func (t *tokens) load() {
	t.stored = map[string]storedToken{}
	fi, err := os.Stat(t.file)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err == nil && fi.Mode().Perm()&0o077 != 0 {
		t.log.Warn("token file is readable by others: ignoring it and replacing its tokens", "file", t.file, "mode", fi.Mode().Perm().String())
		return
	}
	data, err := os.ReadFile(t.file)
	if err == nil {
		err = json.Unmarshal(data, &t.stored)
	}
	if err != nil {
		t.log.Warn("token file unreadable: asking for new tokens", "file", t.file, "err", err)
		t.stored = map[string]storedToken{}
	}
}

// token returns a usable access token of kind, asking the cloud for a new
// one when the stored one has less than its margin left.
func (t *tokens) token(ctx context.Context, kind string) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stored == nil {
		t.load()
	}
	now := t.now()
	if st := t.stored[kind]; st.fresh(now) {
		return st.AccessToken, nil
	}
	tok, err := t.cfgs[kind].Token(ctx)
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && (re.ErrorCode == "invalid_client" || re.ErrorCode == "unauthorized_client" || re.ErrorCode == "invalid_scope") {
			return "", fmt.Errorf("%w: %s %s", ErrCredentials, re.ErrorCode, re.ErrorDescription)
		}
		return "", fmt.Errorf("%s token: %w", kind, err)
	}
	t.stored[kind] = storedToken{AccessToken: tok.AccessToken, Expiry: tok.Expiry, Obtained: now}
	data, err := json.MarshalIndent(t.stored, "", "  ")
	if err == nil {
		err = atomicfile.Write(t.file, data)
	}
	if err != nil {
		t.log.Warn("could not keep the tokens", "file", t.file, "err", err)
	}
	t.log.Debug("new access token", "kind", kind, "expiry", tok.Expiry)
	return tok.AccessToken, nil
}

// drop forgets the stored token of kind, so that the next call asks for a
// new one.
func (t *tokens) drop(kind string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.stored, kind)
}
