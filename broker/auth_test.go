package broker_test

// Tests of the broker's token authentication and ACL against real
// connections, item by item of AUTH.md: section H (forged tokens, items
// 65–75) and the "MQTT with JWTs" section (CONNACK codes, ACL from claims,
// expiry, revocation, the key and revocation caches).

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho5 "github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/golang-jwt/jwt/v5"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"

	"trackgate/broker"
	"trackgate/broker/brokertest"
	"trackgate/internal/token"
)

// MQTT reason codes and 3.1.1 return codes the tests expect.
const (
	v3BadCredentials   = 4
	v3NotAuthorized    = 5
	v3Unavailable      = 3
	v5BadCredentials   = 0x86
	v5NotAuthorized    = 0x87
	v5Unavailable      = 0x88
	v5MaxConnectTime   = 0xA0
	v3SubackFailure    = 0x80
	waitAnswer         = 10 * time.Second // an answer the broker owes
	operatorSub        = "svc:ops"
	ingestSub          = "svc:cloud"
	metricRefused      = "trackgate_broker_connect_refused_total"
	metricACLDenied    = "trackgate_broker_acl_denied_total"
	metricEnded        = "trackgate_broker_sessions_ended_total"
	metricRateLimited  = "trackgate_broker_connections_rate_limited_total"
	refusedInvalid     = "invalid_token"
	refusedRevoked     = "revoked"
	refusedClientID    = "client_id"
	refusedUsername    = "username"
	refusedScope       = "scope"
	refusedNoToken     = "no_token"
	refusedWill        = "will_topic"
	refusedUnavailable = "unavailable"
)

// ---- tokens ---------------------------------------------------------------

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// claimsMap returns c as a JSON object, edited by edits, so that a test can
// drop a claim or give it a value token.Claims cannot hold.
func claimsMap(t testing.TB, c *token.Claims, edits ...func(map[string]any)) map[string]any {
	t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, e := range edits {
		e(m)
	}
	return m
}

// jwtHeader returns the header token.Sign writes for k, edited by edits.
func jwtHeader(k token.Key, edits ...func(map[string]any)) map[string]any {
	h := map[string]any{"alg": token.Alg, "typ": token.Type, "kid": k.ID}
	for _, e := range edits {
		e(h)
	}
	return h
}

func setMember(k string, v any) func(map[string]any) {
	return func(m map[string]any) { m[k] = v }
}

func delMember(k string) func(map[string]any) {
	return func(m map[string]any) { delete(m, k) }
}

// segments returns the base64url segments of header and claims.
func segments(t testing.TB, header, claims map[string]any) (string, string) {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	c, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	return b64url(h), b64url(c)
}

// forge serializes header and claims as a compact JWS signed by sign, which
// may do anything: a forger controls every byte.
func forge(t testing.TB, header, claims map[string]any, sign func(input []byte) []byte) string {
	t.Helper()
	h, c := segments(t, header, claims)
	input := h + "." + c
	return input + "." + b64url(sign([]byte(input)))
}

func edSigner(k token.Key) func([]byte) []byte {
	return func(in []byte) []byte { return ed25519.Sign(k.Private, in) }
}

func hmacSigner(secret []byte) func([]byte) []byte {
	return func(in []byte) []byte {
		m := hmac.New(sha256.New, secret)
		m.Write(in)
		return m.Sum(nil)
	}
}

func es256Signer(t testing.TB, k *ecdsa.PrivateKey) func([]byte) []byte {
	return func(in []byte) []byte {
		sig, err := jwt.SigningMethodES256.Sign(string(in), k)
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
}

func noSignature([]byte) []byte { return nil }

// publicJWK is the JWK of k's public half, as an attacker would embed it.
func publicJWK(k token.Key) map[string]any {
	return map[string]any{"kty": "OKP", "crv": "Ed25519", "x": b64url(k.Public()), "kid": k.ID, "alg": "EdDSA", "use": "sig"}
}

// selfSignedDER is a certificate for k's public key, signed by k: what an
// attacker puts in x5c.
func selfSignedDER(t testing.TB, k token.Key) []byte {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "attacker"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k.Private)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func mustKey(t testing.TB) token.Key {
	t.Helper()
	k, err := token.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// positionPayload is a valid position of now.
func positionPayload() []byte {
	return []byte(`{"time":"` + time.Now().UTC().Format(time.RFC3339) + `","lat":52.1,"lon":4.2}`)
}

// ---- broker and metrics ---------------------------------------------------

// startAuthBroker is startBroker with a registry for its metrics.
func startAuthBroker(t testing.TB, iss *issuer, edit func(*broker.Config)) (*brokertest.Broker, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	b := startBroker(t, iss, func(c *broker.Config) {
		c.Registerer = reg
		if edit != nil {
			edit(c)
		}
	})
	return b, reg
}

// tcpAddr is the host:port of the broker's plain MQTT listener.
func tcpAddr(b *brokertest.Broker) string { return b.Addr(broker.ListenerTCP).String() }

// metricValue returns the value of the counter or gauge name whose labels
// include labelPairs (name, value, name, value…); 0 if there is none.
func metricValue(t testing.TB, g prometheus.Gatherer, name string, labelPairs ...string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labelPairs); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					found = found || l.GetName() == labelPairs[i] && l.GetValue() == labelPairs[i+1]
				}
				if !found {
					continue metrics
				}
			}
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

