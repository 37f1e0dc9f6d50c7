// Package uplink forwards the gateway's queued messages (gateway/spool) to
// an upstream MQTT 5 broker: the cloud's, another gateway's, or any MQTT 5
// cluster.
//
// It connects with a token as the password (the user name is the token's
// subject), with a persistent session (Clean Start off, a week's session
// expiry), and publishes at QoS 1. An entry leaves the queue only when the
// upstream broker has acknowledged it with a success code.
//
// Order: entries are spread over lanes by topic, so all of one device's
// positions go through one lane, which has one message in flight at a time:
// a device's positions arrive upstream in the order they were queued. A lane
// sends every position of one device it has waiting as one JSON array (the
// wire contract's batch), up to BatchMax positions or 60 KiB, which is what
// lets a backlog drain at many times the rate it built up.
//
// Refusals: a PUBACK with "quota exceeded" or "server busy" is retried after
// a pause. "Not authorized" (a device the token does not cover) first makes
// the forwarder get a fresh token, since a device registered after the token
// was issued is in the next one; refused again, the entries are moved to
// DIR/refused.jsonl with the reason, counted, and acknowledged. Other
// refusals (an invalid payload or topic) go there at once.
package uplink

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"trackgate/gateway/spool"
	"trackgate/internal/logx"
	"trackgate/internal/topic"
)

// TokenSource gives the password the forwarder connects with. fresh asks
// for a token newer than the last one (the last was refused, or a device
// it did not cover was refused).
type TokenSource func(ctx context.Context, fresh bool) (string, error)

// ErrRevoked, wrapped by a TokenSource's error, says the credentials were
// revoked: forwarding stops until they are replaced.
var ErrRevoked = errors.New("uplink: credentials revoked")

// Config configures a Forwarder.
type Config struct {
	// URL is the upstream broker: mqtt://HOST[:1883] or mqtts://HOST[:8883]
	// (tcp:// and ssl:// or tls:// are taken too).
	URL string
	// Token gives the password; required.
	Token TokenSource
	// ClientID is the MQTT client id; default the token's subject, "/",
	// and the host name (an upstream trackgate broker requires the
	// subject as its prefix).
	ClientID string
	// CAFile, if set, is a PEM file of the certificate authorities that
	// sign the upstream broker's certificate, instead of the system's.
	CAFile string
	// Spool is the queue to forward; required.
	Spool *spool.Spool
	// Dir holds refused.jsonl; default the spool's directory is not known
	// here, so it is required.
	Dir string
	// Lanes is how many messages may be in flight at once (one per lane);
	// default 16.
	Lanes int
	// BatchMax is the most positions sent in one message; default 500.
	BatchMax int
	// Logger receives the forwarder's logs; default slog.Default().
	Logger *slog.Logger
}

// States of the forwarder.
const (
	StateConnecting   = "connecting"
	StateConnected    = "connected"
	StateDisconnected = "disconnected"
	StateRevoked      = "revoked"
	StateUnauthorized = "unauthorized"
	StateStopped      = "stopped"
)

// Forwarder forwards a spool upstream. Create it with New and start it with
// Run.
type Forwarder struct {
	cfg Config
	log *slog.Logger
	url *url.URL
	tls *tls.Config

	mu       sync.Mutex
	state    string
	lastErr  string
	since    time.Time // of the current state
	connects uint64
	lastAck  time.Time
	forcedAt time.Time // last time a refusal asked for a fresh token
	drain    drain
	// appendRate is the rate entries are queued at (smoothed), from
	// lastAppended at lastTick.
	appendRate   float64
	lastAppended uint64
	lastTick     time.Time
	refusedMu    sync.Mutex

	sent      atomic.Uint64 // messages published
	positions atomic.Uint64 // positions acknowledged upstream
	acked     atomic.Uint64 // entries acknowledged upstream
	refused   sync.Map      // reason → *atomic.Uint64, entries refused for good
	retried   atomic.Uint64 // publishes retried after a transient refusal
	rate      rateMeter
}

