package broker

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"golang.org/x/time/rate"

	"trackgate/internal/token"
)

// Verifier checks the token a client presents as its CONNECT password.
// *token.Verifier is one.
type Verifier interface {
	Verify(ctx context.Context, raw string) (*token.Claims, error)
}

// ErrVerifierUnavailable is what a Verifier returns while it cannot verify
// anything yet (no signing keys fetched or cached): clients are told the
// server is unavailable, not that their credentials are bad.
var ErrVerifierUnavailable = token.ErrNotReady

// verifyTimeout bounds a CONNECT's token verification, an unknown key's
// JWKS fetch included.
const verifyTimeout = 5 * time.Second

// Reasons a connection is refused, as the refusal counter labels them.
const (
	refuseNoToken     = "no_token"
	refuseToken       = "invalid_token"
	refuseRevoked     = "revoked"
	refuseUsername    = "username"
	refuseClientID    = "client_id"
	refuseScope       = "scope"
	refuseWill        = "will_topic"
	refuseUnavailable = "unavailable"
)

// connectRefusals are the refusal reasons, for metrics that want every label.
var connectRefusals = []string{refuseNoToken, refuseToken, refuseRevoked, refuseUsername, refuseClientID, refuseScope, refuseWill, refuseUnavailable}

// authHook authenticates every CONNECT with a signed token, checks every
// publish and subscription against the rights the token grants, disconnects
// a session when its token expires or is revoked, and validates payloads.
type authHook struct {
	mqtt.HookBase
	srv      *mqtt.Server
	verifier Verifier
	log      *slog.Logger
	m        *metrics
	logLimit *rate.Limiter // denial logs; every denial is counted
	// refreshRevocations, if set, fetches the revocation list now: a
	// service published on topic.Revocations.
	refreshRevocations func()

	clients sync.Map // *mqtt.Client → *session

	mu    sync.Mutex
	byJTI map[string]map[*mqtt.Client]struct{} // live sessions by token id, for revocation
}

// session is the auth state of one connected client.
type session struct {
	*principal
	expiry *time.Timer
}

var _ mqtt.Hook = (*authHook)(nil)

func newAuthHook(srv *mqtt.Server, v Verifier, log *slog.Logger, m *metrics) *authHook {
	return &authHook{srv: srv, verifier: v, log: log, m: m,
		logLimit: rate.NewLimiter(10, 20), byJTI: map[string]map[*mqtt.Client]struct{}{}}
}

// ID names the hook.
func (h *authHook) ID() string { return "token-auth" }

// Provides says which events the hook handles.
func (h *authHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnDisconnect, mqtt.OnPublish, mqtt.OnWill:
		return true
	}
	return false
}

// refusal is a CONNECT refused: the reason codes for MQTT 5 and 3.1.1, and
// the counter's label.
type refusal struct {
	v5, v3 byte
	label  string
	detail string
}

func (r *refusal) Error() string { return "connection refused: " + r.label + ": " + r.detail }

// badCredentials and notAuthorized build the two refusals of a token
// check: 0x86 / return code 4, and 0x87 / return code 5.
func badCredentials(label, detail string) *refusal {
	return &refusal{v5: packets.ErrBadUsernameOrPassword.Code, v3: 4, label: label, detail: detail}
}

func notAuthorized(label, detail string) *refusal {
	return &refusal{v5: packets.ErrNotAuthorized.Code, v3: 5, label: label, detail: detail}
}

// OnConnect verifies the client's token and binds the session to its
// subject. A refused client gets a CONNACK with the refusal's code and is
// disconnected.
func (h *authHook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	if cl.Net.Inline {
		return nil
	}
	p, r := h.authenticate(cl, pk)
	if r != nil {
		h.m.connectRefused.WithLabelValues(r.label).Inc()
		if h.logLimit.Allow() {
			h.log.Info("mqtt connection refused", "reason", r.label, "detail", r.detail,
				"client", cl.ID, "username", string(pk.Connect.Username), "remote", cl.Net.Remote, "listener", cl.Net.Listener)
		}
		code := r.v5
		if cl.Properties.ProtocolVersion < 5 {
			code = r.v3
		}
		ack := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, ReasonCode: code}
		if cl.Properties.ProtocolVersion == 5 {
			ack.Properties.ReasonString = r.detail
		}
		_ = cl.WritePacket(ack)
		return r
	}
	s := &session{principal: p}
	h.clients.Store(cl, s)
	h.mu.Lock()
	if h.byJTI[p.jti] == nil {
		h.byJTI[p.jti] = map[*mqtt.Client]struct{}{}
	}
	h.byJTI[p.jti][cl] = struct{}{}
	h.mu.Unlock()
	s.expiry = time.AfterFunc(time.Until(p.exp), func() {
		h.m.kicked.WithLabelValues("expired").Inc()
		h.log.Info("mqtt session ended: its token expired", "client", cl.ID, "sub", p.sub)
		_ = h.srv.DisconnectClient(cl, packets.ErrMaxConnectTime)
	})
	return nil
}