// waitMetric waits until the metric reaches want.
func waitMetric(t testing.TB, g prometheus.Gatherer, want float64, name string, labelPairs ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := metricValue(t, g, name, labelPairs...)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%v = %v, want %v", name, labelPairs, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitRevoked waits until the broker's revocation list holds n ids.
func waitRevoked(t testing.TB, b *brokertest.Broker, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, _ := b.AuthStatus()
		if st.Revocations.Revoked >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the broker's revocation list holds %d ids after 5 s, want %d", st.Revocations.Revoked, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ---- MQTT 3.1.1 clients (paho.mqtt.golang) --------------------------------

// dialV3 connects an MQTT 3.1.1 client (no retry, no reconnect, no fallback
// to 3.1) and returns it with the CONNACK return code and the connect error.
func dialV3(t testing.TB, brokerURL, clientID, user, pass string, edit func(*paho3.ClientOptions)) (paho3.Client, byte, error) {
	t.Helper()
	opts := paho3.NewClientOptions().AddBroker(brokerURL).SetClientID(clientID).SetUsername(user).SetPassword(pass).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectRetry(false).SetCleanSession(true).
		SetConnectTimeout(waitAnswer)
	if edit != nil {
		edit(opts)
	}
	c := paho3.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(waitAnswer + time.Second) {
		t.Fatalf("v3 connect %s as %s: no answer", brokerURL, clientID)
	}
	if tok.Error() == nil {
		t.Cleanup(func() { c.Disconnect(10) })
	}
	return c, tok.(*paho3.ConnectToken).ReturnCode(), tok.Error()
}

// mustV3 connects an MQTT 3.1.1 client or fails the test; lost, if not nil,
// is closed when the connection is lost.
func mustV3(t testing.TB, brokerURL, clientID, user, pass string, lost chan struct{}) paho3.Client {
	t.Helper()
	c, code, err := dialV3(t, brokerURL, clientID, user, pass, func(o *paho3.ClientOptions) {
		if lost != nil {
			o.SetConnectionLostHandler(func(paho3.Client, error) { close(lost) })
		}
	})
	if err != nil {
		t.Fatalf("v3 connect as %s: return code %d: %v", clientID, code, err)
	}
	return c
}

// subscribeV3 subscribes at QoS 1 and returns the SUBACK return code.
func subscribeV3(t testing.TB, c paho3.Client, filter string, h paho3.MessageHandler) byte {
	t.Helper()
	tok := c.Subscribe(filter, 1, h)
	if !tok.WaitTimeout(waitAnswer) {
		t.Fatalf("v3 subscribe %s: no SUBACK", filter)
	}
	if tok.Error() != nil {
		t.Fatalf("v3 subscribe %s: %v", filter, tok.Error())
	}
	// paho keys the result by the filter without a $share/{group}/ prefix.
	res := tok.(*paho3.SubscribeToken).Result()
	if len(res) != 1 {
		t.Fatalf("v3 subscribe %s: results %v", filter, res)
	}
	for _, code := range res {
		return code
	}
	panic("unreachable")
}

// publishV3 publishes at QoS 1 and waits for the PUBACK.
func publishV3(t testing.TB, c paho3.Client, topic string, payload []byte) {
	t.Helper()
	tok := c.Publish(topic, 1, false, payload)
	if !tok.WaitTimeout(waitAnswer) || tok.Error() != nil {
		t.Fatalf("v3 publish %s: %v", topic, tok.Error())
	}
}

// recorder keeps the messages a subscriber receives.
type recorder struct {
	mu   sync.Mutex
	msgs []recvMsg
	more chan struct{} // signalled on every message
}

type recvMsg struct{ topic, payload string }

func newRecorder() *recorder { return &recorder{more: make(chan struct{}, 1)} }

func (r *recorder) add(topic string, payload []byte) {
	r.mu.Lock()
	r.msgs = append(r.msgs, recvMsg{topic, string(payload)})
	r.mu.Unlock()
	select {
	case r.more <- struct{}{}:
	default:
	}
}

func (r *recorder) v3(_ paho3.Client, m paho3.Message) { r.add(m.Topic(), m.Payload()) }

func (r *recorder) all() []recvMsg {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.msgs)
}

// waitFor waits until a message on topic arrived and returns it.
func (r *recorder) waitFor(t testing.TB, topic string) recvMsg {
	t.Helper()
	deadline := time.After(waitAnswer)
	for {
		for _, m := range r.all() {
			if m.topic == topic {
				return m
			}
		}
		select {
		case <-r.more:
		case <-deadline:
			t.Fatalf("no message on %s; received %v", topic, r.all())
		}
	}
}

// has reports whether a message on topic arrived.
func (r *recorder) has(topic string) bool {
	return slices.ContainsFunc(r.all(), func(m recvMsg) bool { return m.topic == topic })
}

// watch connects an MQTT 3.1.1 subscriber with a token for sub and scope
// and records what arrives on filter.
func watch(t testing.TB, b *brokertest.Broker, iss *issuer, sub, scope, clientID, filter string) *recorder {
	t.Helper()
	r := newRecorder()
	c := mustV3(t, b.TCPURL, clientID, sub, iss.sign(t, iss.claims(sub, scope)), nil)
	if code := subscribeV3(t, c, filter, r.v3); code >= 0x80 {
		t.Fatalf("%s: subscribe %s refused: %#x", sub, filter, code)
	}
	return r
}

// ---- MQTT 5 clients (paho.golang) -----------------------------------------

// v5client is an MQTT 5 session with what the server sent it.
type v5client struct {
	*paho5.Client
	msgs *recorder
	disc chan *paho5.Disconnect // the server's DISCONNECT
	done <-chan struct{}        // closed when the connection is over
}

// dialV5 opens an MQTT 5 session over TCP with cp (a keepalive of 30 s
// unless cp sets one) and returns it with the CONNACK; err is set when the
// connection failed or was refused.
func dialV5(t testing.TB, brokerURL string, cp *paho5.Connect) (*v5client, *paho5.Connack, error) {
	t.Helper()
	u, err := url.Parse(brokerURL)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", u.Host, waitAnswer)
	if err != nil {
		t.Fatal(err)
	}
	v := &v5client{msgs: newRecorder(), disc: make(chan *paho5.Disconnect, 1)}
	v.Client = paho5.NewClient(paho5.ClientConfig{
		Conn: conn,
		OnPublishReceived: []func(paho5.PublishReceived) (bool, error){func(pr paho5.PublishReceived) (bool, error) {
			v.msgs.add(pr.Packet.Topic, pr.Packet.Payload)
			return true, nil
		}},
		OnServerDisconnect: func(d *paho5.Disconnect) {
			select {
			case v.disc <- d:
			default:
			}
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitAnswer)
	defer cancel()
	ack, err := v.Connect(ctx, cp)
	if err == nil {
		v.done = v.Done()
		t.Cleanup(func() { _ = v.Disconnect(&paho5.Disconnect{ReasonCode: 0}) })
	}
	return v, ack, err
}

// v5Connect is the CONNECT packet of a session as clientID with user and
// token (empty ones unset).
func v5Connect(clientID, user, pass string) *paho5.Connect {
	cp := &paho5.Connect{ClientID: clientID, KeepAlive: 30, CleanStart: true}
	if user != "" {
		cp.Username, cp.UsernameFlag = user, true
	}
	if pass != "" {
		cp.Password, cp.PasswordFlag = []byte(pass), true
	}
	return cp
}

// mustV5 opens an MQTT 5 session or fails the test.
func mustV5(t testing.TB, brokerURL, clientID, user, pass string) *v5client {
	t.Helper()
	v, ack, err := dialV5(t, brokerURL, v5Connect(clientID, user, pass))
	if err != nil {
		code := -1
		if ack != nil {
			code = int(ack.ReasonCode)
		}
		t.Fatalf("v5 connect as %s: reason %#x: %v", clientID, code, err)
	}
	return v
}

// subscribeV5 subscribes at QoS 1 and returns the SUBACK reason code.
func subscribeV5(t testing.TB, c *v5client, filter string) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitAnswer)
	defer cancel()
	sa, err := c.Subscribe(ctx, &paho5.Subscribe{Subscriptions: []paho5.SubscribeOptions{{Topic: filter, QoS: 1}}})
	if sa == nil {
		t.Fatalf("v5 subscribe %s: %v", filter, err)
	}
	return sa.Reasons[0]
}

// publishV5 publishes at QoS 1 and returns the PUBACK reason code.
func publishV5(t testing.TB, c *v5client, topic string, payload []byte) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitAnswer)
	defer cancel()
	pr, err := c.Publish(ctx, &paho5.Publish{Topic: topic, QoS: 1, Payload: payload})
	if pr == nil {
		t.Fatalf("v5 publish %s: %v", topic, err)
	}
	return pr.ReasonCode
}

// ---- raw MQTT -------------------------------------------------------------

func encodePackets(t testing.TB, pks ...packets.Packet) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, pk := range pks {
		var err error
		switch pk.FixedHeader.Type {
		case packets.Connect:
			err = pk.ConnectEncode(&buf)
		case packets.Publish:
			err = pk.PublishEncode(&buf)
		case packets.Subscribe:
			err = pk.SubscribeEncode(&buf)
		default:
			t.Fatalf("cannot encode packet type %d", pk.FixedHeader.Type)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func rawConnect(version byte, clientID, user, pass string) packets.Packet {
	return packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Connect},
		ProtocolVersion: version,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 30,
			ClientIdentifier: clientID,
			UsernameFlag:     user != "", Username: []byte(user),
			PasswordFlag: pass != "", Password: []byte(pass)},
	}
}

func rawPublish(version byte, topic string, payload []byte, id uint16) packets.Packet {
	return packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		ProtocolVersion: version, TopicName: topic, Payload: payload, PacketID: id}
}

// readRaw reads one MQTT packet: its type and its body.
func readRaw(r *bufio.Reader) (typ byte, body []byte, err error) {
	first, err := r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, err := binary.ReadUvarint(r) // MQTT's variable byte integer is LEB128
	if err != nil {
		return 0, nil, err
	}
	body = make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, err
	}
	return first >> 4, body, nil
}