// New checks cfg and returns a Forwarder. It does no I/O but reading
// CAFile.
func New(cfg Config) (*Forwarder, error) {
	if cfg.Token == nil || cfg.Spool == nil || cfg.Dir == "" {
		return nil, errors.New("uplink: a token source, a spool and a directory are required")
	}
	if cfg.Lanes <= 0 {
		cfg.Lanes = 16
	}
	if cfg.BatchMax <= 0 {
		cfg.BatchMax = 500
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("uplink %q: want mqtt://HOST[:PORT] or mqtts://HOST[:PORT]", cfg.URL)
	}
	f := &Forwarder{cfg: cfg, log: cfg.Logger.With("component", "uplink"), url: u, state: StateConnecting, since: time.Now()}
	switch u.Scheme {
	case "mqtt", "tcp":
		if u.Port() == "" {
			u.Host = net.JoinHostPort(u.Hostname(), "1883")
		}
	case "mqtts", "ssl", "tls":
		if u.Port() == "" {
			u.Host = net.JoinHostPort(u.Hostname(), "8883")
		}
		f.tls = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: u.Hostname()}
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("uplink: CA file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("uplink: CA file %s holds no PEM certificate", cfg.CAFile)
			}
			f.tls.RootCAs = pool
		}
	default:
		return nil, fmt.Errorf("uplink %q: scheme %q: want mqtt or mqtts", cfg.URL, u.Scheme)
	}
	return f, nil
}

// setState records the forwarder's state and the error that led to it.
func (f *Forwarder) setState(state string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if state != f.state {
		f.since = time.Now()
	}
	f.state = state
	f.lastErr = ""
	if err != nil {
		f.lastErr = err.Error()
	}
	if state != StateConnected {
		f.drain.interrupt(time.Now())
	}
}

