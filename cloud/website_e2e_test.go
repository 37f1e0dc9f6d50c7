package cloud_test

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"trackgate/internal/position"
	"trackgate/internal/topic"
)

// tileServer serves one plain 256×256 PNG for every map tile, so that the
// browser test needs no network and its pages log no failed loads.
func tileServer(t *testing.T) *httptest.Server {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 256, 256))
	for i := range img.Pix {
		img.Pix[i] = 0xee
	}
	img.Set(0, 0, color.RGBA{0xcc, 0xcc, 0xcc, 0xff})
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Write(b.Bytes())
	}))
	t.Cleanup(srv.Close)
	return srv
}

// ride is n positions one second apart from start: a loop around a
// harbour with the speed and the altitude rising and falling, as a bike or
// a van records it.
func ride(start time.Time, n int, phase float64) []position.Position {
	out := make([]position.Position, n)
	lat, lon := 53.5413, 9.9842
	for i := range out {
		a := float64(i)/float64(n)*2*math.Pi + phase
		speed := 8 + 6*math.Sin(float64(i)/90)
		course := math.Mod(a*180/math.Pi+90, 360)
		lat += speed * math.Cos(course*math.Pi/180) / 111_320
		lon += speed * math.Sin(course*math.Pi/180) / (111_320 * math.Cos(lat*math.Pi/180))
		out[i] = position.Position{Time: start.Add(time.Duration(i) * time.Second), Lat: lat, Lon: lon,
			Alt: 20 + 15*math.Sin(float64(i)/300), Speed: speed, Course: course, Sats: 11, HDOP: 0.8, Fix: position.Fix3D,
			Batt: 90 - float64(i)/float64(n)*40,
			Set: position.Required | position.FieldAlt | position.FieldSpeed | position.FieldCourse | position.FieldSats |
				position.FieldHDOP | position.FieldFix | position.FieldBatt}
	}
	return out
}

// record publishes a recording session of device: start at the first
// position's time, the positions at QoS 1, stop at the last one's.
func record(t *testing.T, c paho.Client, device, name string, ps []position.Position) {
	t.Helper()
	e2ePublish(t, c, topic.Device(device, topic.Session), sessionMessage("start", name, ps[0].Time))
	var last paho.Token
	for i, p := range ps {
		last = c.Publish(topic.Device(device, topic.Positions), 1, false, p.AppendJSON(nil))
		if i%500 == 499 && (!last.WaitTimeout(30*time.Second) || last.Error() != nil) {
			t.Fatalf("publish %s: %v", device, last.Error())
		}
	}
	if !last.WaitTimeout(30*time.Second) || last.Error() != nil {
		t.Fatalf("publish %s: %v", device, last.Error())
	}
	e2ePublish(t, c, topic.Device(device, topic.Session), sessionMessage("stop", "", ps[len(ps)-1].Time))
}