// rawConnectPublish sends a CONNECT and a QoS 1 PUBLISH in one write, before
// any answer, as a client that does not wait for its CONNACK would, and
// returns the CONNACK's code. It fails the test if the broker answers
// anything after the CONNACK (a PUBACK would mean it took the publish) or
// leaves the connection open.
func rawConnectPublish(t testing.TB, addr string, version byte, clientID, user, pass, topic string, payload []byte) byte {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, waitAnswer)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(waitAnswer))
	if _, err := conn.Write(encodePackets(t, rawConnect(version, clientID, user, pass), rawPublish(version, topic, payload, 1))); err != nil {
		t.Fatalf("raw v%d: write: %v", version, err)
	}
	r := bufio.NewReader(conn)
	typ, body, err := readRaw(r)
	if err != nil || typ != packets.Connack || len(body) < 2 {
		t.Fatalf("raw v%d: want a CONNACK, got type %d body %x: %v", version, typ, body, err)
	}
	code := body[1]
	if code == 0 {
		return code
	}
	if typ, body, err := readRaw(r); err == nil {
		t.Errorf("raw v%d: refused with %#x, then the broker sent packet type %d (%x)", version, code, typ, body)
	} else if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("raw v%d: refused with %#x, and the connection stays open", version, code)
	}
	return code
}

// ---- mosquitto clients ----------------------------------------------------