// Run forwards until ctx ends, reconnecting with a jittered backoff (1 s
// doubling to 30 s) after a failure.
func (f *Forwarder) Run(ctx context.Context) error {
	r := f.cfg.Spool.NewReader()
	defer r.Close()
	backoff := time.Second
	fresh := false
	go f.watch(ctx)
	for ctx.Err() == nil {
		connects := f.Status().Connects
		err := f.session(ctx, r, fresh)
		fresh = false
		if ctx.Err() != nil {
			break
		}
		if f.Status().Connects != connects { // it got through: start the backoff again
			backoff = time.Second
		}
		var ae *authError
		switch {
		case errors.Is(err, errRenew):
			fresh = true
			continue
		case errors.Is(err, ErrRevoked):
			f.setState(StateRevoked, err)
			f.log.Error("uplink stopped: the gateway's credentials are revoked; positions stay queued", "err", err)
			backoff = 30 * time.Second
		case errors.As(err, &ae):
			fresh = true
			f.setState(StateUnauthorized, err)
			f.log.Error("uplink refused", logx.Err(err))
			backoff = max(backoff, 5*time.Second)
		default:
			f.setState(StateDisconnected, err)
			f.log.Warn("uplink disconnected", logx.Err(err))
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
	f.setState(StateStopped, nil)
	return nil
}

// authError is a CONNACK refusal of the credentials.
type authError struct{ reason string }

func (e *authError) Error() string { return "upstream broker refused the credentials: " + e.reason }

// session runs one connection: it connects, forwards until the connection
// fails, the token nears its expiry or ctx ends, and disconnects.
func (f *Forwarder) session(ctx context.Context, r *spool.Reader, fresh bool) error {
	f.setState(StateConnecting, nil)
	pass, err := f.cfg.Token(ctx, fresh)
	if err != nil {
		return fmt.Errorf("uplink token: %w", err)
	}
	claims := peekClaims(pass)
	if claims.Sub == "" {
		return fmt.Errorf("uplink token: no subject in it (not a JWT?)")
	}
	clientID := f.cfg.ClientID
	if clientID == "" {
		host, _ := os.Hostname()
		clientID = claims.Sub + "/" + cmp.Or(host, "gateway")
	}
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	conn, err := f.dial(dctx)
	cancel()
	if err != nil {
		return err
	}
	connCtx, drop := context.WithCancelCause(ctx)
	defer drop(nil)
	c := paho.NewClient(paho.ClientConfig{
		ClientID:      clientID,
		Conn:          conn,
		PacketTimeout: 60 * time.Second,
		OnServerDisconnect: func(d *paho.Disconnect) {
			reason := fmt.Sprintf("upstream broker disconnected us: reason 0x%02x", d.ReasonCode)
			if d.Properties != nil && d.Properties.ReasonString != "" {
				reason += ": " + d.Properties.ReasonString
			}
			drop(errors.New(reason))
		},
		OnClientError: func(err error) { drop(fmt.Errorf("upstream connection: %w", err)) },
	})
	expiry := uint32(7 * 24 * 3600)
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	ca, err := c.Connect(cctx, &paho.Connect{
		ClientID: clientID, CleanStart: false, KeepAlive: 30,
		Username: claims.Sub, UsernameFlag: true, Password: []byte(pass), PasswordFlag: true,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry},
	})
	cancel()
	if err != nil {
		conn.Close()
		if ca != nil && ca.ReasonCode >= 0x80 {
			reason := fmt.Sprintf("0x%02x", ca.ReasonCode)
			if ca.Properties != nil && ca.Properties.ReasonString != "" {
				reason += " " + ca.Properties.ReasonString
			}
			if ca.ReasonCode == 0x86 || ca.ReasonCode == 0x87 || ca.ReasonCode == 0x8C {
				return &authError{reason}
			}
			return fmt.Errorf("upstream broker refused the connection: %s", reason)
		}
		return fmt.Errorf("uplink connect %s: %w", f.url.Host, err)
	}
	f.mu.Lock()
	f.connects++
	f.mu.Unlock()
	f.setState(StateConnected, nil)
	f.updateDrain(time.Now())
	f.log.Info("uplink connected", "broker", f.url.Host, "client", clientID, "session_present", ca.SessionPresent)

	// Stop sending a little before the token expires: the upstream broker
	// ends sessions whose token expired, and a clean reconnect with a
	// fresh token resends nothing.
	sendCtx, stopSending := context.WithCancel(connCtx)
	defer stopSending()
	if !claims.Exp.IsZero() {
		left := time.Until(claims.Exp)
		t := time.AfterFunc(left-min(30*time.Second, left/5), stopSending)
		defer t.Stop()
	}
	go func() {
		select {
		case <-c.Done():
			drop(errors.New("upstream connection closed"))
		case <-connCtx.Done():
		}
	}()

	r.Rewind()
	lanes := make([]chan spool.Entry, f.cfg.Lanes)
	var wg sync.WaitGroup
	for i := range lanes {
		lanes[i] = make(chan spool.Entry, 4*f.cfg.BatchMax)
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.lane(connCtx, drop, c, lanes[i], claims.Iat)
		}()
	}
	for {
		e, err := r.Next(sendCtx)
		if err != nil {
			break
		}
		e.Payload = bytes.Clone(e.Payload)
		ch := lanes[laneOf(e.Topic, len(lanes))]
		select {
		case ch <- e:
		case <-sendCtx.Done():
		}
	}
	for _, ch := range lanes {
		close(ch)
	}
	// Let the lanes finish what they hold, within a bound.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		drop(errors.New("in-flight messages not acknowledged within 10 s"))
		<-done
	}
	_ = c.Disconnect(&paho.Disconnect{ReasonCode: 0})
	conn.Close()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if cause := context.Cause(connCtx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return errRenew
}

// errRenew ends a session whose token nears its expiry.
var errRenew = errors.New("uplink: renewing the token")

// dial opens the connection to the upstream broker.
func (f *Forwarder) dial(ctx context.Context) (net.Conn, error) {
	d := &net.Dialer{KeepAlive: 30 * time.Second}
	if f.tls != nil {
		td := &tls.Dialer{NetDialer: d, Config: f.tls}
		conn, err := td.DialContext(ctx, "tcp", f.url.Host)
		if err != nil {
			return nil, fmt.Errorf("uplink dial %s: %w", f.url.Host, err)
		}
		return conn, nil
	}
	conn, err := d.DialContext(ctx, "tcp", f.url.Host)
	if err != nil {
		return nil, fmt.Errorf("uplink dial %s: %w", f.url.Host, err)
	}
	return conn, nil
}