// TestWebsiteInBrowser drives the website in headless Debian chromium with
// playwright-core (cloud/web/e2e/scenario.mjs): sign-in with TOTP, the
// tracks list, a track's map and charts, GPX export, deleting a track, a
// live position moving, devices, account, and sign-out. Screenshots of each
// page and the figures (the time to open a 50,000-point track, the bundle
// size) go to var/test-output/website (or $TRACKGATE_TEST_OUTPUT).
func TestWebsiteInBrowser(t *testing.T) {
	for _, tool := range []string{"node", chromium()} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing: run make tools (make test does)", tool)
		}
	}
	if _, err := os.Stat("web/node_modules/playwright-core"); err != nil {
		t.Fatal("playwright-core is missing: run make web (make test does)")
	}
	tiles := tileServer(t)
	s := startWebStack(t, func(s *stack) { s.cfg.Web.TilesURL = tiles.URL + "/{z}/{x}/{y}.png" })
	ctx := context.Background()
	a := s.openAuth(t)
	const user, password = "ann", "ann's correct horse"
	if err := a.AddUser(ctx, user, password); err != nil {
		t.Fatal(err)
	}
	ann := s.api(t, s.userToken(t, user, password))
	for _, d := range []struct{ id, name string }{{"ann-van", "Van"}, {"ann-bike", "Bike"}, {"ann-live", "Phone"}} {
		ann.want("POST", "/api/v1/devices", map[string]string{"id": d.id, "name": d.name}, http.StatusCreated, nil)
	}

	// Three finished tracks: an ordinary one, one to delete, and one of
	// 50,000 points; then a device moving while the browser watches.
	pub := e2eMustConnect(t, s.broker.TCPURL, "test-publisher", "", nil)
	now := time.Now().Truncate(time.Second)
	tracks := map[string][]position.Position{
		"Harbour loop": ride(now.Add(-5*time.Hour), 2000, 0),
		"Errand":       ride(now.Add(-4*time.Hour), 120, 1),
		"Long haul":    ride(now.Add(-20*time.Hour), 50_000, 2),
	}
	device := map[string]string{"Harbour loop": "ann-van", "Errand": "ann-van", "Long haul": "ann-bike"}
	for _, name := range []string{"Harbour loop", "Errand", "Long haul"} {
		record(t, pub, device[name], name, tracks[name])
	}
	ids := map[string]string{}
	eventually(t, "the three tracks to hold their points", func() bool {
		page, _ := ann.list(url.Values{"limit": {"10"}})
		n := 0
		for _, tr := range page.Tracks {
			if ps, ok := tracks[tr.Name]; ok && tr.Summary.Points == len(ps) && !tr.Recording {
				ids[tr.Name] = tr.ID
				n++
			}
		}
		return n == len(tracks)
	})
	uri, err := a.EnrolTOTP(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}

	live, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			p := ride(time.Now(), 1, float64(i)/20)[0]
			p.Lat += float64(i) * 0.0005
			pub.Publish(topic.Device("ann-live", topic.Positions), 1, false, p.AppendJSON(nil))
			select {
			case <-live:
				return
			case <-tick.C:
			}
		}
	}()
	defer func() { close(live); <-done }()

	out := os.Getenv("TRACKGATE_TEST_OUTPUT")
	if out == "" {
		out = filepath.Join("..", "var", "test-output", "website")
	}
	out, err = filepath.Abs(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, pattern := range []string{"*.png", "*.gpx", "results.json"} { // of an earlier run
		old, _ := filepath.Glob(filepath.Join(out, pattern))
		for _, f := range old {
			os.Remove(f)
		}
	}
	runCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(runCtx, "node", "e2e/scenario.mjs")
	cmd.Dir = "web"
	cmd.Env = append(os.Environ(),
		"CHROMIUM="+chromium(),
		"TG_URL="+s.httpURL,
		"TG_USER="+user,
		"TG_PASSWORD="+password,
		"TG_TOTP_SECRET="+u.Query().Get("secret"),
		"TG_DEVICE=ann-van",
		"TG_TRACK="+ids["Harbour loop"],
		"TG_DELETE_TRACK="+ids["Errand"],
		"TG_BIG_TRACK="+ids["Long haul"],
		"TG_LIVE_DEVICE=ann-live",
		"TG_OUT="+out,
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	t.Logf("scenario output:\n%s", stdout.String())
	if err != nil {
		t.Fatalf("browser scenario failed: %v\n%s", err, stderr.String())
	}
	var res struct {
		BigTrackOpenMS  float64 `json:"big_track_open_ms"`
		BundleGzipBytes int     `json:"bundle_gzip_bytes"`
	}
	b, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err == nil {
		err = json.Unmarshal(b, &res)
	}
	if err != nil {
		t.Fatalf("results: %v", err)
	}
	t.Logf("a 50,000-point track opened in %.0f ms; JS bundle %d bytes gzip; screenshots in %s", res.BigTrackOpenMS, res.BundleGzipBytes, out)

	// What the browser did, seen through the API.
	if r := ann.do("GET", "/api/v1/tracks/"+ids["Errand"], nil); r.status != http.StatusNotFound {
		t.Errorf("the track deleted in the browser: %d", r.status)
	}
	if tr := ann.track(ids["Harbour loop"]); tr.Name == "Harbour loop" {
		t.Errorf("the track renamed in the browser still has its old name")
	}
}

// chromium is the browser the test drives: $CHROMIUM, else Debian's.
func chromium() string {
	if c := os.Getenv("CHROMIUM"); c != "" {
		return c
	}
	return "/usr/bin/chromium"
}