// mosquittoPub runs mosquitto_pub -d with args and returns its output.
func mosquittoPub(t testing.TB, args ...string) (string, error) {
	t.Helper()
	if _, err := exec.LookPath("mosquitto_pub"); err != nil {
		t.Skip("mosquitto_pub not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "mosquitto_pub", append([]string{"-d"}, args...)...).CombinedOutput()
	return string(out), err
}

// mosquittoConnack publishes with mosquitto_pub over TCP as clientID and
// returns the CONNACK code it printed, -1 if none.
func mosquittoConnack(t testing.TB, addr, version, clientID, user, pass, topic string, payload []byte) (int, string) {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	args := []string{"-V", version, "-h", host, "-p", port, "-i", clientID, "-q", "1", "-t", topic, "-m", string(payload)}
	if user != "" {
		args = append(args, "-u", user)
	}
	if pass != "" {
		args = append(args, "-P", pass)
	}
	out, _ := mosquittoPub(t, args...)
	return connackIn(out), out
}

// connackIn finds "received CONNACK (n)" in mosquitto's debug output.
func connackIn(out string) int {
	_, rest, ok := strings.Cut(out, "received CONNACK (")
	if !ok {
		return -1
	}
	n, _, _ := strings.Cut(rest, ")")
	code, err := strconv.Atoi(n)
	if err != nil {
		return -1
	}
	return code
}

// ---- 1. forged tokens (AUTH.md H, items 65–75) ----------------------------

// forgedCase is a token a forger builds for sub; cli also tries it with
// mosquitto_pub.
type forgedCase struct {
	name string
	cli  bool
	make func(t *testing.T, sub string) string
}

// TestBrokerForgedTokensItems65to75 presents forged and invalid tokens over
// real connections: paho (3.1.1, return code 4), paho.golang (5, reason
// 0x86), a raw client that sends a PUBLISH right behind its CONNECT (both
// versions), and mosquitto_pub for some. Each is refused, and nothing any of
// them publishes reaches an operator subscribed to # or an ingest
// subscribed to devices/+/positions. Key-source headers never make the
// broker fetch anything.
func TestBrokerForgedTokensItems65to75(t *testing.T) {
	iss := newIssuer(t)
	other := newIssuer(t)
	b, reg := startAuthBroker(t, iss, nil)
	addr := tcpAddr(b)

	var fetched atomic.Int64 // requests to the attacker's key server
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fetched.Add(1)
		http.Error(w, "nothing here", http.StatusNotFound)
	}))
	t.Cleanup(attacker.Close)
	evil := mustKey(t)
	evilDER := selfSignedDER(t, evil)
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	ops := watch(t, b, iss, operatorSub, broker.ScopeOperator, operatorSub+"/watch", "#")
	ingest := watch(t, b, iss, ingestSub, broker.ScopeIngest, ingestSub+"/watch", "devices/+/positions")

	// claims of a valid device token for sub, edited.
	claims := func(t *testing.T, sub string, edits ...func(map[string]any)) map[string]any {
		return claimsMap(t, iss.claims(sub, broker.ScopeDevice), edits...)
	}
	ours := func(edits ...func(map[string]any)) func(t *testing.T, sub string) string {
		return func(t *testing.T, sub string) string {
			return forge(t, jwtHeader(iss.Key), claims(t, sub, edits...), edSigner(iss.Key))
		}
	}
	header := func(sign func([]byte) []byte, edits ...func(map[string]any)) func(t *testing.T, sub string) string {
		return func(t *testing.T, sub string) string {
			return forge(t, jwtHeader(iss.Key, edits...), claims(t, sub), sign)
		}
	}
	valid := ours()
	now := time.Now()

	cases := []forgedCase{
		{"65 alg none", true, header(noSignature, setMember("alg", "none"))},
		{"65 alg NONE", false, header(noSignature, setMember("alg", "NONE"))},
		{"65 alg noNE", false, header(noSignature, setMember("alg", "noNE"))},
		{"65 alg none with our signature", false, header(edSigner(iss.Key), setMember("alg", "none"))},
		{"65 HS256 keyed with the public key", true, header(hmacSigner(iss.Key.Public()), setMember("alg", "HS256"))},
		{"65 HS256 keyed with the JWK x", false, header(hmacSigner([]byte(b64url(iss.Key.Public()))), setMember("alg", "HS256"))},
		{"66 alg ES256 on the EdDSA key", false, header(edSigner(iss.Key), setMember("alg", "ES256"))},
		{"66 alg ES256 signed with a P-256 key", false, header(es256Signer(t, p256), setMember("alg", "ES256"))},
		{"66 alg Ed25519", false, header(edSigner(iss.Key), setMember("alg", "Ed25519"))},
		{"67 wrong iss", true, ours(setMember("iss", "https://evil.example"))},
		{"67 iss with a trailing slash", false, ours(setMember("iss", iss.URL+"/"))},
		{"67 no iss", false, ours(delMember("iss"))},
		{"67 another issuer's key, our iss", false, func(t *testing.T, sub string) string {
			return other.sign(t, iss.claims(sub, broker.ScopeDevice))
		}},
		{"67 another issuer's key under our kid", false, func(t *testing.T, sub string) string {
			return forge(t, jwtHeader(iss.Key), claims(t, sub), edSigner(other.Key))
		}},
		{"68 no aud", true, ours(delMember("aud"))},
		{"68 API audience", false, ours(setMember("aud", []string{iss.URL + "/api/"}))},
		{"68 aud as a string of the API", false, ours(setMember("aud", "http://127.0.0.1:8080/api/"))},
		{"69 ID token typ JWT", true, func(t *testing.T, sub string) string {
			return forge(t, jwtHeader(iss.Key, setMember("typ", "JWT")),
				claims(t, sub, setMember("aud", []string{sub}), setMember("nonce", "n-0S6_WzA2Mj")), edSigner(iss.Key))
		}},
		{"69 no typ", false, header(edSigner(iss.Key), delMember("typ"))},
		{"69 refresh token typ", false, header(edSigner(iss.Key), setMember("typ", "rt+jwt"))},
		{"70 expired 2 min ago", true, ours(setMember("exp", now.Add(-2*time.Minute).Unix()), setMember("iat", now.Add(-time.Hour).Unix()))},
		{"70 nbf in 5 min", false, ours(setMember("nbf", now.Add(5*time.Minute).Unix()))},
		{"70 iat in 5 min", false, ours(setMember("iat", now.Add(5*time.Minute).Unix()))},
		{"70 no exp", true, ours(delMember("exp"))},
		{"71 crit exp", false, header(edSigner(iss.Key), setMember("crit", []string{"exp"}))},
		{"71 crit unknown extension", true, header(edSigner(iss.Key), setMember("crit", []string{"x-trackgate"}), setMember("x-trackgate", true))},
		{"72 jku", true, func(t *testing.T, sub string) string {
			return forge(t, jwtHeader(evil, setMember("jku", attacker.URL+"/jwks.json")), claims(t, sub), edSigner(evil))
		}},
		{"72 jku with our kid", false, func(t *testing.T, sub string) string {
			return forge(t, jwtHeader(iss.Key, setMember("jku", attacker.URL+"/jwks.json")), claims(t, sub), edSigner(evil))
		}},
		{"72 x5u", false, func(t *testing.T, sub string) string {
			return forge(t, jwtHeader(evil, setMember("x5u", attacker.URL+"/cert.pem")), claims(t, sub), edSigner(evil))
		}},
		{"72 jwk", false, func(t *testing.T, sub string) string {
			return forge(t, jwtHeader(evil, setMember("jwk", publicJWK(evil))), claims(t, sub), edSigner(evil))
		}},
		{"72 x5c", false, func(t *testing.T, sub string) string {
			return forge(t, jwtHeader(evil, setMember("x5c", []string{base64.StdEncoding.EncodeToString(evilDER)})), claims(t, sub), edSigner(evil))
		}},
		{"73 kid SQL injection", true, header(edSigner(iss.Key), setMember("kid", "x' OR '1'='1"))},
		{"73 our kid with SQL appended", false, header(edSigner(iss.Key), setMember("kid", iss.Key.ID+"'; DROP TABLE keys; --"))},
		{"73 kid path traversal", false, header(edSigner(iss.Key), setMember("kid", "../../../../../etc/passwd"))},
		{"73 kid URL path", false, header(edSigner(iss.Key), setMember("kid", "../.well-known/jwks.json?kid="+iss.Key.ID))},
		{"73 kid of 300 chars", false, header(edSigner(iss.Key), setMember("kid", strings.Repeat("k", 300)))},
		{"73 kid of 257 chars starting with ours", false, header(edSigner(iss.Key), setMember("kid", iss.Key.ID+strings.Repeat("k", 257-len(iss.Key.ID))))},
		{"73 no kid", false, header(edSigner(iss.Key), delMember("kid"))},
		{"74 corrupted signature", true, func(t *testing.T, sub string) string {
			raw := valid(t, sub)
			i := strings.LastIndexByte(raw, '.') + 5
			c := byte('A')
			if raw[i] == 'A' {
				c = 'B'
			}
			return raw[:i] + string(c) + raw[i+1:]
		}},
		{"74 signature of other claims", false, func(t *testing.T, sub string) string {
			a, b := valid(t, sub), valid(t, sub+"x")
			return a[:strings.LastIndexByte(a, '.')] + b[strings.LastIndexByte(b, '.'):]
		}},
		{"74 extra segment", true, func(t *testing.T, sub string) string { return valid(t, sub) + ".e30" }},
		{"74 trailing dot", false, func(t *testing.T, sub string) string { return valid(t, sub) + "." }},
		{"74 two segments", false, func(t *testing.T, sub string) string {
			raw := valid(t, sub)
			return raw[:strings.LastIndexByte(raw, '.')]
		}},
		{"74 base64 padding", true, func(t *testing.T, sub string) string {
			// A signature over the padded segments: only the padding is wrong.
			for pad := 0; ; pad++ {
				h, _ := json.Marshal(jwtHeader(iss.Key))
				c, _ := json.Marshal(claims(t, sub, setMember("x", strings.Repeat("p", pad))))
				input := base64.URLEncoding.EncodeToString(h) + "." + base64.URLEncoding.EncodeToString(c)
				if strings.Contains(input, "=") {
					return input + "." + base64.URLEncoding.EncodeToString(ed25519.Sign(iss.Key.Private, []byte(input)))
				}
			}
		}},
		{"74 standard base64 alphabet", false, func(t *testing.T, sub string) string {
			// A token without - or _ reads the same in both alphabets: take
			// one that has them.
			for range 100 {
				if raw := valid(t, sub); strings.ContainsAny(raw, "-_") {
					return strings.NewReplacer("-", "+", "_", "/").Replace(raw)
				}
			}
			t.Fatal("no token with - or _ in 100 tries")
			return ""
		}},
		{"74 JWS JSON serialization (flattened)", true, func(t *testing.T, sub string) string {
			raw := valid(t, sub)
			p := strings.Split(raw, ".")
			j, _ := json.Marshal(map[string]string{"protected": p[0], "payload": p[1], "signature": p[2]})
			return string(j)
		}},
		{"74 JWS JSON serialization (general)", false, func(t *testing.T, sub string) string {
			raw := valid(t, sub)
			p := strings.Split(raw, ".")
			j, _ := json.Marshal(map[string]any{"payload": p[1], "signatures": []map[string]string{{"protected": p[0], "signature": p[2]}}})
			return string(j)
		}},
		{"74 JWE-shaped five segments", false, func(t *testing.T, sub string) string {
			h, _ := json.Marshal(map[string]any{"alg": "dir", "enc": "A256GCM", "kid": iss.Key.ID})
			return b64url(h) + "..AAAAAAAAAAAAAAAA.AAAA.AAAAAAAAAAAAAAAAAAAAAA"
		}},
		{"75 token over 8 KiB", true, func(t *testing.T, sub string) string {
			c := iss.claims(sub, broker.ScopeDevice)
			for i := 0; i < 600; i++ {
				c.Devices = append(c.Devices, fmt.Sprintf("device-%04d", i))
			}
			raw := iss.sign(t, c) // validly signed: refused for its size alone
			if len(raw) <= token.DefaultMaxSize {
				t.Fatalf("token of %d bytes, want more than %d", len(raw), token.DefaultMaxSize)
			}
			return raw
		}},
		{"missing jti", true, ours(delMember("jti"))},
		{"missing sub", true, ours(delMember("sub"))},
		{"missing client_id", false, ours(delMember("client_id"))},
		{"empty jti", false, ours(setMember("jti", ""))},
		{"not a JWT", false, func(*testing.T, string) string { return "hunter2" }},
	}

	var attempts atomic.Int64
	t.Run("control: the forger's valid token connects", func(t *testing.T) {
		// The forging helpers make a token the broker accepts: what the
		// cases below change is what gets them refused.
		sub := "forged-control"
		tok := valid(t, sub)
		if _, code, err := dialV3(t, b.TCPURL, sub, sub, tok, nil); err != nil {
			t.Fatalf("v3: return code %d: %v", code, err)
		}
		mustV5(t, b.TCPURL, sub+"/v5", sub, tok)
		if code := rawConnectPublish(t, addr, 4, sub+"/raw", sub, tok, "devices/"+sub+"/positions", positionPayload()); code != 0 {
			t.Fatalf("raw: CONNACK %d", code)
		}
	})
	t.Run("matrix", func(t *testing.T) {
		for i, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				sub := fmt.Sprintf("forged-%02d", i)
				raw := tc.make(t, sub)
				topic := "devices/" + sub + "/positions"
				payload := positionPayload()

				c, code, err := dialV3(t, b.TCPURL, sub, sub, raw, nil)
				attempts.Add(1)
				if err == nil || code != v3BadCredentials {
					t.Errorf("v3: return code %d (%v), want %d", code, err, v3BadCredentials)
				}
				c.Publish(topic, 1, false, payload).WaitTimeout(time.Second) // a refused client cannot: try anyway

				_, ack, err := connectV5(t, b.TCPURL, sub, sub, raw)
				attempts.Add(1)
				if err == nil || ack == nil || ack.ReasonCode != v5BadCredentials {
					t.Errorf("v5: CONNACK %+v (%v), want reason %#x", ack, err, v5BadCredentials)
				}

				for _, v := range []struct {
					version, want byte
				}{{4, v3BadCredentials}, {5, v5BadCredentials}} {
					got := rawConnectPublish(t, addr, v.version, sub, sub, raw, topic, payload)
					attempts.Add(1)
					if got != v.want {
						t.Errorf("raw v%d with a PUBLISH behind the CONNECT: CONNACK %#x, want %#x", v.version, got, v.want)
					}
				}

				if tc.cli {
					for _, v := range []struct {
						version string
						want    int
					}{{"mqttv311", v3BadCredentials}, {"mqttv5", v5BadCredentials}} {
						got, out := mosquittoConnack(t, addr, v.version, sub, sub, raw, topic, payload)
						attempts.Add(1)
						if got != v.want {
							t.Errorf("mosquitto_pub -V %s: CONNACK %d, want %d; output:\n%s", v.version, got, v.want, out)
						}
					}
				}
			})
		}
	})

	// A message published now arrives after anything the forgers could have
	// got through: once it is in, nothing else may be.
	canary := mustV3(t, b.TCPURL, "forged-canary", "forged-canary", iss.deviceToken(t, "forged-canary"), nil)
	publishV3(t, canary, "devices/forged-canary/positions", positionPayload())
	for name, r := range map[string]*recorder{"operator on #": ops, "ingest on devices/+/positions": ingest} {
		r.waitFor(t, "devices/forged-canary/positions")
		for _, m := range r.all() {
			if strings.HasPrefix(m.topic, "$") || m.topic == "devices/forged-canary/positions" || m.topic == "devices/forged-control/positions" {
				continue
			}
			t.Errorf("%s received %s %s from a refused client", name, m.topic, m.payload)
		}
	}
	if n := fetched.Load(); n != 0 {
		t.Errorf("the broker made %d requests to the URLs of jku / x5u headers, want none", n)
	}
	if got, want := metricValue(t, reg, metricRefused, "reason", refusedInvalid), float64(attempts.Load()); got != want {
		t.Errorf("%s{reason=%q} = %v, want %v (one per attempt)", metricRefused, refusedInvalid, got, want)
	}
}