// laneOf picks the lane of a topic.
func laneOf(t string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(t))
	return int(h.Sum32() % uint32(n))
}

// maxBatchBytes keeps a batch under the wire contract's 64 KiB payload
// limit.
const maxBatchBytes = 60 << 10

// lane sends the entries of its channel one message at a time, batching a
// topic's waiting positions.
func (f *Forwarder) lane(ctx context.Context, drop context.CancelCauseFunc, c *paho.Client, ch <-chan spool.Entry, tokenIat time.Time) {
	var held []spool.Entry
	for {
		if len(held) == 0 {
			e, ok := <-ch
			if !ok {
				return
			}
			held = append(held, e)
		}
	gather:
		for len(held) < 4*f.cfg.BatchMax {
			select {
			case e, ok := <-ch:
				if !ok {
					break gather
				}
				held = append(held, e)
			default:
				break gather
			}
		}
		// The first entry's topic, and every later one of the same topic
		// that fits, go in one message.
		batch, rest := takeBatch(held, f.cfg.BatchMax)
		if err := f.send(ctx, c, batch, tokenIat); err != nil {
			drop(err)
			// Drain the channel so the dispatcher is not blocked.
			for range ch {
			}
			return
		}
		held = rest
	}
}

// takeBatch splits held into the entries sent as one message (the first
// entry, and for a positions topic the following ones of the same topic, up
// to max and maxBatchBytes) and the rest, in order.
func takeBatch(held []spool.Entry, max int) (batch, rest []spool.Entry) {
	first := held[0]
	if _, kind, err := topic.Parse(first.Topic); err != nil || kind != topic.Positions {
		return held[:1], held[1:]
	}
	size := len(first.Payload)
	batch = []spool.Entry{first}
	for _, e := range held[1:] {
		if e.Topic == first.Topic && len(batch) < max && size+len(e.Payload)+1 <= maxBatchBytes {
			batch = append(batch, e)
			size += len(e.Payload) + 1
		} else {
			rest = append(rest, e)
		}
	}
	return batch, rest
}

// joinPositions makes one JSON array of the batch's payloads (each an
// object or an array).
func joinPositions(batch []spool.Entry) []byte {
	if len(batch) == 1 {
		return batch[0].Payload
	}
	out := make([]byte, 0, maxBatchBytes+2)
	out = append(out, '[')
	for _, e := range batch {
		p := bytes.TrimSpace(e.Payload)
		if len(p) > 0 && p[0] == '[' {
			p = bytes.TrimSpace(p[1 : len(p)-1])
		}
		if len(p) == 0 {
			continue
		}
		if len(out) > 1 {
			out = append(out, ',')
		}
		out = append(out, p...)
	}
	return append(out, ']')
}

// Reason codes of a PUBACK that are worth retrying.
const (
	codeNotAuthorized = 0x87
	codeServerBusy    = 0x89
	codeQuotaExceeded = 0x97
)

// send publishes one batch until the upstream broker takes or refuses it
// for good; an error means the connection is no longer usable.
func (f *Forwarder) send(ctx context.Context, c *paho.Client, batch []spool.Entry, tokenIat time.Time) error {
	payload := joinPositions(batch)
	seqs := make([]uint64, len(batch))
	for i, e := range batch {
		seqs[i] = e.Seq
	}
	for pause := 500 * time.Millisecond; ; pause = min(2*pause, 10*time.Second) {
		f.sent.Add(1)
		resp, err := c.Publish(ctx, &paho.Publish{QoS: 1, Topic: batch[0].Topic, Payload: payload, Retain: batch[0].Retain})
		if resp == nil {
			if err == nil {
				err = errors.New("no acknowledgement")
			}
			return fmt.Errorf("uplink publish: %w", err)
		}
		code := resp.ReasonCode
		reason := fmt.Sprintf("0x%02x", code)
		if resp.Properties != nil && resp.Properties.ReasonString != "" {
			reason += " " + resp.Properties.ReasonString
		}
		switch {
		case code < 0x80:
			f.cfg.Spool.Ack(seqs...)
			f.acked.Add(uint64(len(batch)))
			if _, kind, err := topic.Parse(batch[0].Topic); err == nil && kind == topic.Positions {
				f.positions.Add(uint64(len(batch)))
			}
			f.rate.add(time.Now(), len(batch))
			f.mu.Lock()
			f.lastAck = time.Now()
			f.mu.Unlock()
			return nil
		case code == codeServerBusy || code == codeQuotaExceeded:
			f.retried.Add(1)
			select {
			case <-ctx.Done():
				return context.Cause(ctx)
			case <-time.After(pause):
			}
		case code == codeNotAuthorized && f.mayForceFresh(tokenIat):
			return fmt.Errorf("upstream broker refused %s (%s): getting a fresh token", batch[0].Topic, reason)
		default:
			f.refuse(batch, reason)
			f.cfg.Spool.Ack(seqs...)
			return nil
		}
	}
}

