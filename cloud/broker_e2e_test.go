package cloud_test

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/golang-jwt/jwt/v5"

	"trackgate/broker"
	"trackgate/broker/brokertest"
	"trackgate/cloud"
	"trackgate/cloud/auth"
	"trackgate/cloud/ingest"
	"trackgate/internal/position"
	"trackgate/internal/token"
)

// e2eForward accepts connections on ln and pipes each to target: the cloud
// is configured with ln's address before the broker (which needs the
// cloud's address for its keys) exists.
func e2eForward(t testing.TB, ln net.Listener, target string) {
	t.Helper()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	track := func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	}
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			track(c)
			wg.Go(func() {
				defer c.Close()
				u, err := net.DialTimeout("tcp", target, 5*time.Second)
				if err != nil {
					return
				}
				track(u)
				defer u.Close()
				done := make(chan struct{})
				go func() {
					_, _ = io.Copy(u, c)
					u.Close()
					close(done)
				}()
				_, _ = io.Copy(c, u)
				c.Close()
				<-done
			})
		}
	})
}

// startAuthStack runs influxd, the cloud, and a broker that verifies the
// cloud's tokens (keys and revocation list from the cloud's HTTP server,
// the list fetched every 200 ms); the cloud's ingest bridge connects to the
// broker with the broker token the cloud signs for itself.
func startAuthStack(t testing.TB) *stack {
	t.Helper()
	mqttLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := newStack(t, ingest.Config{}, "tcp://"+mqttLn.Addr().String())
	s.stopCloud = s.launchCloud(t)
	s.broker = brokertest.Start(t, broker.Config{Auth: broker.AuthConfig{
		Issuer:              s.cfg.Auth.Issuer,
		JWKS:                s.httpURL + "/.well-known/jwks.json",
		Revocations:         s.httpURL + "/api/v1/revocations",
		RevocationsInterval: 200 * time.Millisecond,
		Data:                t.TempDir(),
	}})
	e2eForward(t, mqttLn, s.broker.Addr(broker.ListenerTCP).String())
	s.waitReady(t)
	return s
}

// e2eConnect connects a device with its token over MQTT 3.1.1; lost, if not
// nil, is closed when the connection is lost.
func e2eConnect(url, clientID, user, tok string, lost chan struct{}) (paho.Client, error) {
	o := paho.NewClientOptions().AddBroker(url).SetClientID(clientID).SetUsername(user).SetPassword(tok).
		SetAutoReconnect(false).SetConnectRetry(false)
	if lost != nil {
		o.SetConnectionLostHandler(func(paho.Client, error) { close(lost) })
	}
	c := paho.NewClient(o)
	tk := c.Connect()
	if !tk.WaitTimeout(10 * time.Second) {
		return nil, fmt.Errorf("connect %s: timeout", clientID)
	}
	if err := tk.Error(); err != nil {
		return nil, err
	}
	return c, nil
}

