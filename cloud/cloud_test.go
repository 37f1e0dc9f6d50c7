package cloud_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"trackgate/broker"
	"trackgate/broker/brokertest"
	"trackgate/cloud"
	"trackgate/cloud/auth"
	"trackgate/cloud/influx"
	"trackgate/cloud/ingest"
	"trackgate/internal/position"
	"trackgate/internal/testenv"
	"trackgate/internal/token"
	"trackgate/internal/topic"
)

// stack is a real influxd, a real embedded broker and the cloud process
// between them, all on loopback.
type stack struct {
	influx    *testenv.Influx
	broker    *brokertest.Broker
	store     *influx.Client
	cfg       cloud.Config
	httpURL   string // of the cloud started last
	stopCloud func() // stops the cloud started last
}

func startStack(t testing.TB, ing ingest.Config) *stack {
	t.Helper()
	b := brokertest.Start(t, broker.Config{})
	s := newStack(t, ing, b.TCPURL)
	s.broker = b
	s.stopCloud = s.startCloud(t)
	return s
}

// newStack starts influxd and configures (without starting) a cloud that
// takes positions from the broker at brokerURL.
func newStack(t testing.TB, ing ingest.Config, brokerURL string) *stack {
	t.Helper()
	inf := testenv.StartInflux(t)
	s := &stack{influx: inf, cfg: cloud.Config{
		HTTP:   "127.0.0.1:0",
		Data:   t.TempDir(),
		Auth:   auth.Config{Issuer: "http://127.0.0.1"},
		MQTT:   ingest.MQTTConfig{Broker: brokerURL},
		Influx: influx.Config{URL: inf.URL, Bucket: inf.Database + "/autogen"},
		Ingest: ing,
		Logger: slog.New(slog.DiscardHandler),
	}}
	store, err := influx.New(s.cfg.Influx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	s.store = store
	return s
}

// startCloud runs the cloud process until the test ends or the returned
// function stops it (gracefully, as on SIGTERM), and waits until it is
// ready.
func (s *stack) startCloud(t testing.TB) (stop func()) {
	t.Helper()
	stop = s.launchCloud(t)
	s.waitReady(t)
	return stop
}

// launchCloud runs the cloud process until the test ends or the returned
// function stops it, and returns once its HTTP server listens (s.httpURL
// set), without waiting for its ingest bridge.
func (s *stack) launchCloud(t testing.TB) (stop func()) {
	t.Helper()
	c, err := cloud.New(s.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("cloud Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	select {
	case <-c.HTTP().Ready():
	case err := <-done:
		t.Fatalf("cloud stopped: %v", err)
	}
	s.httpURL = "http://" + c.HTTP().Addr().String()
	return stop
}

// waitReady waits until the cloud's /readyz answers 200: InfluxDB and the
// broker both reachable.
func (s *stack) waitReady(t testing.TB) {
	t.Helper()
	s.waitFor(t, "the cloud to be ready", func() bool {
		resp, err := http.Get(s.httpURL + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// waitFor polls cond until it holds, failing the test after a minute.
func (s *stack) waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// key identifies a stored point: InfluxDB keeps one per device and time.
type key struct {
	device string
	time   int64
}

// stored reads every position back through a Flux query.
func (s *stack) stored(t *testing.T) map[key]position.Position {
	t.Helper()
	res, err := s.store.Query(context.Background(), `from(bucket: "`+s.store.Bucket()+`")
		|> range(start: 2000-01-01T00:00:00Z, stop: 2100-01-01T00:00:00Z)
		|> filter(fn: (r) => r._measurement == "position")
		|> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")`)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	out := map[key]position.Position{}
	for res.Next() {
		r := res.Record()
		p := position.Position{Time: r.Time().UTC()}
		for _, f := range []struct {
			name string
			bit  position.Fields
			dst  *float64
		}{
			{"lat", position.FieldLat, &p.Lat}, {"lon", position.FieldLon, &p.Lon}, {"alt", position.FieldAlt, &p.Alt},
			{"speed", position.FieldSpeed, &p.Speed}, {"course", position.FieldCourse, &p.Course},
			{"hdop", position.FieldHDOP, &p.HDOP}, {"acc", position.FieldAcc, &p.Acc}, {"batt", position.FieldBatt, &p.Batt},
		} {
			if v, ok := r.ValueByKey(f.name).(float64); ok {
				*f.dst, p.Set = v, p.Set|f.bit
			}
		}
		if v, ok := r.ValueByKey("sats").(int64); ok {
			p.Sats, p.Set = int(v), p.Set|position.FieldSats
		}
		if v, ok := r.ValueByKey("fix").(string); ok {
			p.Fix, p.Set = position.Fix(v), p.Set|position.FieldFix
		}
		p.Set |= position.FieldTime
		device, _ := r.ValueByKey("device").(string)
		out[key{device, p.Time.UnixNano()}] = p
	}
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// count returns how many points InfluxDB holds, through InfluxQL (cheap), or
// -1 while it does not answer.
func (s *stack) count(t testing.TB) int {
	t.Helper()
	body, err := s.influx.Query(`SELECT count(lat) FROM position`)
	if err != nil {
		return -1
	}
	var r struct {
		Results []struct {
			Series []struct {
				Values [][]any `json:"values"`
			} `json:"series"`
		} `json:"results"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("count: %v: %s", err, body)
	}
	if len(r.Results) == 0 || len(r.Results[0].Series) == 0 || len(r.Results[0].Series[0].Values) == 0 {
		return 0
	}
	n, _ := r.Results[0].Series[0].Values[0][1].(float64)
	return int(n)
}

// metric returns the value of one sample from /metrics, e.g.
// `trackgate_ingest_positions_rejected_total{reason="range"}`.
func (s *stack) metric(t testing.TB, name string) float64 {
	t.Helper()
	resp, err := http.Get(s.httpURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

// fleet makes n devices' worth of positions, per positions each, with every
// field set and distinct times, in the past hour.
func fleet(n, per int) map[string][]position.Position {
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	out := map[string][]position.Position{}
	for d := range n {
		rng := rand.New(rand.NewPCG(uint64(d), 7))
		device := fmt.Sprintf("dev-%03d", d)
		for i := range per {
			out[device] = append(out[device], position.Position{
				Time: base.Add(time.Duration(i)*time.Second + time.Duration(d)*time.Millisecond),
				Lat:  rng.Float64()*180 - 90, Lon: rng.Float64()*360 - 180,
				Alt: float64(rng.IntN(4000)) / 10, Speed: rng.Float64() * 40, Course: float64(rng.IntN(3600)) / 10,
				HDOP: 0.5 + float64(rng.IntN(50))/10, Sats: rng.IntN(20), Fix: position.Fix3D,
				Acc: float64(rng.IntN(300)) / 10, Batt: float64(rng.IntN(101)),
				Set: position.Required | position.FieldAlt | position.FieldSpeed | position.FieldCourse | position.FieldHDOP |
					position.FieldSats | position.FieldFix | position.FieldAcc | position.FieldBatt,
			})
		}
	}
	return out
}

// publish sends every device's positions from its own paho client at QoS 1,
// waiting for each PUBACK, and counts them in sent.
func publish(t *testing.T, url string, positions map[string][]position.Position, sent *atomic.Int64) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(positions))
	for device, ps := range positions {
		wg.Go(func() {
			c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(device))
			if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				errs <- fmt.Errorf("%s: connect: %v", device, tok.Error())
				return
			}
			defer c.Disconnect(250)
			for _, p := range ps {
				tok := c.Publish(topic.Device(device, topic.Positions), 1, false, p.AppendJSON(nil))
				if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
					errs <- fmt.Errorf("%s: publish: %v", device, tok.Error())
					return
				}
				sent.Add(1)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// checkStored fails unless InfluxDB holds exactly the published positions.
func (s *stack) checkStored(t *testing.T, published map[string][]position.Position) {
	t.Helper()
	got := s.stored(t)
	want := 0
	for device, ps := range published {
		for _, p := range ps {
			want++
			g, ok := got[key{device, p.Time.UnixNano()}]
			if !ok {
				t.Errorf("%s %s: not stored", device, p.Time.Format(time.RFC3339Nano))
				continue
			}
			if g.Time.Equal(p.Time) {
				g.Time = p.Time // same instant; the location pointer may differ
			}
			if g != p {
				t.Errorf("%s %s: stored %+v, published %+v", device, p.Time.Format(time.RFC3339Nano), g, p)
			}
		}
	}
	if len(got) != want {
		t.Errorf("InfluxDB holds %d points, want exactly %d", len(got), want)
	}
}

// TestEndToEnd: 100 devices publish 10,000 positions with paho at QoS 1, and
// InfluxDB ends up with exactly those 10,000 points and values.
func TestEndToEnd(t *testing.T) {
	s := startStack(t, ingest.Config{})
	published := fleet(100, 100)
	var sent atomic.Int64
	publish(t, s.broker.TCPURL, published, &sent)
	s.waitFor(t, "10,000 points in InfluxDB", func() bool { return s.count(t) == 10000 })
	s.checkStored(t, published)
	if got := s.metric(t, "trackgate_ingest_positions_written_total"); got < 10000 {
		t.Errorf("written_total = %v, want ≥ 10000", got)
	}
}

// outageMidStream has 100 devices publish 10,000 positions; once 3,000 were
// accepted it calls down, once 2,000 more were (or all) it calls up, and then
// it checks that InfluxDB holds exactly what was published.
func (s *stack) outageMidStream(t *testing.T, what string, down, up func()) {
	t.Helper()
	published := fleet(100, 100)
	var sent atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		publish(t, s.broker.TCPURL, published, &sent)
	}()
	s.waitFor(t, "3,000 positions published", func() bool { return sent.Load() >= 3000 })
	down()
	downAt := sent.Load()
	s.waitFor(t, "2,000 more positions published while "+what+" is down", func() bool {
		return sent.Load() >= downAt+2000 || sent.Load() == 10000
	})
	up()
	<-done
	s.waitFor(t, "10,000 points in InfluxDB", func() bool { return s.count(t) == 10000 })
	s.checkStored(t, published)
	t.Logf("%s went down after %d positions had been published and came back after %d", what, downAt, sent.Load())
}

// TestInfluxRestartMidStream kills influxd while positions stream in and
// starts it again: not one accepted position is lost.
func TestInfluxRestartMidStream(t *testing.T) {
	s := startStack(t, ingest.Config{RetryMax: 500 * time.Millisecond})
	s.outageMidStream(t, "InfluxDB", func() {
		s.influx.Kill()
		resp, err := http.Get(s.httpURL + "/readyz")
		if err != nil {
			t.Fatalf("/readyz: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("/readyz with InfluxDB down = %s, want 503", resp.Status)
		}
	}, s.influx.Start)
	if got := s.metric(t, `trackgate_ingest_write_errors_total{kind="transient"}`); got == 0 {
		t.Error("no transient write error counted: was InfluxDB really down during the stream?")
	}
}

// TestCloudRestartMidStream stops the cloud gracefully while positions
// stream in and starts it again: the broker keeps what the ingest bridge had
// not acknowledged and delivers it to the new process, so nothing is lost.
func TestCloudRestartMidStream(t *testing.T) {
	s := startStack(t, ingest.Config{})
	s.outageMidStream(t, "the cloud", func() { s.stopCloud() }, func() { s.stopCloud = s.startCloud(t) })
}

// TestBadPayloads publishes bad payloads between good ones: the bad ones are
// rejected and counted by reason, every good one is stored.
func TestBadPayloads(t *testing.T) {
	s := startStack(t, ingest.Config{})
	now := time.Now().UTC().Truncate(time.Millisecond)
	good := func(i int) string {
		return fmt.Sprintf(`{"time":%q,"lat":52.%d,"lon":4.89}`, now.Add(time.Duration(i)*time.Second).Format(time.RFC3339Nano), i)
	}
	huge := `{"time":"` + now.Format(time.RFC3339) + `","lat":1,"lon":2,"pad":"` + strings.Repeat("x", 100<<10) + `"}`
	bad := []struct{ reason, payload string }{
		{"syntax", `not json at all`},
		{"type", `{"time":"` + now.Format(time.RFC3339) + `","lat":"52.1","lon":4.89}`},
		{"range", `{"time":"` + now.Format(time.RFC3339) + `","lat":91,"lon":4.89}`},
		{"future", `{"time":"2090-01-01T00:00:00Z","lat":52,"lon":4.89}`},
		{"too_large", huge},
	}
	c := paho.NewClient(paho.NewClientOptions().AddBroker(s.broker.TCPURL).SetClientID("mixed"))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer c.Disconnect(250)
	var payloads []string
	for i, b := range bad {
		payloads = append(payloads, good(2*i), b.payload)
	}
	payloads = append(payloads, good(2*len(bad)))
	for _, p := range payloads {
		if tok := c.Publish("devices/mixed/positions", 1, false, p); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	// A batch mixing good and bad elements keeps the good ones.
	batch := `[` + good(100) + `,{"time":"2026-01-01T00:00:00Z","lat":-91,"lon":0},` + good(101) + `]`
	if tok := c.Publish("devices/mixed/positions", 1, false, batch); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	wantGood := len(bad) + 1 + 2
	s.waitFor(t, "the good positions in InfluxDB", func() bool { return s.count(t) == wantGood })
	for reason, want := range map[string]float64{"syntax": 1, "type": 1, "range": 2, "future": 1, "too_large": 1} {
		if got := s.metric(t, `trackgate_ingest_positions_rejected_total{reason="`+reason+`"}`); got != want {
			t.Errorf("rejected{reason=%q} = %v, want %v", reason, got, want)
		}
	}
	if got := s.metric(t, "trackgate_ingest_positions_written_total"); got != float64(wantGood) {
		t.Errorf("written_total = %v, want %d", got, wantGood)
	}
}

// TestMosquittoPub stores a position published by the mosquitto_pub client.
func TestMosquittoPub(t *testing.T) {
	s := startStack(t, ingest.Config{})
	addr := s.broker.Addr(broker.ListenerTCP).String()
	host, port, _ := strings.Cut(addr, ":")
	when := time.Now().UTC().Truncate(time.Millisecond)
	payload := `{"time":"` + when.Format(time.RFC3339Nano) + `","lat":52.370216,"lon":4.895168,"speed":1.5,"sats":7,"fix":"3d"}`
	cmd := exec.Command("mosquitto_pub", "-h", host, "-p", port, "-q", "1", "-i", "mosq-van",
		"-t", "devices/mosq-van/positions", "-m", payload)
	if out, err := cmd.CombinedOutput(); err != nil {
		var ee *exec.Error
		if errors.As(err, &ee) {
			t.Fatalf("mosquitto_pub not installed (%v): run `make tools`", err)
		}
		t.Fatalf("mosquitto_pub: %v: %s", err, out)
	}
	s.waitFor(t, "the position in InfluxDB", func() bool { return s.count(t) == 1 })
	got := s.stored(t)[key{"mosq-van", when.UnixNano()}]
	got.Time = got.Time.In(when.Location())
	want := position.Position{Time: when, Lat: 52.370216, Lon: 4.895168, Speed: 1.5, Sats: 7, Fix: position.Fix3D,
		Set: position.Required | position.FieldSpeed | position.FieldSats | position.FieldFix}
	if got != want {
		t.Fatalf("stored %+v, want %+v", got, want)
	}
}

// TestStoreRefusalIsolated: InfluxDB refuses one position of a batch (a field
// type conflict in its shard); the good positions around it are stored.
func TestStoreRefusalIsolated(t *testing.T) {
	s := startStack(t, ingest.Config{})
	// Make sats a string field in the shard holding 2001.
	old := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := s.store.Write(context.Background(), []byte(fmt.Sprintf("position,device=seed sats=\"x\" %d\n", old.UnixNano()))); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	batch := fmt.Sprintf(`[{"time":%q,"lat":1,"lon":2,"sats":5},{"time":%q,"lat":3,"lon":4,"sats":6},{"time":%q,"lat":5,"lon":6,"sats":7}]`,
		now.Format(time.RFC3339Nano), old.Add(time.Hour).Format(time.RFC3339Nano), now.Add(time.Second).Format(time.RFC3339Nano))
	c := paho.NewClient(paho.NewClientOptions().AddBroker(s.broker.TCPURL).SetClientID("mixed"))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer c.Disconnect(250)
	if tok := c.Publish("devices/mixed/positions", 1, false, batch); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	s.waitFor(t, "the refused position to be counted", func() bool {
		return s.metric(t, `trackgate_ingest_positions_rejected_total{reason="store"}`) == 1
	})
	if n := s.count(t); n != 2 {
		t.Fatalf("InfluxDB holds %d positions, want the 2 good ones", n)
	}
}

// TestDeviceTokenAgainstServedJWKS registers a device through the data
// directory while the cloud serves it (as `cloud device add` does), and
// verifies the device token against the JWKS the running cloud publishes.
func TestDeviceTokenAgainstServedJWKS(t *testing.T) {
	s := startStack(t, ingest.Config{})
	ctx := context.Background()
	a, st, err := cloud.OpenAuth(ctx, s.cfg.Data, s.cfg.Auth)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := a.AddUser(ctx, "ann", "correct horse"); err != nil {
		t.Fatal(err)
	}
	tok, err := a.AddDevice(ctx, "ann", "van", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	v, err := token.NewVerifier(ctx, token.VerifierConfig{
		JWKSURL: s.httpURL + "/.well-known/jwks.json", Issuer: s.cfg.Auth.Issuer, Audience: auth.AudienceMQTT,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := v.Verify(ctx, tok); err != nil || c.Subject != "van" {
		t.Fatalf("device token: %+v, %v", c, err)
	}
}