// ---- 2. CONNACK codes of the other refusals --------------------------------

// TestBrokerConnackCodes checks the CONNACK of each refusal that is not a
// bad token, on MQTT 3.1.1 (paho) and 5 (paho.golang), and counts them.
func TestBrokerConnackCodes(t *testing.T) {
	iss := newIssuer(t)
	b, reg := startAuthBroker(t, iss, nil)

	revoked := iss.claims("rev-1", broker.ScopeDevice)
	iss.revoke(revoked.ID)
	waitRevoked(t, b, 1)

	cases := []struct {
		name             string
		clientID, user   string
		pass             string
		v3, v5           byte
		label            string
		skipV3, skipV5   bool
		v5AssignedPrefix string
	}{
		{name: "revoked token", clientID: "rev-1", user: "rev-1", pass: iss.sign(t, revoked),
			v3: v3NotAuthorized, v5: v5NotAuthorized, label: refusedRevoked},
		{name: "client id of another device", clientID: "dev-b", user: "dev-a", pass: iss.deviceToken(t, "dev-a"),
			v3: v3NotAuthorized, v5: v5NotAuthorized, label: refusedClientID},
		{name: "client id extending the subject without a slash", clientID: "dev-ab", user: "dev-a", pass: iss.deviceToken(t, "dev-a"),
			v3: v3NotAuthorized, v5: v5NotAuthorized, label: refusedClientID},
		{name: "client id bound to another subject", clientID: "dev-b/dev-a", user: "dev-a", pass: iss.deviceToken(t, "dev-a"),
			v3: v3NotAuthorized, v5: v5NotAuthorized, label: refusedClientID},
		{name: "username is not the subject", clientID: "dev-c", user: "dev-d", pass: iss.deviceToken(t, "dev-c"),
			v3: v3BadCredentials, v5: v5BadCredentials, label: refusedUsername},
		{name: "scope tracks:read only", clientID: "dev-e", user: "dev-e", pass: iss.sign(t, iss.claims("dev-e", "tracks:read")),
			v3: v3NotAuthorized, v5: v5NotAuthorized, label: refusedScope},
		{name: "empty scope", clientID: "dev-e2", user: "dev-e2", pass: iss.sign(t, iss.claims("dev-e2", "")),
			v3: v3NotAuthorized, v5: v5NotAuthorized, label: refusedScope},
		{name: "no password", clientID: "dev-f", user: "dev-f",
			v3: v3BadCredentials, v5: v5BadCredentials, label: refusedNoToken},
		{name: "MQTT 5 token without username accepted", clientID: "dev-g", pass: iss.deviceToken(t, "dev-g"), skipV3: true},
		{name: "MQTT 5 empty client id accepted and assigned", user: "dev-h", pass: iss.deviceToken(t, "dev-h"),
			skipV3: true, v5AssignedPrefix: "dev-h/"},
		{name: "MQTT 3.1.1 empty client id accepted", user: "dev-i", pass: iss.deviceToken(t, "dev-i"), skipV5: true},
		{name: "client id bound with a slash accepted", clientID: "dev-j/phone", user: "dev-j", pass: iss.deviceToken(t, "dev-j")},
	}
	t.Run("cases", func(t *testing.T) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				if !tc.skipV3 {
					clientID := tc.clientID
					if clientID != "" && tc.v3 == 0 {
						clientID += "/v3" // not to take over the v5 session
					}
					_, code, err := dialV3(t, b.TCPURL, clientID, tc.user, tc.pass, nil)
					if code != tc.v3 || (err == nil) != (tc.v3 == 0) {
						t.Errorf("MQTT 3.1.1: return code %d (%v), want %d", code, err, tc.v3)
					}
				}
				if !tc.skipV5 {
					_, ack, err := dialV5(t, b.TCPURL, v5Connect(tc.clientID, tc.user, tc.pass))
					switch {
					case ack == nil:
						t.Errorf("MQTT 5: no CONNACK: %v", err)
					case ack.ReasonCode != tc.v5 || (err == nil) != (tc.v5 == 0):
						t.Errorf("MQTT 5: reason %#x (%v), want %#x", ack.ReasonCode, err, tc.v5)
					case tc.v5 != 0 && (ack.Properties == nil || ack.Properties.ReasonString == ""):
						t.Errorf("MQTT 5: refused without a reason string")
					case tc.v5AssignedPrefix != "":
						if ack.Properties == nil || !strings.HasPrefix(ack.Properties.AssignedClientID, tc.v5AssignedPrefix) ||
							len(ack.Properties.AssignedClientID) == len(tc.v5AssignedPrefix) {
							t.Errorf("MQTT 5: assigned client id %+v, want %s…", ack.Properties, tc.v5AssignedPrefix)
						}
					}
				}
			})
		}
	})
	t.Run("counted", func(t *testing.T) {
		for label, want := range map[string]float64{refusedRevoked: 2, refusedClientID: 6, refusedUsername: 2, refusedScope: 4,
			refusedNoToken: 2, refusedInvalid: 0, refusedWill: 0, refusedUnavailable: 0} {
			if got := metricValue(t, reg, metricRefused, "reason", label); got != want {
				t.Errorf("%s{reason=%q} = %v, want %v", metricRefused, label, got, want)
			}
		}
	})
}