// authenticate checks a CONNECT's credentials and returns the principal, or
// why it is refused.
func (h *authHook) authenticate(cl *mqtt.Client, pk packets.Packet) (*principal, *refusal) {
	if h.verifier == nil {
		return nil, &refusal{v5: packets.ErrServerUnavailable.Code, v3: 3, label: refuseUnavailable, detail: "no token verifier"}
	}
	if len(pk.Connect.Password) == 0 {
		return nil, badCredentials(refuseNoToken, "no token in the password field")
	}
	ctx, cancel := context.WithTimeout(context.Background(), verifyTimeout)
	defer cancel()
	c, err := h.verifier.Verify(ctx, string(pk.Connect.Password))
	switch {
	case errors.Is(err, ErrVerifierUnavailable):
		return nil, &refusal{v5: packets.ErrServerUnavailable.Code, v3: 3, label: refuseUnavailable, detail: err.Error()}
	case errors.Is(err, token.ErrRevoked):
		return nil, notAuthorized(refuseRevoked, err.Error())
	case err != nil:
		return nil, badCredentials(refuseToken, err.Error())
	}
	if !c.ExpiresAt.After(time.Now()) {
		return nil, badCredentials(refuseToken, "token expired")
	}
	if u := string(pk.Connect.Username); u != "" && u != c.Subject {
		return nil, badCredentials(refuseUsername, "user name "+u+" is not the token's subject "+c.Subject)
	}
	p := newPrincipal(c)
	if p == nil {
		return nil, notAuthorized(refuseScope, "the token grants nothing on the broker (scope "+c.Scope+")")
	}
	p.exp = c.ExpiresAt.Time
	if pk.Connect.ClientIdentifier == "" {
		// The broker made an id up: make it the subject's.
		cl.ID = p.sub + "/" + cl.ID
		if cl.Properties.ProtocolVersion == 5 {
			cl.Properties.Props.AssignedClientID = cl.ID
		}
	}
	if !clientIDBound(cl.ID, p.sub) {
		return nil, notAuthorized(refuseClientID, "client id "+cl.ID+" is not bound to "+p.sub+" (use "+p.sub+" or "+p.sub+"/…)")
	}
	if w := cl.Properties.Will; w.Flag == 1 {
		if !p.mayPublish(w.TopicName) {
			return nil, notAuthorized(refuseWill, "will topic "+w.TopicName+" not allowed")
		}
		if level, ok := p.ownTracks(w.TopicName); ok && level != "" {
			return nil, notAuthorized(refuseWill, "an OwnTracks will belongs on the location topic, not "+w.TopicName)
		}
		if _, perr := checkPayload(w.TopicName, w.Payload, time.Now()); perr != nil {
			return nil, notAuthorized(refuseWill, "will payload: "+perr.Error())
		}
	}
	return p, nil
}

// OnConnectAuthenticate admits the clients OnConnect verified.
func (h *authHook) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	if cl.Net.Inline {
		return true
	}
	_, ok := h.clients.Load(cl)
	return ok
}

// OnDisconnect forgets the client's session.
func (h *authHook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	h.forget(cl)
}

func (h *authHook) forget(cl *mqtt.Client) {
	v, ok := h.clients.LoadAndDelete(cl)
	if !ok {
		return
	}
	s := v.(*session)
	s.expiry.Stop()
	h.mu.Lock()
	if set := h.byJTI[s.jti]; set != nil {
		delete(set, cl)
		if len(set) == 0 {
			delete(h.byJTI, s.jti)
		}
	}
	h.mu.Unlock()
}

// sweep forgets the sessions of clients that closed without an
// OnDisconnect (their CONNACK could not be written).
func (h *authHook) sweep() {
	h.clients.Range(func(k, _ any) bool {
		if cl := k.(*mqtt.Client); cl.Closed() {
			if cur, ok := h.srv.Clients.Get(cl.ID); !ok || cur != cl {
				h.forget(cl)
			}
		}
		return true
	})
}

// Revoke disconnects at once every session opened with one of the tokens.
func (h *authHook) Revoke(jtis []string) {
	var kick []*mqtt.Client
	h.mu.Lock()
	for _, jti := range jtis {
		for cl := range h.byJTI[jti] {
			kick = append(kick, cl)
		}
	}
	h.mu.Unlock()
	for _, cl := range kick {
		h.m.kicked.WithLabelValues("revoked").Inc()
		h.log.Info("mqtt session ended: its token was revoked", "client", cl.ID)
		_ = h.srv.DisconnectClient(cl, packets.ErrNotAuthorized)
	}
}

// durable reports whether cl's token lets it be a durable subscriber, one
// whose backlog holds publishers back: a service with the ingest or
// operator scope.
func (h *authHook) durable(cl *mqtt.Client) bool {
	v, ok := h.clients.Load(cl)
	return ok && v.(*session).rights&(rightIngest|rightOperator) != 0
}

// OnACLCheck allows a publish or subscription (or the delivery of a message
// to a subscriber) that the client's token grants; the broker's own inline
// client may do anything.
func (h *authHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if cl.Net.Inline {
		return true
	}
	v, ok := h.clients.Load(cl)
	if !ok {
		// An offline persistent session (restored from the store, or whose
		// connection ended): it receives on the subscriptions it was allowed
		// when it made them. Nothing publishes without a connection.
		return !write
	}
	s := v.(*session)
	var allowed bool
	action := "subscribe"
	if write {
		action = "publish"
		allowed = s.mayPublish(topic)
	} else {
		allowed = s.maySubscribe(topic)
	}
	if !allowed {
		h.m.aclDenied.WithLabelValues(action).Inc()
		if h.logLimit.Allow() {
			h.log.Info("mqtt "+action+" denied", "client", cl.ID, "sub", s.sub, "topic", topic)
		}
	}
	return allowed
}
