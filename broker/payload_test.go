package broker_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	paho5 "github.com/eclipse/paho.golang/paho"
	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"trackgate/broker"
	"trackgate/broker/brokertest"
	"trackgate/internal/position"
)

// The helpers of this file are prefixed pl (payload) to stay clear of the
// other tests of the package.

// plMsg is a message a test subscriber received.
type plMsg struct {
	topic    string
	payload  string
	retained bool
}

// plSubscribe connects a v3 client with a token for sub and scope and
// subscribes it (QoS 1) to the filters; the messages it receives arrive on
// the returned channel.
func plSubscribe(t testing.TB, b *brokertest.Broker, iss *issuer, sub, scope string, filters ...string) <-chan plMsg {
	t.Helper()
	ch := make(chan plMsg, 100)
	c := paho.NewClient(paho.NewClientOptions().AddBroker(b.TCPURL).SetClientID(sub + "/test").
		SetUsername(sub).SetPassword(iss.sign(t, iss.claims(sub, scope))).SetAutoReconnect(false))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", sub, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	for _, f := range filters {
		tok := c.Subscribe(f, 1, func(_ paho.Client, m paho.Message) {
			ch <- plMsg{m.Topic(), string(m.Payload()), m.Retained()}
		})
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("subscribe %s: %v", f, tok.Error())
		}
		if st := tok.(*paho.SubscribeToken); st.Result()[f] != 1 {
			t.Fatalf("subscribe %s: granted %#x", f, st.Result()[f])
		}
	}
	return ch
}

// plNext returns the next message, failing the test unless it comes within
// five seconds on topic.
func plNext(t testing.TB, ch <-chan plMsg, topic string) plMsg {
	t.Helper()
	select {
	case m := <-ch:
		if m.topic != topic {
			t.Fatalf("received %s %s, want a message on %s", m.topic, m.payload, topic)
		}
		return m
	case <-time.After(5 * time.Second):
		t.Fatalf("nothing received on %s", topic)
	}
	return plMsg{}
}

// plNone fails the test if a message arrives within d.
func plNone(t testing.TB, ch <-chan plMsg, d time.Duration) {
	t.Helper()
	select {
	case m := <-ch:
		t.Fatalf("received %s %s, want nothing", m.topic, m.payload)
	case <-time.After(d):
	}
}