// TestBrokerConnackUnavailable: a broker that has no signing keys yet (its
// issuer unreachable, no cache) refuses token clients as "server
// unavailable", 3 / 0x88, not as bad credentials.
func TestBrokerConnackUnavailable(t *testing.T) {
	iss := newIssuer(t)
	tok := iss.deviceToken(t, "dev-u")
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	reg := prometheus.NewRegistry()
	b, err := broker.New(broker.Config{TCP: "127.0.0.1:0", ConnRate: -1, Registerer: reg,
		Auth: broker.AuthConfig{Issuer: deadURL, Data: t.TempDir()}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-b.Ready():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(waitAnswer):
		t.Fatal("broker not ready")
	}
	brokerURL := "tcp://" + b.Addr(broker.ListenerTCP).String()
	if _, code, err := dialV3(t, brokerURL, "dev-u", "dev-u", tok, nil); err == nil || code != v3Unavailable {
		t.Errorf("MQTT 3.1.1: return code %d (%v), want %d", code, err, v3Unavailable)
	}
	if _, ack, err := dialV5(t, brokerURL, v5Connect("dev-u", "dev-u", tok)); ack == nil || ack.ReasonCode != v5Unavailable {
		t.Errorf("MQTT 5: CONNACK %+v (%v), want reason %#x", ack, err, v5Unavailable)
	}
	if got := metricValue(t, reg, metricRefused, "reason", refusedUnavailable); got != 2 {
		t.Errorf("%s{reason=%q} = %v, want 2", metricRefused, refusedUnavailable, got)
	}
}

// ---- 3. ACL ---------------------------------------------------------------

// TestBrokerACLEscapes tries what a device token does not allow, each on a
// broker of its own so that the denial counters are exact: publishes (MQTT 5
// PUBACK 0x87; MQTT 3.1.1 disconnected) and subscriptions (SUBACK 0x87 /
// 0x80). Nothing denied reaches anyone: a denied publish never gets to an
// operator on #, and a denied subscription delivers nothing an operator then
// publishes on it.
func TestBrokerACLEscapes(t *testing.T) {
	iss := newIssuer(t)
	const self, otherDev = "van-1", "van-2"
	ownTracks := func() []byte {
		return []byte(fmt.Sprintf(`{"_type":"location","lat":52.1,"lon":4.2,"tst":%d,"tid":"p1"}`, time.Now().Unix()))
	}
	for _, tc := range []struct {
		name    string
		publish string // the topic published; or
		filter  string // the filter subscribed
		payload func() []byte
		probe   string // a topic the denied filter matches, published by an operator; "" for none
	}{
		{name: "publish devices/OTHER/positions", publish: "devices/" + otherDev + "/positions", payload: positionPayload},
		{name: "publish devices/ITSELF/commands", publish: "devices/" + self + "/commands", payload: func() []byte { return []byte(`{"cmd":"x"}`) }},
		{name: "publish devices/OTHER/status", publish: "devices/" + otherDev + "/status", payload: func() []byte { return []byte(`{"state":"online"}`) }},
		{name: "publish OwnTracks of another user", publish: "owntracks/other/phone", payload: ownTracks},
		{name: "publish OwnTracks of the owner's other device", publish: "owntracks/ann/" + otherDev, payload: ownTracks},
		{name: "publish an operator topic", publish: "alerts/all", payload: func() []byte { return []byte("x") }},
		{name: "subscribe #", filter: "#", probe: "devices/" + otherDev + "/positions"},
		{name: "subscribe $SYS/#", filter: "$SYS/#"},
		{name: "subscribe devices/+/positions", filter: "devices/+/positions", probe: "devices/" + otherDev + "/positions"},
		{name: "subscribe devices/OTHER/commands", filter: "devices/" + otherDev + "/commands", probe: "devices/" + otherDev + "/commands"},
		{name: "subscribe devices/+/commands", filter: "devices/+/commands", probe: "devices/" + otherDev + "/commands"},
		{name: "subscribe devices/ITSELF/#", filter: "devices/" + self + "/#", probe: "devices/" + self + "/positions"},
		{name: "subscribe $share/g/devices/+/positions", filter: "$share/g/devices/+/positions", probe: "devices/" + otherDev + "/positions"},
		{name: "subscribe $share/g/devices/ITSELF/commands", filter: "$share/g/devices/" + self + "/commands"},
		{name: "subscribe owntracks/#", filter: "owntracks/#"},
		{name: "subscribe OwnTracks cmd of another user", filter: "owntracks/other/phone/cmd"}, // OwnTracks publishes other than a device's locations are dropped: no probe
	} {
		for _, version := range []int{5, 3} {
			t.Run(fmt.Sprintf("%s (MQTT %d)", tc.name, version), func(t *testing.T) {
				t.Parallel()
				b, reg := startAuthBroker(t, iss, nil)
				c := iss.claims(self, broker.ScopeDevice)
				c.Owner = "ann"
				devTok := iss.sign(t, c)
				ops := watch(t, b, iss, operatorSub, broker.ScopeOperator, operatorSub+"/watch", "#")
				opsPub := mustV3(t, b.TCPURL, operatorSub+"/pub", operatorSub, iss.sign(t, iss.claims(operatorSub, broker.ScopeOperator)), nil)
				cmd := mustV3(t, b.TCPURL, ingestSub, ingestSub, iss.sign(t, iss.claims(ingestSub, broker.ScopeIngest)), nil)
				action := "publish"
				if tc.filter != "" {
					action = "subscribe"
				}

				var got *recorder // what the device receives
				switch {
				case version == 5 && tc.publish != "":
					v := mustV5(t, b.TCPURL, self, self, devTok)
					if code := publishV5(t, v, tc.publish, tc.payload()); code != v5NotAuthorized {
						t.Errorf("PUBACK %#x, want %#x", code, v5NotAuthorized)
					}
					if code := publishV5(t, v, "devices/"+self+"/positions", positionPayload()); code != 0 {
						t.Errorf("then its own positions: PUBACK %#x, want 0", code)
					}
				case version == 3 && tc.publish != "":
					lost := make(chan struct{})
					v := mustV3(t, b.TCPURL, self, self, devTok, lost)
					v.Publish(tc.publish, 1, false, tc.payload())
					select {
					case <-lost:
					case <-time.After(waitAnswer):
						t.Fatal("still connected after an unauthorized publish")
					}
					v = mustV3(t, b.TCPURL, self, self, devTok, nil)
					publishV3(t, v, "devices/"+self+"/positions", positionPayload())
				case version == 5:
					v := mustV5(t, b.TCPURL, self, self, devTok)
					got = v.msgs
					if code := subscribeV5(t, v, tc.filter); code != v5NotAuthorized {
						t.Errorf("SUBACK %#x, want %#x", code, v5NotAuthorized)
					}
					if code := subscribeV5(t, v, "devices/"+self+"/commands"); code >= 0x80 {
						t.Errorf("then its own commands: SUBACK %#x", code)
					}
				default:
					got = newRecorder()
					v := mustV3(t, b.TCPURL, self, self, devTok, nil)
					if code := subscribeV3(t, v, tc.filter, got.v3); code != v3SubackFailure {
						t.Errorf("SUBACK %#x, want %#x", code, v3SubackFailure)
					}
					if code := subscribeV3(t, v, "devices/"+self+"/commands", got.v3); code >= 0x80 {
						t.Errorf("then its own commands: SUBACK %#x", code)
					}
				}

				if tc.publish != "" {
					// The device's own position, published after the denied
					// message, has arrived: the denied one never will.
					ops.waitFor(t, "devices/"+self+"/positions")
					for _, m := range ops.all() {
						if m.topic == tc.publish || m.topic != "devices/"+self+"/positions" && !strings.HasPrefix(m.topic, "$") {
							t.Errorf("the operator on # received %s %s", m.topic, m.payload)
						}
					}
				} else {
					if tc.probe != "" {
						p := []byte(`{"probe":true}`)
						if strings.HasSuffix(tc.probe, "/positions") {
							p = positionPayload()
						}
						publishV3(t, opsPub, tc.probe, p)
						ops.waitFor(t, tc.probe) // it was published
					}
					publishV3(t, cmd, "devices/"+self+"/commands", []byte(`{"cmd":"canary"}`))
					got.waitFor(t, "devices/"+self+"/commands")
					for _, m := range got.all() {
						if m.topic != "devices/"+self+"/commands" {
							t.Errorf("the device received %s %s through a denied subscription", m.topic, m.payload)
						}
					}
				}
				waitMetric(t, reg, 1, metricACLDenied, "action", action)
				other := map[string]string{"publish": "subscribe", "subscribe": "publish"}[action]
				if n := metricValue(t, reg, metricACLDenied, "action", other); n != 0 {
					t.Errorf("%s{action=%q} = %v, want 0", metricACLDenied, other, n)
				}
			})
		}
	}
}

// TestBrokerACLWillOfAnotherDevice: a will on another device's status topic
// is refused at CONNECT with 5 / 0x87 and counted.
func TestBrokerACLWillOfAnotherDevice(t *testing.T) {
	iss := newIssuer(t)
	b, reg := startAuthBroker(t, iss, nil)
	tok := iss.deviceToken(t, "van-1")
	will := []byte(`{"state":"offline"}`)
	_, code, err := dialV3(t, b.TCPURL, "van-1", "van-1", tok, func(o *paho3.ClientOptions) {
		o.SetWill("devices/van-2/status", string(will), 1, true)
	})
	if err == nil || code != v3NotAuthorized {
		t.Errorf("MQTT 3.1.1: return code %d (%v), want %d", code, err, v3NotAuthorized)
	}
	cp := v5Connect("van-1", "van-1", tok)
	cp.WillMessage = &paho5.WillMessage{Topic: "devices/van-2/status", Payload: will, QoS: 1, Retain: true}
	if _, ack, err := dialV5(t, b.TCPURL, cp); ack == nil || ack.ReasonCode != v5NotAuthorized {
		t.Errorf("MQTT 5: CONNACK %+v (%v), want reason %#x", ack, err, v5NotAuthorized)
	}
	// Its own status is a will it may leave.
	cp = v5Connect("van-1", "van-1", tok)
	cp.WillMessage = &paho5.WillMessage{Topic: "devices/van-1/status", Payload: will, QoS: 1, Retain: true}
	if _, ack, err := dialV5(t, b.TCPURL, cp); err != nil {
		t.Errorf("MQTT 5 with a will on its own status: %+v %v", ack, err)
	}
	if got := metricValue(t, reg, metricRefused, "reason", refusedWill); got != 2 {
		t.Errorf("%s{reason=%q} = %v, want 2", metricRefused, refusedWill, got)
	}
}

// TestBrokerACLAllowed checks what each scope grants, end to end.
func TestBrokerACLAllowed(t *testing.T) {
	iss := newIssuer(t)
	b, reg := startAuthBroker(t, iss, nil)

	t.Run("device gets its commands from an ingest service", func(t *testing.T) {
		dev := mustV5(t, b.TCPURL, "cmd-1", "cmd-1", iss.deviceToken(t, "cmd-1"))
		if code := subscribeV5(t, dev, "devices/cmd-1/commands"); code >= 0x80 {
			t.Fatalf("SUBACK %#x", code)
		}
		svc := mustV5(t, b.TCPURL, ingestSub+"/cmd", ingestSub, iss.sign(t, iss.claims(ingestSub, broker.ScopeIngest)))
		if code := publishV5(t, svc, "devices/cmd-1/commands", []byte(`{"cmd":"ping"}`)); code != 0 {
			t.Fatalf("ingest publish of a command: PUBACK %#x", code)
		}
		if m := dev.msgs.waitFor(t, "devices/cmd-1/commands"); m.payload != `{"cmd":"ping"}` {
			t.Errorf("command %q", m.payload)
		}
	})
	t.Run("ingest gets positions through $share/cloud", func(t *testing.T) {
		svc := mustV5(t, b.TCPURL, ingestSub+"/share", ingestSub, iss.sign(t, iss.claims(ingestSub, broker.ScopeIngest)))
		if code := subscribeV5(t, svc, "$share/cloud/devices/+/positions"); code >= 0x80 {
			t.Fatalf("SUBACK %#x", code)
		}
		dev := mustV3(t, b.TCPURL, "pos-1", "pos-1", iss.deviceToken(t, "pos-1"), nil)
		payload := positionPayload()
		publishV3(t, dev, "devices/pos-1/positions", payload)
		if m := svc.msgs.waitFor(t, "devices/pos-1/positions"); m.payload != string(payload) {
			t.Errorf("position %q, want %q", m.payload, payload)
		}
	})
	t.Run("operator gets $SYS", func(t *testing.T) {
		op := mustV5(t, b.TCPURL, operatorSub+"/sys", operatorSub, iss.sign(t, iss.claims(operatorSub, broker.ScopeOperator)))
		if code := subscribeV5(t, op, "$SYS/#"); code >= 0x80 {
			t.Fatalf("SUBACK %#x", code)
		}
		deadline := time.After(waitAnswer)
		for len(op.msgs.all()) == 0 {
			select {
			case <-op.msgs.more:
			case <-deadline:
				t.Fatal("nothing on $SYS/#")
			}
		}
		if m := op.msgs.all()[0]; !strings.HasPrefix(m.topic, "$SYS/") {
			t.Errorf("received %s", m.topic)
		}
	})
	t.Run("live token watches its devices only", func(t *testing.T) {
		c := iss.claims("usr:ann", broker.ScopeLive)
		c.Devices = []string{"van-1"}
		live := mustV5(t, b.TCPURL, "usr:ann/tab-1", "usr:ann", iss.sign(t, c))
		if code := subscribeV5(t, live, "devices/van-1/positions"); code >= 0x80 {
			t.Errorf("devices/van-1/positions: SUBACK %#x", code)
		}
		if code := subscribeV5(t, live, "devices/van-1/status"); code >= 0x80 {
			t.Errorf("devices/van-1/status: SUBACK %#x", code)
		}
		for _, f := range []string{"devices/van-2/positions", "devices/+/positions", "devices/van-1/commands", "devices/van-1/#"} {
			if code := subscribeV5(t, live, f); code != v5NotAuthorized {
				t.Errorf("%s: SUBACK %#x, want %#x", f, code, v5NotAuthorized)
			}
		}
		van := mustV3(t, b.TCPURL, "van-1", "van-1", iss.deviceToken(t, "van-1"), nil)
		publishV3(t, van, "devices/van-1/positions", positionPayload())
		live.msgs.waitFor(t, "devices/van-1/positions")
		if code := publishV5(t, live, "devices/van-1/positions", positionPayload()); code != v5NotAuthorized {
			t.Errorf("live publishing a position: PUBACK %#x, want %#x", code, v5NotAuthorized)
		}
	})
	t.Run("device scope on usr: and svc: subjects grants nothing", func(t *testing.T) {
		for _, sub := range []string{"usr:bob", "svc:bridge"} {
			tok := iss.deviceToken(t, sub)
			if _, code, err := dialV3(t, b.TCPURL, sub, sub, tok, nil); err == nil || code != v3NotAuthorized {
				t.Errorf("%s scope device, MQTT 3.1.1: return code %d (%v), want %d", sub, code, err, v3NotAuthorized)
			}
			if _, ack, err := dialV5(t, b.TCPURL, v5Connect(sub, sub, tok)); ack == nil || ack.ReasonCode != v5NotAuthorized {
				t.Errorf("%s scope device, MQTT 5: CONNACK %+v (%v), want %#x", sub, ack, err, v5NotAuthorized)
			}
		}
		// With another scope they connect, and still have no device rights.
		for _, tc := range []struct{ sub, scope string }{{"usr:bob", "device live"}, {"svc:bridge", "device ingest"}} {
			v := mustV5(t, b.TCPURL, tc.sub, tc.sub, iss.sign(t, iss.claims(tc.sub, tc.scope)))
			if code := publishV5(t, v, "devices/"+tc.sub+"/positions", positionPayload()); code != v5NotAuthorized {
				t.Errorf("%s (%s) publishing devices/%s/positions: PUBACK %#x, want %#x", tc.sub, tc.scope, tc.sub, code, v5NotAuthorized)
			}
			if code := subscribeV5(t, v, "devices/"+tc.sub+"/commands"); code != v5NotAuthorized {
				t.Errorf("%s (%s) subscribing devices/%s/commands: SUBACK %#x, want %#x", tc.sub, tc.scope, tc.sub, code, v5NotAuthorized)
			}
		}
	})
	t.Run("ingest scope on a device subject grants nothing", func(t *testing.T) {
		tok := iss.sign(t, iss.claims("dev-x", broker.ScopeIngest+" "+broker.ScopeOperator))
		if _, ack, err := dialV5(t, b.TCPURL, v5Connect("dev-x", "dev-x", tok)); ack == nil || ack.ReasonCode != v5NotAuthorized {
			t.Errorf("CONNACK %+v (%v), want %#x", ack, err, v5NotAuthorized)
		}
	})
	if n := metricValue(t, reg, metricACLDenied, "action", "publish"); n != 3 {
		t.Errorf("%s{action=publish} = %v, want 3", metricACLDenied, n)
	}
}

// ---- 4. expiry and revocation ---------------------------------------------

// TestBrokerSessionEndsAtTokenExpiry: a token valid for 3 more seconds
// connects; the broker disconnects the session at exp (MQTT 5: DISCONNECT
// 0xA0, maximum connect time; 3.1.1: connection closed), and then refuses
// the token.
func TestBrokerSessionEndsAtTokenExpiry(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t)
	b, reg := startAuthBroker(t, iss, nil)
	c := iss.claims("exp-1", broker.ScopeDevice)
	c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(3 * time.Second))
	exp := c.ExpiresAt.Time
	tok := iss.sign(t, c)

	v5 := mustV5(t, b.TCPURL, "exp-1", "exp-1", tok)
	lost := make(chan struct{})
	mustV3(t, b.TCPURL, "exp-1/v3", "exp-1", tok, lost)
	if time.Until(exp) < time.Second {
		t.Skip("too slow to connect before the token expires")
	}
	early, late := exp.Add(-500*time.Millisecond), exp.Add(1500*time.Millisecond)
	select {
	case d := <-v5.disc:
		if now := time.Now(); now.Before(early) || now.After(late) {
			t.Errorf("MQTT 5 disconnected %v from exp", now.Sub(exp))
		}
		if d.ReasonCode != v5MaxConnectTime {
			t.Errorf("MQTT 5 DISCONNECT reason %#x, want %#x", d.ReasonCode, v5MaxConnectTime)
		}
	case <-time.After(time.Until(late)):
		t.Error("MQTT 5 session still open after its token expired")
	}
	select {
	case <-lost:
		if now := time.Now(); now.Before(early) || now.After(late) {
			t.Errorf("MQTT 3.1.1 disconnected %v from exp", now.Sub(exp))
		}
	case <-time.After(time.Until(late)):
		t.Error("MQTT 3.1.1 session still open after its token expired")
	}
	waitMetric(t, reg, 2, metricEnded, "reason", "expired")

	// Within the verifier's leeway, yet expired: refused.
	if _, code, err := dialV3(t, b.TCPURL, "exp-1", "exp-1", tok, nil); err == nil || code != v3BadCredentials {
		t.Errorf("reconnect, MQTT 3.1.1: return code %d (%v), want %d", code, err, v3BadCredentials)
	}
	if _, ack, err := dialV5(t, b.TCPURL, v5Connect("exp-1", "exp-1", tok)); ack == nil || ack.ReasonCode != v5BadCredentials {
		t.Errorf("reconnect, MQTT 5: CONNACK %+v (%v), want %#x", ack, err, v5BadCredentials)
	}
}

