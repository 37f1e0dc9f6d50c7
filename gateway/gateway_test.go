package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"trackgate/broker"
	"trackgate/hw/gpssim"
	"trackgate/hw/receiver"
	"trackgate/internal/position"
)

var quiet = slog.New(slog.DiscardHandler)

// startSim runs a simulated receiver on a pty until the test ends.
func startSim(t testing.TB, cfg gpssim.Config) *gpssim.Sim {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	sim, err := gpssim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sim.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("gpssim: %v", err)
		}
	})
	select {
	case <-sim.Ready():
	case err := <-done:
		t.Fatalf("gpssim stopped: %v", err)
	}
	return sim
}

// running is a gateway under test.
type running struct {
	*Gateway
	mqtt, http string
	stop       func()
}

// startGateway runs a gateway with a loopback broker and HTTP server.
func startGateway(t testing.TB, cfg Config) *running {
	t.Helper()
	cfg.Broker = broker.Config{TCP: "127.0.0.1:0", InsecureAllowAll: true, Logger: quiet}
	cfg.HTTP = "127.0.0.1:0"
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	var once sync.Once
	r := &running{Gateway: g, stop: func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("gateway: %v", err)
			}
		})
	}}
	t.Cleanup(r.stop)
	deadline := time.Now().Add(10 * time.Second)
	for g.Broker().Addr(broker.ListenerTCP) == nil || g.HTTP().Addr() == nil {
		if time.Now().After(deadline) {
			t.Fatal("gateway not listening after 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.mqtt = "tcp://" + g.Broker().Addr(broker.ListenerTCP).String()
	r.http = "http://" + g.HTTP().Addr().String()
	return r
}

// message is one MQTT message received, with its arrival time.
type message struct {
	topic   string
	payload []byte
	at      time.Time
}

// subscribe subscribes to filter at QoS 1 and returns the messages.
func subscribe(t testing.TB, url, filter string) <-chan message {
	t.Helper()
	ch := make(chan message, 10000)
	opts := paho.NewClientOptions().AddBroker(url).SetClientID("test-" + strings.ReplaceAll(filter, "/", "-")).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
			ch <- message{m.Topic(), m.Payload(), time.Now()}
		})
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	if tok := c.Subscribe(filter, 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return ch
}

// truth records the fixes a simulator wrote, by time.
type truth struct {
	mu    sync.Mutex
	fixes map[time.Time]gpssim.Fix
}

func (tr *truth) onEpoch(f gpssim.Fix, _ time.Time) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.fixes == nil {
		tr.fixes = make(map[time.Time]gpssim.Fix)
	}
	tr.fixes[f.Time] = f
}

func (tr *truth) get(at time.Time) (gpssim.Fix, bool) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	f, ok := tr.fixes[at]
	return f, ok
}

// compare checks a published position against the fix the simulator wrote:
// every field present must match, and with complete is set, every field of
// the profile must be present.
func compare(t *testing.T, p position.Position, f gpssim.Fix, complete bool) {
	t.Helper()
	checks := []struct {
		name     string
		bit      position.Fields
		got, exp float64
		tol      float64
	}{
		{"lat", position.FieldLat, p.Lat, f.Lat, 1e-7},
		{"lon", position.FieldLon, p.Lon, f.Lon, 1e-7},
		{"alt", position.FieldAlt, p.Alt, f.Alt, 0.01},
		{"geoid", position.FieldGeoid, p.Geoid, f.Geoid, 0.01},
		{"speed", position.FieldSpeed, p.Speed, f.Speed, 0.01},
		{"course", position.FieldCourse, p.Course, f.Course, 0.01},
		{"hdop", position.FieldHDOP, p.HDOP, f.HDOP, 1e-9},
		{"pdop", position.FieldPDOP, p.PDOP, f.PDOP, 1e-9},
		{"vdop", position.FieldVDOP, p.VDOP, f.VDOP, 1e-9},
		{"sats", position.FieldSats, float64(p.Sats), float64(f.Sats), 0},
	}
	for _, c := range checks {
		switch {
		case !p.Has(c.bit):
			if complete {
				t.Errorf("fix at %v: no %s", p.Time, c.name)
			}
		case math.Abs(c.got-c.exp) > c.tol:
			t.Errorf("fix at %v: %s = %v, want %v", p.Time, c.name, c.got, c.exp)
		}
	}
	if p.Fix != position.Fix3D {
		t.Errorf("fix at %v: fix %q, want 3d", p.Time, p.Fix)
	}
}

