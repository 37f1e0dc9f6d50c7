package cloud_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"trackgate/cloud/auth"
	"trackgate/firmware-bridge/gt06"
	"trackgate/internal/position"
	"trackgate/internal/testenv"
)

// firmwareBridge is a running firmware-bridge process.
type firmwareBridge struct {
	cmd                          *exec.Cmd
	osmand, owntracks, gt06, h02 string // listen addresses
	ops                          string // /metrics and /readyz
	log                          *syncBuffer
}

// startFirmwareBridge runs the firmware-bridge binary against the stack's
// cloud and broker with a service client made as `cloud client add
// --service --scope "bridge devices:resolve"` makes it, its secret in the
// JSON that command prints, in a 0600 file.
func startFirmwareBridge(t testing.TB, s *stack, a *auth.Server, flags ...string) *firmwareBridge {
	t.Helper()
	id, secret, err := a.AddServiceClient(context.Background(), "firmware-bridge", auth.BridgeScopes)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "bridge-client.json")
	js, _ := json.Marshal(map[string]string{"client_id": id, "client_secret": secret})
	if err := os.WriteFile(secretFile, js, 0o600); err != nil {
		t.Fatal(err)
	}
	b := &firmwareBridge{osmand: testenv.FreeAddr(t), owntracks: testenv.FreeAddr(t), gt06: testenv.FreeAddr(t), h02: testenv.FreeAddr(t),
		ops: testenv.FreeAddr(t), log: &syncBuffer{}}
	b.cmd = exec.Command(commandBinary(t, "./firmware-bridge/cmd/firmware-bridge"),
		"--cloud", s.httpURL, "--issuer", s.cfg.Auth.Issuer, "--mqtt", s.broker.TCPURL, "--data", filepath.Join(dir, "data"),
		"--client-id", id, "--client-secret-file", secretFile, "--http", b.ops,
		"--osmand", b.osmand, "--owntracks-http", b.owntracks, "--gt06", b.gt06, "--h02", b.h02)
	b.cmd.Args = append(b.cmd.Args, flags...)
	b.cmd.Stdout, b.cmd.Stderr = b.log, b.log
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if b.cmd.ProcessState == nil {
			_ = b.cmd.Process.Kill()
			_ = b.cmd.Wait()
		}
		if t.Failed() {
			t.Logf("firmware-bridge log:\n%s", b.log.String())
		}
	})
	s.waitFor(t, "the firmware-bridge to be ready", func() bool {
		resp, err := http.Get("http://" + b.ops + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return b
}

// metric is the bridge's metric with this name and labels (as they print,
// e.g. `protocol="gt06",reason="bad_frame"`), 0 when absent.
func (b *firmwareBridge) metric(t testing.TB, name, labels string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + b.ops + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+"{"+labels+"} "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	return 0
}

// roundTrip sends req and returns the status code and body of the answer.
func roundTrip(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

// gt06Frame builds a 0x7878 frame: length, protocol, content, serial, the
// CRC-ITU of length through serial, stop bits.
func gt06Frame(proto byte, content []byte, serial uint16) []byte {
	body := append([]byte{byte(1 + len(content) + 4), proto}, content...)
	body = binary.BigEndian.AppendUint16(body, serial)
	f := append([]byte{0x78, 0x78}, body...)
	f = binary.BigEndian.AppendUint16(f, gt06.CRC(body))
	return append(f, 0x0D, 0x0A)
}

// gt06Login is the login frame of a tracker with a 15-digit IMEI.
func gt06Login(imei string, serial uint16) []byte {
	bcd, err := hex.DecodeString("0" + imei)
	if err != nil {
		panic(err)
	}
	return gt06Frame(0x01, bcd, serial)
}

// gt06Location is a GPS+LBS location frame (0x12) of a fix at t (UTC):
// 9 satellites, speed in km/h, course, north and east, fixed, and a cell.
func gt06Location(t time.Time, lat, lon float64, kmh byte, course uint16, serial uint16) []byte {
	c := []byte{byte(t.Year() - 2000), byte(t.Month()), byte(t.Day()), byte(t.Hour()), byte(t.Minute()), byte(t.Second()), 0xC9}
	c = binary.BigEndian.AppendUint32(c, uint32(math.Round(lat*1_800_000)))
	c = binary.BigEndian.AppendUint32(c, uint32(math.Round(lon*1_800_000)))
	c = append(c, kmh)
	c = binary.BigEndian.AppendUint16(c, 0x1000|0x0400|course)    // positioned, north latitude, east longitude
	c = append(c, 0x01, 0xCC, 0x00, 0x28, 0x7D, 0x00, 0x1F, 0xB8) // MCC 460, MNC 0, LAC, cell
	return gt06Frame(0x12, c, serial)
}

// h02Message is an H02 V1 position at t (UTC), speed in knots.
func h02Message(imei string, t time.Time, lat, lon, knots float64, course int) string {
	dm := func(deg float64, width int, pos, neg string) string {
		hemi := pos
		if deg < 0 {
			deg, hemi = -deg, neg
		}
		d := math.Floor(deg)
		return fmt.Sprintf("%0*d%07.4f,%s", width, int(d), (deg-d)*60, hemi)
	}
	return fmt.Sprintf("*HQ,%s,V1,%s,A,%s,%s,%.2f,%d,%s,FFFFFBFF#", imei, t.Format("150405"), dm(lat, 2, "N", "S"), dm(lon, 3, "E", "W"), knots, course, t.Format("020106"))
}

// gt06Conn is a tracker's TCP connection.
type gt06Conn struct {
	t *testing.T
	net.Conn
}

func dialTracker(t *testing.T, addr string) *gt06Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &gt06Conn{t, c}
}

// send writes b and reads the n bytes of the server's answer (none when n
// is 0).
func (c *gt06Conn) send(b []byte, n int) []byte {
	c.t.Helper()
	if _, err := c.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
	if n == 0 {
		return nil
	}
	buf := make([]byte, n)
	c.SetReadDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil {
		c.t.Fatalf("reading the answer to % X: %v", b, err)
	}
	return buf
}

// closedByServer reports whether the server closes the connection (within
// 15 s) without answering.
func (c *gt06Conn) closedByServer() bool {
	c.SetReadDeadline(time.Now().Add(15 * time.Second))
	n, err := c.Read(make([]byte, 64))
	return n == 0 && err == io.EOF
}

// TestFirmwareBridgeEndToEnd: the firmware-bridge process, with its own
// service credentials, takes positions from the OsmAnd protocol (Traccar
// Client's query form and its JSON body), OwnTracks HTTP, GT06 and H02,
// finds each device by its id or identifiers through the cloud's API, and
// publishes them through the broker into InfluxDB under the device's id.
// Unknown ids and wrong secrets are refused, broken frames close their
// connection alone, and the counters say so.
func TestFirmwareBridgeEndToEnd(t *testing.T) {
	s := startAuthStack(t)
	ctx := context.Background()
	a := s.openAuth(t)
	if err := a.AddUser(ctx, "ann", "correct horse battery staple"); err != nil {
		t.Fatal(err)
	}
	phoneToken := ""
	for _, id := range []string{"van-osm", "keyed", "tracker-gt06", "tracker-h02", "keyed-gt06", "phone"} {
		tok, err := a.AddDevice(ctx, "ann", id, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		if id == "phone" {
			phoneToken = tok
		}
	}
	// The owner sets identifiers, speed units and secrets through the API.
	user := s.userToken(t, "ann", "correct horse battery staple")
	api := func(method, path string, body any, want int) []byte {
		t.Helper()
		var r io.Reader
		if body != nil {
			js, _ := json.Marshal(body)
			r = bytes.NewReader(js)
		}
		req, _ := http.NewRequest(method, s.httpURL+path, r)
		req.Header.Set("Authorization", "Bearer "+user)
		req.Header.Set("Content-Type", "application/json")
		code, out := roundTrip(t, req)
		if code != want {
			t.Fatalf("%s %s: %d %s, want %d", method, path, code, out, want)
		}
		return []byte(out)
	}
	api("PATCH", "/api/v1/devices/van-osm", map[string]any{"identifiers": []string{"48241179"}}, 200)
	api("PATCH", "/api/v1/devices/tracker-gt06", map[string]any{"identifiers": []string{"123456789012345"}}, 200)
	api("PATCH", "/api/v1/devices/tracker-h02", map[string]any{"identifiers": []string{"4209917484"}}, 200)
	api("PATCH", "/api/v1/devices/keyed-gt06", map[string]any{"identifiers": []string{"868120100000001"}}, 200)
	api("PATCH", "/api/v1/devices/keyed", map[string]any{"speed_unit": "mps"}, 200)
	// An identifier is one device's: another device's id or identifier is refused.
	api("PATCH", "/api/v1/devices/keyed", map[string]any{"identifiers": []string{"48241179"}}, 409)
	api("PATCH", "/api/v1/devices/keyed", map[string]any{"identifiers": []string{"van-osm"}}, 409)
	api("PATCH", "/api/v1/devices/keyed", map[string]any{"speed_unit": "furlongs"}, 400)
	var sec struct{ Secret string }
	json.Unmarshal(api("POST", "/api/v1/devices/keyed/secret", nil, 201), &sec)
	api("POST", "/api/v1/devices/keyed-gt06/secret", nil, 201)
	var dev struct {
		Identifiers []string `json:"identifiers"`
		Secret      bool     `json:"secret"`
		SpeedUnit   string   `json:"speed_unit"`
	}
	json.Unmarshal(api("GET", "/api/v1/devices/keyed", nil, 200), &dev)
	if !dev.Secret || dev.SpeedUnit != "mps" || len(dev.Identifiers) != 0 {
		t.Fatalf("device keyed = %+v", dev)
	}
	// The lookup is a service's: a person's token may not use it.
	api("GET", "/api/v1/identifiers/48241179", nil, 403)

	b := startFirmwareBridge(t, s, a, "--log-level", "debug")
	base := time.Now().Add(-30 * time.Minute).Truncate(time.Second).UTC()
	want := map[key]position.Position{}
	at := func(i int) time.Time { return base.Add(time.Duration(i) * time.Second) }

	// OsmAnd: the legacy Traccar Client's query (speed in knots), and the
	// JSON body of Traccar Client 9 (m/s).
	osmand := func(method, target, contentType, body, basicPass string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+b.osmand+target, strings.NewReader(body))
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		if basicPass != "" {
			req.SetBasicAuth("keyed", basicPass)
		}
		return roundTrip(t, req)
	}
	for _, tc := range []struct {
		name, method, target, ct, body, pass string
		code                                 int
		device                               string
		pos                                  position.Position
	}{
		{name: "Traccar Client query", method: "POST", code: 200, device: "van-osm",
			target: fmt.Sprintf("/?id=48241179&timestamp=%d&lat=52.52&lon=13.405&speed=10&bearing=90&altitude=34&accuracy=5&batt=87", at(0).Unix()),
			pos: position.Position{Time: at(0), Lat: 52.52, Lon: 13.405, Speed: 10 * 1852.0 / 3600, Course: 90, Alt: 34, Acc: 5, Batt: 87,
				Set: position.Required | position.FieldSpeed | position.FieldCourse | position.FieldAlt | position.FieldAcc | position.FieldBatt}},
		{name: "Traccar Client 9 JSON", method: "POST", target: "/", ct: "application/json", code: 200, device: "van-osm",
			body: `{"device_id":"48241179","location":{"timestamp":"` + at(1).Format("2006-01-02T15:04:05.000Z") + `","coords":{"latitude":52.53,"longitude":13.41,"accuracy":4,"speed":3.5,"heading":180,"altitude":40},"is_moving":true,"odometer":0,"event":"motionchange","battery":{"level":0.5,"is_charging":false},"activity":{"type":"in_vehicle"},"extras":{}}}`,
			pos: position.Position{Time: at(1), Lat: 52.53, Lon: 13.41, Speed: 3.5, Course: 180, Alt: 40, Acc: 4, Batt: 50,
				Set: position.Required | position.FieldSpeed | position.FieldCourse | position.FieldAlt | position.FieldAcc | position.FieldBatt}},
		{name: "the device id itself, GET", method: "GET", code: 200, device: "van-osm",
			target: fmt.Sprintf("/?deviceid=van-osm&timestamp=%d&lat=52.54&lon=13.42", at(2).Unix()),
			pos:    position.Position{Time: at(2), Lat: 52.54, Lon: 13.42, Set: position.Required}},
		{name: "unknown id, JSON", method: "POST", target: "/", ct: "application/json", code: 404,
			body: `{"device_id":"99999999","location":{"timestamp":"` + at(3).Format(time.RFC3339) + `","coords":{"latitude":1,"longitude":2}}}`},
		{name: "unknown id, query", method: "GET", code: 400, target: fmt.Sprintf("/?id=99999999&timestamp=%d&lat=1&lon=2", at(3).Unix())},
		{name: "bad latitude", method: "GET", code: 400, target: fmt.Sprintf("/?id=48241179&timestamp=%d&lat=abc&lon=2", at(3).Unix())},
		{name: "secret missing", method: "GET", code: 401, target: fmt.Sprintf("/?id=keyed&timestamp=%d&lat=1&lon=2", at(3).Unix())},
		{name: "secret wrong", method: "GET", code: 401, target: fmt.Sprintf("/?id=keyed&key=%s&timestamp=%d&lat=1&lon=2", "x"+sec.Secret, at(3).Unix())},
		{name: "secret as key, speed in m/s for this device", method: "GET", code: 200, device: "keyed",
			target: fmt.Sprintf("/?id=keyed&key=%s&timestamp=%d&lat=48.1&lon=11.5&speed=3", sec.Secret, at(4).Unix()),
			pos:    position.Position{Time: at(4), Lat: 48.1, Lon: 11.5, Speed: 3, Set: position.Required | position.FieldSpeed}},
		{name: "secret as the Basic auth password", method: "GET", code: 200, device: "keyed", pass: sec.Secret,
			target: fmt.Sprintf("/?id=keyed&timestamp=%d&lat=48.2&lon=11.6", at(5).Unix()),
			pos:    position.Position{Time: at(5), Lat: 48.2, Lon: 11.6, Set: position.Required}},
		{name: "wrong Basic auth password", method: "GET", code: 401, pass: "nope",
			target: fmt.Sprintf("/?id=keyed&timestamp=%d&lat=48.2&lon=11.6", at(6).Unix())},
	} {
		code, body := osmand(tc.method, tc.target, tc.ct, tc.body, tc.pass)
		if code != tc.code {
			t.Errorf("OsmAnd %s: %d %q, want %d", tc.name, code, body, tc.code)
		}
		if tc.device != "" {
			want[key{tc.device, tc.pos.Time.UnixNano()}] = tc.pos
		}
	}

	// OwnTracks HTTP: Basic auth with the device token.
	owntracks := func(user, pass, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://"+b.owntracks+"/pub", strings.NewReader(body))
		req.SetBasicAuth(user, pass)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Limit-U", user)
		req.Header.Set("X-Limit-D", "phone")
		return roundTrip(t, req)
	}
	loc := string(e2eLocation(at(10), 48.85))
	if code, body := owntracks("ann", phoneToken, loc); code != 200 || body != "[]" {
		t.Errorf("OwnTracks: %d %q, want 200 []", code, body)
	}
	want[key{"phone", at(10).UnixNano()}] = position.Position{Time: at(10), Lat: 48.85, Lon: 2.34916, Acc: 75, Alt: 13, Batt: 87, Course: 270, Speed: 54 / 3.6,
		Set: position.Required | position.FieldAcc | position.FieldAlt | position.FieldBatt | position.FieldCourse | position.FieldSpeed}
	if code, _ := owntracks("ann", phoneToken[:len(phoneToken)-4]+"AAAA", string(e2eLocation(at(11), 1))); code != 401 {
		t.Errorf("OwnTracks with a forged token: %d, want 401", code)
	}
	if code, _ := owntracks("bob", phoneToken, string(e2eLocation(at(11), 1))); code != 401 {
		t.Errorf("OwnTracks as another user: %d, want 401", code)
	}
	if code, body := owntracks("phone", phoneToken, ""); code != 200 || body != "[]" {
		t.Errorf("OwnTracks empty body: %d %q, want 200 []", code, body)
	}

	// GT06: login (the IMEI is an identifier of tracker-gt06), heartbeat,
	// locations; every answer echoes the serial.
	g := dialTracker(t, b.gt06)
	if got, wantAck := g.send(gt06Login("123456789012345", 1), 10), gt06Frame(0x01, nil, 1); !bytes.Equal(got, wantAck) {
		t.Fatalf("login answer % X, want % X", got, wantAck)
	}
	if got, wantAck := g.send(gt06Frame(0x13, []byte{0x46, 0x05, 0x04, 0x00, 0x02}, 2), 10), gt06Frame(0x13, nil, 2); !bytes.Equal(got, wantAck) {
		t.Fatalf("heartbeat answer % X, want % X", got, wantAck)
	}
	for i := range 3 {
		tm := at(20 + i)
		g.send(gt06Location(tm, 22.5+float64(i)/100, 114.05, 36, 270, uint16(3+i)), 0)
		want[key{"tracker-gt06", tm.UnixNano()}] = position.Position{Time: tm, Lat: 22.5 + float64(i)/100, Lon: 114.05, Speed: 10, Course: 270, Sats: 9, Fix: position.Fix2D,
			Set: position.Required | position.FieldSpeed | position.FieldCourse | position.FieldSats | position.FieldFix}
	}
	// Hostile input closes its own connection only.
	for name, frame := range map[string][]byte{
		"wrong CRC":              func() []byte { f := gt06Login("123456789012345", 9); f[len(f)-3] ^= 0xFF; return f }(),
		"garbage":                []byte("GET / HTTP/1.1\r\n\r\n"),
		"before a login":         gt06Location(at(30), 1, 1, 0, 0, 1),
		"unknown IMEI":           gt06Login("350000000000001", 1),
		"a device with a secret": gt06Login("868120100000001", 1),
	} {
		c := dialTracker(t, b.gt06)
		c.send(frame, 0)
		if !c.closedByServer() {
			t.Errorf("GT06 %s: the connection stays open", name)
		}
	}
	tm := at(25)
	g.send(gt06Location(tm, 22.6, 114.06, 0, 0, 10), 0)
	want[key{"tracker-gt06", tm.UnixNano()}] = position.Position{Time: tm, Lat: 22.6, Lon: 114.06, Speed: 0, Course: 0, Sats: 9, Fix: position.Fix2D,
		Set: position.Required | position.FieldSpeed | position.FieldCourse | position.FieldSats | position.FieldFix}

	// H02: each message names its device; V1 positions are answered.
	h := dialTracker(t, b.h02)
	for i := range 2 {
		tm := at(40 + i)
		h.send([]byte(h02Message("4209917484", tm, -33.9+float64(i)/100, 18.4, 20, 45)), 0)
		want[key{"tracker-h02", tm.UnixNano()}] = position.Position{Time: tm, Lat: -33.9 + float64(i)/100, Lon: 18.4, Speed: 20 * 1852.0 / 3600, Course: 45, Fix: position.Fix2D,
			Set: position.Required | position.FieldSpeed | position.FieldCourse | position.FieldFix}
	}
	hu := dialTracker(t, b.h02)
	hu.send([]byte(h02Message("1111111111", at(42), 1, 1, 0, 0)), 0)
	if !hu.closedByServer() {
		t.Error("H02 unknown IMEI: the connection stays open")
	}

	s.waitFor(t, fmt.Sprintf("%d points in InfluxDB", len(want)), func() bool { return s.count(t) >= len(want) })
	time.Sleep(300 * time.Millisecond) // a stray point would be written by now
	checkPositions(t, s.stored(t), want)

	for _, m := range []struct {
		name, labels string
		min          float64
	}{
		{"trackgate_bridge_positions_total", `protocol="osmand"`, 5},
		{"trackgate_bridge_positions_total", `protocol="owntracks-http"`, 1},
		{"trackgate_bridge_positions_total", `protocol="gt06"`, 4},
		{"trackgate_bridge_positions_total", `protocol="h02"`, 2},
		{"trackgate_bridge_dropped_total", `protocol="osmand",reason="unknown_device"`, 2},
		{"trackgate_bridge_dropped_total", `protocol="osmand",reason="bad_secret"`, 3},
		{"trackgate_bridge_dropped_total", `protocol="gt06",reason="needs_secret"`, 1},
		{"trackgate_bridge_connections_closed_total", `protocol="gt06",reason="bad_frame"`, 3},
		{"trackgate_bridge_connections_closed_total", `protocol="gt06",reason="refused"`, 2},
		{"trackgate_bridge_connections_closed_total", `protocol="h02",reason="refused"`, 1},
	} {
		if v := b.metric(t, m.name, m.labels); v < m.min {
			t.Errorf("%s{%s} = %v, want at least %v", m.name, m.labels, v, m.min)
		}
	}
	if !strings.Contains(b.log.String(), "trackctl devices add 350000000000001") {
		t.Error("the unknown IMEI is not logged with how to register it")
	}

	// SIGTERM: the bridge drains and exits 0.
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := b.cmd.Wait(); err != nil {
		t.Errorf("firmware-bridge after SIGTERM: %v", err)
	}
}