// plDeviceV3 connects an MQTT 3.1.1 device with its token; lost, if not
// nil, is closed when the connection is lost.
func plDeviceV3(t testing.TB, b *brokertest.Broker, id, tok string, lost chan struct{}) paho.Client {
	t.Helper()
	o := paho.NewClientOptions().AddBroker(b.TCPURL).SetClientID(id).SetUsername(id).SetPassword(tok).SetAutoReconnect(false)
	if lost != nil {
		o.SetConnectionLostHandler(func(paho.Client, error) { close(lost) })
	}
	c := paho.NewClient(o)
	if tk := c.Connect(); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		t.Fatalf("connect %s: %v", id, tk.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

// plPublishV3 publishes at QoS 1 and waits for the PUBACK.
func plPublishV3(t testing.TB, c paho.Client, topic, payload string) {
	t.Helper()
	if tok := c.Publish(topic, 1, false, payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// plPublishV5 publishes at QoS 1 and returns the PUBACK's reason code and
// reason string.
func plPublishV5(t testing.TB, c *paho5.Client, topic, payload string) (byte, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pr, err := c.Publish(ctx, &paho5.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)})
	if pr == nil {
		t.Fatalf("publish %s: no PUBACK: %v", topic, err)
	}
	if (err != nil) != (pr.ReasonCode >= 0x80) {
		t.Errorf("publish %s: PUBACK %#x but error %v", topic, pr.ReasonCode, err)
	}
	var reason string
	if pr.Properties != nil {
		reason = pr.Properties.ReasonString
	}
	return pr.ReasonCode, reason
}

// plDeviceV5 connects an MQTT 5 device with its token.
func plDeviceV5(t testing.TB, b *brokertest.Broker, id, tok string) *paho5.Client {
	t.Helper()
	c, ack, err := connectV5(t, b.TCPURL, id, id, tok)
	if err != nil {
		t.Fatalf("connect v5 %s: %v (CONNACK %+v)", id, err, ack)
	}
	return c
}

// plCounter reads one sample of a counter from reg (0 if absent).
func plCounter(t testing.TB, reg prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue metric
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

const plRejected = "trackgate_broker_payload_rejected_total"

// plPosition is a valid position payload at offset seconds from now.
func plPosition(offset int, lat float64) string {
	p := position.Position{Time: time.Now().UTC().Truncate(time.Millisecond).Add(time.Duration(offset) * time.Second),
		Lat: lat, Lon: 4.89, Speed: 1.5, Set: position.Required | position.FieldSpeed}
	return string(p.AppendJSON(nil))
}

// plStartBroker starts an authenticating broker with its metrics in a
// registry of their own.
func plStartBroker(t testing.TB) (*issuer, *brokertest.Broker, *prometheus.Registry) {
	t.Helper()
	iss := newIssuer(t)
	reg := prometheus.NewRegistry()
	b := startBroker(t, iss, func(c *broker.Config) { c.Registerer = reg })
	return iss, b, reg
}

// TestPayloadV5RejectedWithReason: on MQTT 5 an invalid position gets PUBACK
// 0x99 (payload format invalid) with a reason string naming the fault, is
// counted and not delivered; a valid one on the same connection afterwards
// gets PUBACK 0 and is delivered.
func TestPayloadV5RejectedWithReason(t *testing.T) {
	iss, b, reg := plStartBroker(t)
	msgs := plSubscribe(t, b, iss, "svc:ingest", broker.ScopeIngest, "devices/+/positions")
	c := plDeviceV5(t, b, "van-1", iss.deviceToken(t, "van-1"))
	now := time.Now().UTC()
	for _, tc := range []struct{ name, payload, reason, inReason string }{
		{"lat out of range", `{"time":"` + now.Format(time.RFC3339) + `","lat":91,"lon":4.89}`, "range", "lat"},
		{"not JSON", `lat=52.37,lon=4.89`, "syntax", "syntax"},
		{"no time", `{"lat":52.37,"lon":4.89}`, "missing", "time"},
		{"future", `{"time":"` + now.Add(time.Hour).Format(time.RFC3339) + `","lat":52.37,"lon":4.89}`, "future", "time"},
		{"before 2000", `{"time":"1999-12-31T23:59:59Z","lat":52.37,"lon":4.89}`, "past", "time"},
		{"lat a string", `{"time":"` + now.Format(time.RFC3339) + `","lat":"52.37","lon":4.89}`, "type", "lat"},
		{"too large", `{"time":"` + now.Format(time.RFC3339) + `","lat":1,"lon":2,"pad":"` + strings.Repeat("x", 70<<10) + `"}`, "too_large", "too_large"},
		{"batch of invalid ones", `[{"lat":1,"lon":2},{"time":"` + now.Format(time.RFC3339) + `","lat":1,"lon":200}]`, "missing", "time"},
	} {
		code, reason := plPublishV5(t, c, "devices/van-1/positions", tc.payload)
		if code != 0x99 {
			t.Errorf("%s: PUBACK %#x, want 0x99", tc.name, code)
		}
		if reason == "" || !strings.Contains(reason, tc.inReason) {
			t.Errorf("%s: reason string %q, want one naming %q", tc.name, reason, tc.inReason)
		}
		if got := plCounter(t, reg, plRejected, map[string]string{"kind": "positions", "reason": tc.reason}); got < 1 {
			t.Errorf("%s: %s{reason=%q} = %v", tc.name, plRejected, tc.reason, got)
		}
	}
	good := plPosition(0, 52.37)
	if code, reason := plPublishV5(t, c, "devices/van-1/positions", good); code != 0 {
		t.Fatalf("valid position after invalid ones: PUBACK %#x %q, want 0", code, reason)
	}
	if m := plNext(t, msgs, "devices/van-1/positions"); m.payload != good {
		t.Fatalf("delivered %s, want %s", m.payload, good)
	}
	plNone(t, msgs, 200*time.Millisecond)
}

// TestPayloadV3Dropped: on MQTT 3.1.1 an invalid position is acknowledged,
// counted and dropped, the connection stays up, and the next valid one is
// delivered.
func TestPayloadV3Dropped(t *testing.T) {
	iss, b, reg := plStartBroker(t)
	msgs := plSubscribe(t, b, iss, "svc:ingest", broker.ScopeIngest, "devices/+/positions")
	lost := make(chan struct{})
	c := plDeviceV3(t, b, "van-1", iss.deviceToken(t, "van-1"), lost)
	labels := map[string]string{"kind": "positions", "reason": "range"}
	before := plCounter(t, reg, plRejected, labels)
	plPublishV3(t, c, "devices/van-1/positions", `{"time":"`+time.Now().UTC().Format(time.RFC3339)+`","lat":-90.5,"lon":4.89}`)
	if got := plCounter(t, reg, plRejected, labels); got != before+1 {
		t.Errorf("%s%v = %v, want %v", plRejected, labels, got, before+1)
	}
	good := plPosition(0, 52.37)
	plPublishV3(t, c, "devices/van-1/positions", good)
	if m := plNext(t, msgs, "devices/van-1/positions"); m.payload != good {
		t.Fatalf("delivered %s, want only the valid %s", m.payload, good)
	}
	select {
	case <-lost:
		t.Fatal("the connection was lost after an invalid payload")
	default:
	}
	if !c.IsConnectionOpen() {
		t.Fatal("the device is no longer connected")
	}
	plNone(t, msgs, 200*time.Millisecond)
}

// TestPayloadMixedBatch: a batch with some invalid elements is forwarded
// with the valid ones alone, and the invalid one is counted.
func TestPayloadMixedBatch(t *testing.T) {
	iss, b, reg := plStartBroker(t)
	msgs := plSubscribe(t, b, iss, "svc:ingest", broker.ScopeIngest, "devices/+/positions")
	c := plDeviceV3(t, b, "van-1", iss.deviceToken(t, "van-1"), nil)
	first, last := plPosition(-2, 52.1), plPosition(-1, 52.2)
	batch := `[` + first + `,{"time":"2026-01-01T00:00:00Z","lat":-91,"lon":0},"not an object",` + last + `]`
	plPublishV3(t, c, "devices/van-1/positions", batch)
	m := plNext(t, msgs, "devices/van-1/positions")
	got, errs := position.Accept([]byte(m.payload), time.Now(), nil)
	if len(errs) != 0 || len(got) != 2 {
		t.Fatalf("delivered %s: %d positions, errors %v; want the 2 valid ones", m.payload, len(got), errs)
	}
	if want := `[` + first + `,` + last + `]`; m.payload != want {
		t.Errorf("delivered %s, want %s", m.payload, want)
	}
	if n := plCounter(t, reg, plRejected, map[string]string{"kind": "positions", "reason": "range"}); n != 1 {
		t.Errorf("rejected{range} = %v, want 1", n)
	}
	// The same batch on MQTT 5 is acknowledged as accepted: its valid
	// positions were.
	c5 := plDeviceV5(t, b, "van-2", iss.deviceToken(t, "van-2"))
	if code, reason := plPublishV5(t, c5, "devices/van-2/positions", batch); code != 0 {
		t.Errorf("mixed batch on v5: PUBACK %#x %q, want 0", code, reason)
	}
	if m := plNext(t, msgs, "devices/van-2/positions"); m.payload != `[`+first+`,`+last+`]` {
		t.Errorf("delivered %s", m.payload)
	}
}

// plMosquittoPub runs mosquitto_pub against b and returns its output.
func plMosquittoPub(t testing.TB, b *brokertest.Broker, args ...string) (string, error) {
	t.Helper()
	host, port, _ := net.SplitHostPort(b.Addr(broker.ListenerTCP).String())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "mosquitto_pub", append([]string{"-h", host, "-p", port}, args...)...).CombinedOutput()
	var ee *exec.Error
	if errors.As(err, &ee) {
		t.Fatalf("mosquitto_pub not installed (%v): run `make tools`", err)
	}
	return string(out), err
}

// TestPayloadMosquittoPubV5: mosquitto_pub over MQTT 5 is told why its
// payload was refused (reason code 153, 0x99), and a valid one is accepted
// and delivered.
func TestPayloadMosquittoPubV5(t *testing.T) {
	iss, b, _ := plStartBroker(t)
	msgs := plSubscribe(t, b, iss, "svc:ingest", broker.ScopeIngest, "devices/+/positions")
	tok := iss.deviceToken(t, "mosq-van")
	out, _ := plMosquittoPub(t, b, "-V", "mqttv5", "-q", "1", "-d", "-i", "mosq-van", "-u", "mosq-van", "-P", tok,
		"-t", "devices/mosq-van/positions", "-m", `{"time":"2026-11-21T10:00:00Z","lat":52.37,"lon":400}`)
	if !strings.Contains(out, "RC:153") {
		t.Errorf("mosquitto_pub output lacks RC:153:\n%s", out)
	}
	good := plPosition(0, 52.37)
	out, err := plMosquittoPub(t, b, "-V", "mqttv5", "-q", "1", "-d", "-i", "mosq-van", "-u", "mosq-van", "-P", tok,
		"-t", "devices/mosq-van/positions", "-m", good)
	if err != nil || !strings.Contains(out, "RC:0") {
		t.Errorf("valid position: %v:\n%s", err, out)
	}
	if m := plNext(t, msgs, "devices/mosq-van/positions"); m.payload != good {
		t.Fatalf("delivered %s, want %s", m.payload, good)
	}
	plNone(t, msgs, 200*time.Millisecond)
}

// TestPayloadSessionAndStatus: session messages must be start or stop
// commands, status messages JSON objects; the invalid ones get 0x99 on MQTT
// 5 and are dropped on 3.1.1, the valid ones are delivered.
func TestPayloadSessionAndStatus(t *testing.T) {
	iss, b, reg := plStartBroker(t)
	msgs := plSubscribe(t, b, iss, "svc:ingest", broker.ScopeIngest, "devices/+/session", "devices/+/status")
	tok := iss.deviceToken(t, "van-1")
	c := plDeviceV5(t, b, "van-1", tok)
	for _, tc := range []struct {
		topic, payload string
		ok             bool
	}{
		{"devices/van-1/session", `{"action":"pause"}`, false},
		{"devices/van-1/session", `{"action":"start","name":"` + strings.Repeat("n", 201) + `"}`, false},
		{"devices/van-1/session", `start`, false},
		{"devices/van-1/session", `{"action":"start","name":"Morning run"}`, true},
		{"devices/van-1/session", `{"action":"stop"}`, true},
		{"devices/van-1/status", `"online"`, false},
		{"devices/van-1/status", `[{"state":"online"}]`, false},
		{"devices/van-1/status", `{"state":"online","pad":"` + strings.Repeat("x", 16<<10) + `"}`, false},
		{"devices/van-1/status", `{"state":"online","sats":9}`, true},
	} {
		code, reason := plPublishV5(t, c, tc.topic, tc.payload)
		short := tc.payload[:min(len(tc.payload), 50)]
		if tc.ok {
			if code != 0 {
				t.Errorf("%s %s: PUBACK %#x %q, want 0", tc.topic, short, code, reason)
				continue
			}
			if m := plNext(t, msgs, tc.topic); m.payload != tc.payload {
				t.Errorf("delivered %s, want %s", m.payload, short)
			}
			continue
		}
		if code != 0x99 || reason == "" {
			t.Errorf("%s %s: PUBACK %#x %q, want 0x99 with a reason", tc.topic, short, code, reason)
		}
	}
	for kind, want := range map[string]float64{"session": 3, "status": 3} {
		if got := plCounter(t, reg, plRejected, map[string]string{"kind": kind, "reason": "invalid"}); got != want {
			t.Errorf("%s{kind=%q} = %v, want %v", plRejected, kind, got, want)
		}
	}
	// 3.1.1: dropped, the connection stays.
	v3 := plDeviceV3(t, b, "van-2", iss.deviceToken(t, "van-2"), nil)
	plPublishV3(t, v3, "devices/van-2/session", `{"action":"restart"}`)
	plPublishV3(t, v3, "devices/van-2/status", `offline`)
	plPublishV3(t, v3, "devices/van-2/session", `{"action":"stop"}`)
	if m := plNext(t, msgs, "devices/van-2/session"); m.payload != `{"action":"stop"}` {
		t.Errorf("delivered %s", m.payload)
	}
	plNone(t, msgs, 200*time.Millisecond)
}

// The booklet's location example (owntracks.org/booklet/tech/json: acc 75,
// alt 13, cog 270, tst 1376715317, vac 10, vel 54), its lat and lon
// placeholders filled in.
const plBookletLocation = `{
    "_type" : "location",
    "acc"   : 75,
    "alt"   : 13,
    "batt"  : 87,
    "cog"   : 270,
    "lat"   : 48.87069,
    "lon"   : 2.34916,
    "t"     : "u",
    "tid"   : "YY",
    "tst"   : 1376715317,
    "vac"   : 10,
    "vel"   : 54,
    "conn"  : "w"
}`

// plCheckBookletPosition checks that payload is plBookletLocation as a
// position in SI units.
func plCheckBookletPosition(t testing.TB, payload string) {
	t.Helper()
	ps, errs := position.Accept([]byte(payload), time.Now(), nil)
	if len(errs) != 0 || len(ps) != 1 {
		t.Fatalf("delivered %s: %v", payload, errs)
	}
	p := ps[0]
	want := position.Position{Time: time.Unix(1376715317, 0).UTC(), Lat: 48.87069, Lon: 2.34916, Alt: 13, Speed: 15, Course: 270, Acc: 75, Batt: 87,
		Set: position.Required | position.FieldAlt | position.FieldSpeed | position.FieldCourse | position.FieldAcc | position.FieldBatt}
	if math.Abs(p.Speed-want.Speed) > 1e-9 {
		t.Errorf("speed %v m/s, want 54 km/h = 15 m/s", p.Speed)
	}
	p.Speed = want.Speed
	if !p.Time.Equal(want.Time) {
		t.Errorf("time %v, want %v", p.Time, want.Time)
	}
	p.Time = want.Time
	if p != want {
		t.Errorf("delivered %+v, want %+v", p, want)
	}
}

// TestOwnTracksOverClients: OwnTracks messages published by real clients
// (paho 3.1.1, paho.golang 5, mosquitto_pub) on the device's OwnTracks
// topics: a location becomes a position on devices/{id}/positions, in SI
// units; the other types and sub-topics are acknowledged and not
// forwarded; an encrypted message is refused. An operator watching # sees
// every message that fans out.
func TestOwnTracksOverClients(t *testing.T) {
	iss, b, reg := plStartBroker(t)
	all := plSubscribe(t, b, iss, "svc:ops", broker.ScopeOperator, "#")
	tok := iss.deviceToken(t, "van-1")

	t.Run("paho v3 location", func(t *testing.T) {
		c := plDeviceV3(t, b, "van-1", tok, nil)
		plPublishV3(t, c, "owntracks/van-1/phone", plBookletLocation)
		plCheckBookletPosition(t, plNext(t, all, "devices/van-1/positions").payload)
	})

	t.Run("mosquitto_pub location", func(t *testing.T) {
		out, err := plMosquittoPub(t, b, "-q", "1", "-i", "van-1/mosq", "-u", "van-1", "-P", tok,
			"-t", "owntracks/van-1/phone", "-m", plBookletLocation)
		if err != nil {
			t.Fatalf("mosquitto_pub: %v: %s", err, out)
		}
		plCheckBookletPosition(t, plNext(t, all, "devices/van-1/positions").payload)
	})

	t.Run("owner form", func(t *testing.T) {
		cl := iss.claims("van-1", broker.ScopeDevice)
		cl.Owner = "ann"
		c := plDeviceV3(t, b, "van-1", iss.sign(t, cl), nil)
		plPublishV3(t, c, "owntracks/ann/van-1", plBookletLocation)
		plCheckBookletPosition(t, plNext(t, all, "devices/van-1/positions").payload)
		// The owner form is the owner's alone, in any case.
		plPublishV3(t, c, "owntracks/ANN/Van-1", plBookletLocation)
		plCheckBookletPosition(t, plNext(t, all, "devices/van-1/positions").payload)
	})

	t.Run("tid and topic in the payload are not identity", func(t *testing.T) {
		c := plDeviceV3(t, b, "van-1", tok, nil)
		plPublishV3(t, c, "owntracks/van-1/phone", `{"_type":"location","lat":1,"lon":2,"tst":1700000000,"tid":"v2","topic":"owntracks/van-2/phone"}`)
		plNext(t, all, "devices/van-1/positions")
	})

	t.Run("other types and sub-topics are acknowledged, not forwarded", func(t *testing.T) {
		c := plDeviceV3(t, b, "van-1", tok, nil)
		for _, m := range []struct{ topic, payload string }{
			// The booklet's transition example, on …/event.
			{"owntracks/van-1/phone/event", `{"_type":"transition","desc":"My favorite coffee shop (Delaville)","event":"enter","lat":48.87069,"lon":2.34916,"rid":"f7676c","tid":"j1","tst":1707057574,"wtst":1610104395}`},
			// The booklet's waypoint example, on …/waypoint.
			{"owntracks/van-1/phone/waypoint", `{"_type":"waypoint","desc":"Paris is lovely","lat":"48.858330","lon":"2.295130","rad":"50","tst":"1385997757","rid":"f7676c"}`},
			{"owntracks/van-1/phone/step", `{"_type":"steps","tst":1700000000,"steps":12,"from":1699990000,"to":1700000000}`},
			{"owntracks/van-1/phone/info", `{"_type":"card","name":"Alice","tid":"ab","face":"aGVsbG8="}`},
			{"owntracks/van-1/phone/cmd", `{"_type":"cmd","action":"reportLocation"}`},
			// A location on a sub-topic is not the location topic.
			{"owntracks/van-1/phone/event", plBookletLocation},
			// Other types on the location topic.
			{"owntracks/van-1/phone", `{"_type":"transition","acc":77.6,"desc":"Casa","event":"enter","lat":44.2792575,"lon":11.9055914,"t":"l","tid":"ic","tst":1546871106,"wtst":1546866906}`},
			{"owntracks/van-1/phone", `{"_type":"card","name":"Alice","tid":"ab","face":"aGVsbG8="}`},
			{"owntracks/van-1/phone", `{"_type":"status","android":{}}`},
		} {
			plPublishV3(t, c, m.topic, m.payload)
		}
		// A location last: the first message the operator sees.
		plPublishV3(t, c, "owntracks/van-1/phone", plBookletLocation)
		plCheckBookletPosition(t, plNext(t, all, "devices/van-1/positions").payload)
		if !c.IsConnectionOpen() {
			t.Fatal("the device was disconnected")
		}
	})

	t.Run("v5: encrypted refused, others acknowledged", func(t *testing.T) {
		c := plDeviceV5(t, b, "van-1", tok)
		code, reason := plPublishV5(t, c, "owntracks/van-1/phone", `{"_type":"encrypted","data":"NmFkYmM2ZjMtZTNhYS00YzgyLWE5YjktMGVmMzFiNTg5ZTk2"}`)
		if code != 0x99 || !strings.Contains(reason, "encrypt") {
			t.Errorf("encrypted: PUBACK %#x %q, want 0x99 naming encryption", code, reason)
		}
		code, reason = plPublishV5(t, c, "owntracks/van-1/phone", `{"_type":"location","lat":95,"lon":2,"tst":1700000000}`)
		if code != 0x99 || !strings.Contains(reason, "lat") {
			t.Errorf("invalid location: PUBACK %#x %q, want 0x99 naming lat", code, reason)
		}
		code, reason = plPublishV5(t, c, "owntracks/van-1/phone", `not json`)
		if code != 0x99 || reason == "" {
			t.Errorf("not JSON: PUBACK %#x %q, want 0x99", code, reason)
		}
		if code, reason := plPublishV5(t, c, "owntracks/van-1/phone/event", `{"_type":"transition","event":"leave","tst":1707057574,"wtst":1610104395}`); code != 0 {
			t.Errorf("transition: PUBACK %#x %q, want 0", code, reason)
		}
		if code, _ := plPublishV5(t, c, "owntracks/van-2/phone", plBookletLocation); code != 0x87 {
			t.Errorf("another device's OwnTracks topic: PUBACK %#x, want 0x87", code)
		}
		if code, _ := plPublishV5(t, c, "owntracks/ann/van-1", plBookletLocation); code != 0x87 {
			t.Errorf("owner form without an owner claim: PUBACK %#x, want 0x87", code)
		}
		if code, reason := plPublishV5(t, c, "owntracks/van-1/phone", plBookletLocation); code != 0 {
			t.Fatalf("location: PUBACK %#x %q", code, reason)
		}
		plCheckBookletPosition(t, plNext(t, all, "devices/van-1/positions").payload)
	})

	t.Run("v3: encrypted dropped and counted", func(t *testing.T) {
		lost := make(chan struct{})
		c := plDeviceV3(t, b, "van-1", tok, lost)
		before := plCounter(t, reg, "trackgate_broker_owntracks_messages_total", map[string]string{"type": "encrypted"})
		plPublishV3(t, c, "owntracks/van-1/phone", `{"_type":"encrypted","data":"aGVsbG8="}`)
		if got := plCounter(t, reg, "trackgate_broker_owntracks_messages_total", map[string]string{"type": "encrypted"}); got != before+1 {
			t.Errorf("owntracks{type=encrypted} = %v, want %v", got, before+1)
		}
		plPublishV3(t, c, "owntracks/van-1/phone", plBookletLocation)
		plCheckBookletPosition(t, plNext(t, all, "devices/van-1/positions").payload)
		select {
		case <-lost:
			t.Fatal("connection lost")
		default:
		}
	})

	plNone(t, all, 300*time.Millisecond)
	if got := plCounter(t, reg, "trackgate_broker_owntracks_messages_total", map[string]string{"type": "location"}); got < 8 {
		t.Errorf("owntracks{type=location} = %v, want ≥ 8", got)
	}
}

// plConnectWithWill is an MQTT 3.1.1 CONNECT with a user name, a password
// and a QoS 1 will.
func plConnectWithWill(clientID, user, pass, willTopic, will string) []byte {
	str := func(b []byte, s string) []byte { return append(append(b, byte(len(s)>>8), byte(len(s))), s...) }
	body := []byte{
		0, 4, 'M', 'Q', 'T', 'T', 4, // protocol name and level
		0x80 | 0x40 | 0x08 | 0x04 | 0x02, // user name, password, will QoS 1, will, clean session
		0, 60,                            // keepalive
	}
	for _, s := range []string{clientID, willTopic, will, user, pass} {
		body = str(body, s)
	}
	pk := []byte{0x10}
	for n := len(body); ; {
		d := byte(n % 128)
		if n /= 128; n > 0 {
			d |= 0x80
		}
		pk = append(pk, d)
		if n == 0 {
			break
		}
	}
	return append(pk, body...)
}

// TestOwnTracksWill: an OwnTracks app's will (an lwt on its location
// topic) becomes, when its connection drops without a DISCONNECT, the
// device's retained offline status, which a later subscriber receives.
func TestOwnTracksWill(t *testing.T) {
	iss, b, reg := plStartBroker(t)
	tok := iss.deviceToken(t, "van-1")
	conn, err := net.DialTimeout("tcp", b.Addr(broker.ListenerTCP).String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	lwt := `{"_type":"lwt","tst":1498932340}` // the app's connection time
	if _, err := conn.Write(plConnectWithWill("van-1", "van-1", tok, "owntracks/van-1/phone", lwt)); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	ack := make([]byte, 4)
	if _, err := io.ReadFull(bufio.NewReader(conn), ack); err != nil {
		t.Fatalf("CONNACK: %v", err)
	}
	if ack[0] != 0x20 || ack[3] != 0 {
		t.Fatalf("CONNACK % x, want accepted", ack)
	}
	start := time.Now()
	conn.Close() // dropped, no DISCONNECT: the will is published

	deadline := time.Now().Add(5 * time.Second)
	for plCounter(t, reg, "trackgate_broker_owntracks_messages_total", map[string]string{"type": "lwt"}) < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the will was not published")
		}
		time.Sleep(20 * time.Millisecond)
	}
	msgs := plSubscribe(t, b, iss, "svc:ingest", broker.ScopeIngest, "devices/+/status")
	m := plNext(t, msgs, "devices/van-1/status")
	if !m.retained {
		t.Error("the offline status is not retained")
	}
	var st struct {
		State  string    `json:"state"`
		Time   time.Time `json:"time"`
		Source string    `json:"source"`
	}
	if err := json.Unmarshal([]byte(m.payload), &st); err != nil {
		t.Fatalf("status %s: %v", m.payload, err)
	}
	if st.State != "offline" || st.Source != "owntracks" || st.Time.Before(start.Add(-time.Second)) || st.Time.After(time.Now()) {
		t.Errorf("status %s, want offline from owntracks at the time the connection dropped", m.payload)
	}
	// Nothing was left on the OwnTracks topic itself.
	ops := plSubscribe(t, b, iss, "svc:ops", broker.ScopeOperator, "owntracks/#")
	plNone(t, ops, 200*time.Millisecond)
}