// payload decodes a message's JSON payload.
func payload[T any](t *testing.T, m message) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(m.payload, &v); err != nil {
		t.Fatalf("%s: %v: %s", m.topic, err, m.payload)
	}
	return v
}

func decode(t *testing.T, m message) position.Position {
	t.Helper()
	return payload[position.Position](t, m)
}

func status(t *testing.T, m message) receiver.Status {
	t.Helper()
	return payload[receiver.Status](t, m)
}

// TestSerialReceiver runs a u-blox receiver at 10 Hz on a pseudo-terminal at
// 9600 baud with garbage on the line, lets the gateway find the speed, and
// compares every published fix with what the receiver wrote.
func TestSerialReceiver(t *testing.T) {
	var tr truth
	link := filepath.Join(t.TempDir(), "gps0")
	faults, _ := gpssim.ParseFaults("garbage=0.1")
	startSim(t, gpssim.Config{Link: link, Rate: 10, Baud: 9600, Profile: gpssim.UBlox, Faults: faults, Seed: 1, OnEpoch: tr.onEpoch})
	spec, err := receiver.ParseSpec("serial:" + link + "=van")
	if err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, Config{Sources: []receiver.Spec{spec}, Receiver: receiver.Config{StatusEvery: 200 * time.Millisecond}})
	positions := subscribe(t, g.mqtt, "devices/van/positions")

	const want = 30
	var prev time.Time
	for n := 0; n < want; n++ {
		select {
		case m := <-positions:
			p := decode(t, m)
			f, ok := tr.get(p.Time)
			if !ok {
				t.Fatalf("published fix at %v was never written", p.Time)
			}
			compare(t, p, f, true)
			if !p.Time.After(prev) {
				t.Errorf("fix at %v after %v: out of order or repeated", p.Time, prev)
			}
			prev = p.Time
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d fixes after 10 s", n)
		}
	}

	// The retained status, to a subscriber that comes late.
	statuses := subscribe(t, g.mqtt, "devices/van/status")
	deadline := time.After(5 * time.Second)
	for done := false; !done; {
		select {
		case m := <-statuses:
			s := status(t, m)
			if s.State != receiver.StateOnline || s.Baud != 9600 || s.SatsInView == nil {
				t.Fatalf("status %s", m.payload)
			}
			done = s.Counters.Fixes >= want && s.Counters.GarbageBytes > 0 && s.Counters.Epochs >= want
		case <-deadline:
			t.Fatal("no status with fresh counters")
		}
	}

	// Counters on /metrics.
	body := get(t, g.http+"/metrics")
	for _, metric := range []string{
		`trackgate_receiver_sentences_total{device="van",source="serial:` + link + `"}`,
		`trackgate_receiver_garbage_bytes_total{device="van"`,
		`trackgate_receiver_state{device="van",source="serial:` + link + `",state="online"} 1`,
	} {
		if !strings.Contains(body, metric) {
			t.Errorf("/metrics lacks %s", metric)
		}
	}
	if !strings.Contains(get(t, g.http+"/status"), `"state": "online"`) {
		t.Error("/status does not show the source online")
	}

	// Stopping the gateway publishes the device offline, retained.
	g.stop()
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(b)
}