// TestBrokerRevocationKicksSession: a connected session whose token is then
// revoked is disconnected within about a second (MQTT 5: DISCONNECT 0x87),
// reconnecting with it is refused (5 / 0x87), and a session of the same
// device with another token stays.
func TestBrokerRevocationKicksSession(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t)
	b, reg := startAuthBroker(t, iss, nil)
	c := iss.claims("rev-2", broker.ScopeDevice)
	tok := iss.sign(t, c)
	v5 := mustV5(t, b.TCPURL, "rev-2", "rev-2", tok)
	lost := make(chan struct{})
	mustV3(t, b.TCPURL, "rev-2/v3", "rev-2", tok, lost)
	c2 := iss.claims("rev-2", broker.ScopeDevice)
	c2.ID += "-second"
	keep := mustV5(t, b.TCPURL, "rev-2/other", "rev-2", iss.sign(t, c2))

	iss.revoke(c.ID)
	revoked := time.Now()
	deadline := time.After(2 * time.Second)
	select {
	case d := <-v5.disc:
		if d.ReasonCode != v5NotAuthorized {
			t.Errorf("MQTT 5 DISCONNECT reason %#x, want %#x", d.ReasonCode, v5NotAuthorized)
		}
	case <-deadline:
		t.Fatal("MQTT 5 session still open 2 s after its token was revoked")
	}
	select {
	case <-lost:
	case <-deadline:
		t.Fatal("MQTT 3.1.1 session still open 2 s after its token was revoked")
	}
	if d := time.Since(revoked); d > 1500*time.Millisecond {
		t.Errorf("sessions ended %v after the revocation, want about a second at most", d)
	}
	waitMetric(t, reg, 2, metricEnded, "reason", "revoked")

	if _, code, err := dialV3(t, b.TCPURL, "rev-2", "rev-2", tok, nil); err == nil || code != v3NotAuthorized {
		t.Errorf("reconnect, MQTT 3.1.1: return code %d (%v), want %d", code, err, v3NotAuthorized)
	}
	if _, ack, err := dialV5(t, b.TCPURL, v5Connect("rev-2", "rev-2", tok)); ack == nil || ack.ReasonCode != v5NotAuthorized {
		t.Errorf("reconnect, MQTT 5: CONNACK %+v (%v), want %#x", ack, err, v5NotAuthorized)
	}
	select {
	case <-keep.done:
		t.Error("the session with the other token was disconnected too")
	default:
		if code := publishV5(t, keep, "devices/rev-2/positions", positionPayload()); code != 0 {
			t.Errorf("the session with the other token: PUBACK %#x", code)
		}
	}
}