func e2eMustConnect(t *testing.T, url, id, tok string, lost chan struct{}) paho.Client {
	t.Helper()
	user, _, _ := strings.Cut(id, "/") // the device id
	c, err := e2eConnect(url, id, user, tok, lost)
	if err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

func e2ePublish(t *testing.T, c paho.Client, topic string, payload []byte) {
	t.Helper()
	if tok := c.Publish(topic, 1, false, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// e2eLocation is the OwnTracks booklet's location example (acc 75, alt
// 13, cog 270, vac 10, vel 54 km/h) at tst.
func e2eLocation(tst time.Time, lat float64) []byte {
	return fmt.Appendf(nil, `{"_type":"location","acc":75,"alt":13,"batt":87,"cog":270,"lat":%v,"lon":2.34916,"t":"u","tid":"YY","tst":%d,"vac":10,"vel":54,"conn":"w"}`,
		lat, tst.Unix())
}

// checkPositions checks that the points stored are exactly those wanted,
// field for field (coordinates to 1e-6 degree, speeds to 0.01 m/s, as
// unit conversions round).
func checkPositions(t *testing.T, got, want map[key]position.Position) {
	t.Helper()
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("%s %s: not stored", k.device, time.Unix(0, k.time).UTC().Format(time.RFC3339Nano))
			continue
		}
		if math.Abs(g.Lat-w.Lat) < 1e-6 && math.Abs(g.Lon-w.Lon) < 1e-6 && math.Abs(g.Speed-w.Speed) < 0.01 {
			g.Lat, g.Lon, g.Speed = w.Lat, w.Lon, w.Speed
		}
		g.Time = w.Time
		if g != w {
			t.Errorf("%s %s: stored\n%+v, want\n%+v", k.device, w.Time.Format(time.RFC3339Nano), g, w)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("stored a point nobody may publish: %s %+v", k.device, g)
		}
	}
}

// TestAuthenticatedBrokerEndToEnd: the cloud with a broker that checks the
// cloud's own tokens. A device registered through the data directory
// publishes with its device token (paho, mosquitto_pub, OwnTracks) and its
// positions are stored under its id, speed in m/s; publishes for another
// device and forged tokens store nothing; removing the device ends its
// session within seconds and refuses it afterwards.
func TestAuthenticatedBrokerEndToEnd(t *testing.T) {
	s := startAuthStack(t)
	ctx := context.Background()
	a, st, err := cloud.OpenAuth(ctx, s.cfg.Data, s.cfg.Auth)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := a.AddUser(ctx, "ann", "correct horse battery staple"); err != nil {
		t.Fatal(err)
	}
	tok1, err := a.AddDevice(ctx, "ann", "van-1", "Van 1", nil)
	if err != nil {
		t.Fatal(err)
	}
	tok2, err := a.AddDevice(ctx, "ann", "van-2", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	url := s.broker.TCPURL
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	want := map[key]position.Position{}

	// paho, with the device token.
	c1 := e2eMustConnect(t, url, "van-1", tok1, nil)
	for i := range 3 {
		p := position.Position{Time: base.Add(time.Duration(i)*time.Second + 250*time.Millisecond), Lat: 52.37 + float64(i)/100, Lon: 4.89,
			Speed: 1.5, Course: 90, HDOP: 0.9, Sats: 9, Fix: position.Fix3D,
			Set: position.Required | position.FieldSpeed | position.FieldCourse | position.FieldHDOP | position.FieldSats | position.FieldFix}
		e2ePublish(t, c1, "devices/van-1/positions", p.AppendJSON(nil))
		want[key{"van-1", p.Time.UnixNano()}] = p
	}

	// mosquitto_pub, with the same token under another client id of the device.
	mp := position.Position{Time: base.Add(10 * time.Second), Lat: 52.4, Lon: 4.9, Alt: 3.5, Set: position.Required | position.FieldAlt}
	host, port, _ := net.SplitHostPort(s.broker.Addr(broker.ListenerTCP).String())
	out, err := exec.Command("mosquitto_pub", "-h", host, "-p", port, "-q", "1", "-i", "van-1/mosq", "-u", "van-1", "-P", tok1,
		"-t", "devices/van-1/positions", "-m", string(mp.AppendJSON(nil))).CombinedOutput()
	if err != nil {
		t.Fatalf("mosquitto_pub: %v: %s", err, out)
	}
	want[key{"van-1", mp.Time.UnixNano()}] = mp

	// OwnTracks, on the app's default topic and in the owner form (the
	// device token carries owner ann).
	for i, topic := range []string{"owntracks/van-1/phone", "owntracks/ann/van-1"} {
		tst := base.Add(time.Duration(20+i) * time.Second)
		lat := 48.87 + float64(i)/100
		e2ePublish(t, c1, topic, e2eLocation(tst, lat))
		want[key{"van-1", tst.UnixNano()}] = position.Position{Time: tst, Lat: lat, Lon: 2.34916, Alt: 13, Speed: 15, Course: 270, Acc: 75, Batt: 87,
			Set: position.Required | position.FieldAlt | position.FieldSpeed | position.FieldCourse | position.FieldAcc | position.FieldBatt}
	}

	// van-1 publishing for van-2: denied, and a 3.1.1 client is disconnected.
	lost := make(chan struct{})
	spoof := e2eMustConnect(t, url, "van-1/spoof", tok1, lost)
	_ = spoof.Publish("devices/van-2/positions", 1, false,
		(&position.Position{Time: base.Add(30 * time.Second), Lat: 1, Lon: 1, Set: position.Required}).AppendJSON(nil)).WaitTimeout(2 * time.Second)
	_ = spoof.Publish("owntracks/van-2/phone", 1, false, e2eLocation(base.Add(31*time.Second), 1)).WaitTimeout(2 * time.Second)
	select {
	case <-lost:
	case <-time.After(5 * time.Second):
		t.Error("a device publishing on another device's topic stayed connected")
	}

	// Forged and misused tokens are refused at CONNECT.
	foreign, err := token.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	forged, err := token.Sign(foreign, &token.Claims{
		RegisteredClaims: jwt.RegisteredClaims{Issuer: s.cfg.Auth.Issuer, Subject: "van-2", Audience: jwt.ClaimStrings{auth.AudienceMQTT},
			IssuedAt: jwt.NewNumericDate(time.Now()), ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)), ID: "forged-1"},
		ClientID: "van-2", Scope: broker.ScopeDevice, Owner: "ann",
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, id, user, tok string }{
		{"token signed with another key", "van-2", "van-2", forged},
		{"van-2's token as van-1", "van-1", "van-1", tok2},
		{"van-2's token with van-1's client id", "van-1", "", tok2},
		{"no token", "van-2", "van-2", ""},
	} {
		if c, err := e2eConnect(url, tc.id, tc.user, tc.tok, nil); err == nil {
			c.Disconnect(0)
			t.Errorf("%s: connected", tc.name)
		}
	}

	// van-2 itself is fine: its one position is all it has.
	c2 := e2eMustConnect(t, url, "van-2", tok2, nil)
	p2 := position.Position{Time: base.Add(40 * time.Second), Lat: -33.9, Lon: 18.4, Set: position.Required}
	e2ePublish(t, c2, "devices/van-2/positions", p2.AppendJSON(nil))
	want[key{"van-2", p2.Time.UnixNano()}] = p2

	s.waitFor(t, fmt.Sprintf("%d points in InfluxDB", len(want)), func() bool { return s.count(t) >= len(want) })
	time.Sleep(300 * time.Millisecond) // a stray point would be written by now
	checkPositions(t, s.stored(t), want)

	// Removing van-1 revokes its token: the broker ends its session within
	// a few seconds and refuses it afterwards.
	c1.Disconnect(100)
	lost = make(chan struct{})
	live := e2eMustConnect(t, url, "van-1", tok1, lost)
	removed := time.Now()
	if err := a.RemoveDevice(ctx, "van-1"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lost:
		t.Logf("van-1 disconnected %v after its removal", time.Since(removed).Round(time.Millisecond))
	case <-time.After(5 * time.Second):
		t.Fatal("van-1 still connected 5 s after its removal")
	}
	if live.IsConnectionOpen() {
		t.Error("paho still reports the connection open")
	}
	if c, err := e2eConnect(url, "van-1", "van-1", tok1, nil); err == nil {
		c.Disconnect(0)
		t.Fatal("a removed device connected again")
	} else if !strings.Contains(strings.ToLower(err.Error()), "not authorized") {
		t.Errorf("reconnect of a removed device: %v, want not authorized", err)
	}
	// van-2 is unaffected.
	if c, err := e2eConnect(url, "van-2/again", "van-2", tok2, nil); err != nil {
		t.Errorf("van-2 after van-1's removal: %v", err)
	} else {
		c.Disconnect(0)
	}
}