// mayForceFresh reports whether a "not authorized" refusal should be met
// with a fresh token (at most once a minute, and only when the token in use
// predates the last attempt), recording the attempt.
func (f *Forwarder) mayForceFresh(tokenIat time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	if now.Sub(f.forcedAt) < time.Minute || (!tokenIat.IsZero() && tokenIat.After(f.forcedAt) && !f.forcedAt.IsZero()) {
		return false
	}
	f.forcedAt = now
	return true
}

// refuse records entries the upstream broker refused for good in
// refused.jsonl and counts them.
func (f *Forwarder) refuse(batch []spool.Entry, reason string) {
	label := reasonLabel(reason)
	v, _ := f.refused.LoadOrStore(label, new(atomic.Uint64))
	v.(*atomic.Uint64).Add(uint64(len(batch)))
	f.log.Warn("uplink: upstream broker refused messages; kept in refused.jsonl", "topic", batch[0].Topic, "entries", len(batch), "reason", reason)
	f.refusedMu.Lock()
	defer f.refusedMu.Unlock()
	path := filepath.Join(f.cfg.Dir, "refused.jsonl")
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		f.log.Error("uplink: refused messages not saved", "err", err)
		return
	}
	defer out.Close()
	for _, e := range batch {
		line, _ := json.Marshal(struct {
			Time    time.Time       `json:"time"`
			Topic   string          `json:"topic"`
			Reason  string          `json:"reason"`
			Payload json.RawMessage `json:"payload,omitempty"`
			Raw     []byte          `json:"raw,omitempty"`
		}{time.Now().UTC(), e.Topic, reason, rawJSON(e.Payload), rawBytes(e.Payload)})
		out.Write(append(line, '\n'))
	}
}

func rawJSON(b []byte) json.RawMessage {
	if json.Valid(b) {
		return b
	}
	return nil
}

func rawBytes(b []byte) []byte {
	if json.Valid(b) {
		return nil
	}
	return b
}

// reasonLabel turns a reason into a metric label.
func reasonLabel(reason string) string {
	code, _, _ := strings.Cut(reason, " ")
	switch code {
	case "0x87":
		return "not_authorized"
	case "0x99":
		return "payload_invalid"
	case "0x90":
		return "topic_invalid"
	case "0x95":
		return "packet_too_large"
	}
	return "other"
}

// claims are the fields of a token the forwarder uses.
type claims struct {
	Sub string
	Iat time.Time
	Exp time.Time
}

// peekClaims reads a JWT's subject, issue and expiry times without
// verifying it: it is the forwarder's own credential, checked by the
// upstream broker; these only pick the user name and when to reconnect.
func peekClaims(tok string) claims {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return claims{}
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return claims{}
	}
	var c struct {
		Sub string `json:"sub"`
		Iat int64  `json:"iat"`
		Exp int64  `json:"exp"`
	}
	if json.Unmarshal(b, &c) != nil {
		return claims{}
	}
	out := claims{Sub: c.Sub}
	if c.Iat > 0 {
		out.Iat = time.Unix(c.Iat, 0)
	}
	if c.Exp > 0 {
		out.Exp = time.Unix(c.Exp, 0)
	}
	return out
}