// ---- 6. key and revocation caches ------------------------------------------

// TestBrokerCachesKeysAndRevocations: a broker restarted on the same data
// directory while the issuer is down still verifies tokens with the cached
// keys, and still refuses a token revoked before the shutdown.
func TestBrokerCachesKeysAndRevocations(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t)
	data := t.TempDir()
	good := iss.deviceToken(t, "cache-1")
	rc := iss.claims("cache-2", broker.ScopeDevice)
	revokedTok := iss.sign(t, rc)
	iss.revoke(rc.ID)

	b1, _ := startAuthBroker(t, iss, func(c *broker.Config) { c.Auth.Data = data })
	waitRevoked(t, b1, 1)
	deadline := time.Now().Add(5 * time.Second)
	for {
		raw, _ := os.ReadFile(filepath.Join(data, "revocations.json"))
		if bytes.Contains(raw, []byte(rc.ID)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no revocation cache written")
		}
		time.Sleep(10 * time.Millisecond)
	}
	mustV3(t, b1.TCPURL, "cache-1", "cache-1", good, nil).Disconnect(10)
	if _, code, _ := dialV3(t, b1.TCPURL, "cache-2", "cache-2", revokedTok, nil); code != v3NotAuthorized {
		t.Fatalf("first broker: revoked token got return code %d, want %d", code, v3NotAuthorized)
	}
	b1.Stop()
	iss.Close()

	b2, reg := startAuthBroker(t, iss, func(c *broker.Config) { c.Auth.Data = data })
	if st, _ := b2.AuthStatus(); !st.KeysReady || st.Revocations.Revoked != 1 {
		t.Errorf("restarted broker: %+v, want keys ready and 1 revocation", st)
	}
	mustV3(t, b2.TCPURL, "cache-1", "cache-1", good, nil)
	mustV5(t, b2.TCPURL, "cache-1/v5", "cache-1", good)
	if _, code, err := dialV3(t, b2.TCPURL, "cache-2", "cache-2", revokedTok, nil); err == nil || code != v3NotAuthorized {
		t.Errorf("revoked token, MQTT 3.1.1: return code %d (%v), want %d", code, err, v3NotAuthorized)
	}
	if _, ack, err := dialV5(t, b2.TCPURL, v5Connect("cache-2", "cache-2", revokedTok)); ack == nil || ack.ReasonCode != v5NotAuthorized {
		t.Errorf("revoked token, MQTT 5: CONNACK %+v (%v), want %#x", ack, err, v5NotAuthorized)
	}
	// The cache holds the issuer's keys and no others.
	forged := newIssuer(t)
	forgedTok := forged.sign(t, iss.claims("cache-3", broker.ScopeDevice))
	if _, code, err := dialV3(t, b2.TCPURL, "cache-3", "cache-3", forgedTok, nil); err == nil || code != v3BadCredentials {
		t.Errorf("token of another key: return code %d (%v), want %d", code, err, v3BadCredentials)
	}
	if got := metricValue(t, reg, metricRefused, "reason", refusedRevoked); got != 2 {
		t.Errorf("%s{reason=%q} = %v, want 2", metricRefused, refusedRevoked, got)
	}
}