// TestUnplugReplug unplugs the receiver and plugs it back in, twice, and
// checks the device goes offline and comes back, the reader resumes within
// 2 s of the receiver's return, and the retained status ends offline when
// the gateway stops.
func TestUnplugReplug(t *testing.T) {
	link := filepath.Join(t.TempDir(), "gps0")
	faults, _ := gpssim.ParseFaults("unplug=1500ms,replug=1s")
	sim := startSim(t, gpssim.Config{Link: link, Rate: 10, Baud: 4800, Profile: gpssim.MTK, Faults: faults, Seed: 2})
	spec, _ := receiver.ParseSpec("serial:" + link + "=van")
	g := startGateway(t, Config{Sources: []receiver.Spec{spec}})
	positions := subscribe(t, g.mqtt, "devices/van/positions")
	statuses := subscribe(t, g.mqtt, "devices/van/status")

	// Watch the pty come and go.
	replugged := make(chan time.Time, 10)
	go func() {
		plugged := true
		for range 3000 {
			p := sim.Path() != ""
			if p && !plugged {
				replugged <- time.Now()
			}
			plugged = p
			time.Sleep(5 * time.Millisecond)
		}
	}()
	var resumes []time.Duration
	for len(resumes) < 2 {
		var back time.Time
		select {
		case back = <-replugged:
		case <-time.After(5 * time.Second):
			t.Fatalf("no replug after 5 s (%d so far)", len(resumes))
		}
		for first := true; first; {
			select {
			case m := <-positions:
				if m.at.After(back) {
					resumes = append(resumes, m.at.Sub(back))
					first = false
				}
			case <-time.After(3 * time.Second):
				t.Fatal("no fix within 3 s of the replug")
			}
		}
	}
	t.Logf("resumed %v after replug", resumes)
	for _, d := range resumes {
		if d > 2*time.Second {
			t.Errorf("resumed %v after replug, want within 2 s", d)
		}
	}
	g.stop()

	var states []string
	var last receiver.Status
	for more := true; more; {
		select {
		case m := <-statuses:
			last = status(t, m)
			if len(states) == 0 || states[len(states)-1] != last.State {
				states = append(states, last.State)
			}
		case <-time.After(time.Second):
			more = false
		}
	}
	got := strings.Join(states, ",")
	if !strings.HasPrefix(got, "online,offline,online,offline,online") || last.State != receiver.StateOffline {
		t.Errorf("states %s, want online and offline in turn, ending offline", got)
	}
	if last.Counters.Reconnects < 2 || last.Receiver == "" {
		t.Errorf("final status %+v: want 2 reconnects and the MTK firmware", last)
	}
}

// TestReadOnly checks that a read-only gateway never writes to the
// receiver, and that otherwise it asks an MTK receiver for its firmware.
func TestReadOnly(t *testing.T) {
	for _, readOnly := range []bool{true, false} {
		t.Run(fmt.Sprintf("read-only=%v", readOnly), func(t *testing.T) {
			link := filepath.Join(t.TempDir(), "gps0")
			sim := startSim(t, gpssim.Config{Link: link, Rate: 10, Profile: gpssim.MTK, Seed: 3})
			spec, _ := receiver.ParseSpec("serial:" + link + "@9600=van")
			g := startGateway(t, Config{Sources: []receiver.Spec{spec}, Receiver: receiver.Config{ReadOnly: readOnly, StatusEvery: 100 * time.Millisecond}})
			statuses := subscribe(t, g.mqtt, "devices/van/status")
			deadline := time.After(5 * time.Second)
			for {
				select {
				case m := <-statuses:
					s := status(t, m)
					if s.Counters.Fixes < 10 {
						continue
					}
					if readOnly && (sim.Received() != 0 || s.Receiver != "") {
						t.Fatalf("read-only: %d bytes written to the receiver, receiver %q", sim.Received(), s.Receiver)
					}
					if !readOnly && (sim.Received() == 0 || !strings.HasPrefix(s.Receiver, "MTK ")) {
						continue // the answer may take an epoch or two
					}
					return
				case <-deadline:
					t.Fatalf("no status with 10 fixes (and, unless read-only, the receiver's firmware); %d bytes written to the receiver", sim.Received())
				}
			}
		})
	}
}
