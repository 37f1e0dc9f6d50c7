package cloud_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/golang-jwt/jwt/v5"

	"trackgate/cloud/api"
	"trackgate/cloud/ingest"
	"trackgate/cloud/problem"
	"trackgate/internal/position"
	"trackgate/internal/token"
)

// The track API tested from outside: over HTTP with real tokens from the
// cloud's authorization server, positions published over MQTT, real
// influxd, and the exports read back by gpsbabel and GDAL.

// apiTimeout bounds every API call and every wait for the cloud to catch up.
const apiTimeout = 20 * time.Second

var apiHTTP = &http.Client{Timeout: apiTimeout}

// apiClient calls the cloud's HTTP API with a bearer token.
type apiClient struct {
	t      *testing.T
	base   string
	header string // the Authorization header; none when empty
}

// api returns a client presenting token as a bearer token.
func (s *stack) api(t *testing.T, token string) *apiClient {
	return &apiClient{t: t, base: s.httpURL, header: "Bearer " + token}
}

// apiResponse is an answer read whole.
type apiResponse struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request. body is nil (none), a string (sent as it is) or a
// value sent as JSON; either is declared application/json.
func (c *apiClient) do(method, path string, body any) apiResponse {
	c.t.Helper()
	return c.send(method, path, body, "application/json")
}

// send is do with the body's Content-Type.
func (c *apiClient) send(method, path string, body any, contentType string) apiResponse {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		js, err := json.Marshal(b)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(js)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if rd != nil && contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.header != "" {
		req.Header.Set("Authorization", c.header)
	}
	resp, err := apiHTTP.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: read: %v", method, path, err)
	}
	return apiResponse{status: resp.StatusCode, header: resp.Header, body: b}
}

// want sends a request, fails the test unless it is answered with status,
// and decodes the JSON answer into out when out is not nil.
func (c *apiClient) want(method, path string, body any, status int, out any) apiResponse {
	c.t.Helper()
	r := c.do(method, path, body)
	if r.status != status {
		c.t.Fatalf("%s %s: %d, want %d: %.500s", method, path, r.status, status, r.body)
	}
	if out != nil {
		if err := json.Unmarshal(r.body, out); err != nil {
			c.t.Fatalf("%s %s: %v: %.500s", method, path, err, r.body)
		}
	}
	return r
}

// apiProblem is an RFC 9457 problem the API answers.
type apiProblem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail"`
	Code      string `json:"code"`
	Parameter string `json:"parameter"`
	Track     string `json:"track"`
}

// problem reports an error unless r is an application/problem+json answer
// of status with code (whose type is /api/problems/ and the code with
// hyphens), and returns the problem.
func (r apiResponse) problem(t *testing.T, what string, status int, code string) apiProblem {
	t.Helper()
	var p apiProblem
	ct := r.header.Get("Content-Type")
	if r.status != status || !strings.HasPrefix(ct, "application/problem+json") {
		t.Errorf("%s: %d %s, want %d application/problem+json: %.300s", what, r.status, ct, status, r.body)
		return p
	}
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Errorf("%s: problem: %v: %.300s", what, err, r.body)
		return p
	}
	if want := "/api/problems/" + strings.ReplaceAll(code, "_", "-"); p.Type != want || p.Code != code || p.Status != status || p.Title == "" {
		t.Errorf("%s: problem %+v, want type %s, code %s, status %d and a title", what, p, want, code, status)
	}
	return p
}

// apiTrack is a track as the API shows it.
type apiTrack struct {
	ID        string     `json:"id"`
	Device    string     `json:"device"`
	Name      string     `json:"name"`
	Auto      bool       `json:"auto"`
	Recording bool       `json:"recording"`
	Started   time.Time  `json:"started"`
	Stopped   *time.Time `json:"stopped"`
	Summary   apiSummary `json:"summary"`
	Stale     bool       `json:"stale"`
}

// apiSummary is a track's summary as the API shows it.
type apiSummary struct {
	Points   int       `json:"points"`
	Distance float64   `json:"distance_m"`
	Duration float64   `json:"duration_s"`
	Moving   float64   `json:"moving_s"`
	MaxSpeed float64   `json:"max_speed_mps"`
	AvgSpeed float64   `json:"avg_speed_mps"`
	Gain     float64   `json:"elevation_gain_m"`
	Loss     float64   `json:"elevation_loss_m"`
	BBox     []float64 `json:"bbox"`
	First    time.Time `json:"first"`
	Last     time.Time `json:"last"`
}

// trackPage is a page of GET /api/v1/tracks.
type trackPage struct {
	Tracks     []apiTrack `json:"tracks"`
	NextCursor string     `json:"next_cursor"`
}

// apiDevice is a device as GET/PATCH /api/v1/devices/{id} show it.
type apiDevice struct {
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	AutoSplit int             `json:"auto_split"`
	Recording string          `json:"recording"`
	LastSeen  *time.Time      `json:"last_seen"`
	Position  json.RawMessage `json:"position"`
}

// with returns the client for use in test t (a subtest).
func (c *apiClient) with(t *testing.T) *apiClient {
	return &apiClient{t: t, base: c.base, header: c.header}
}

func (c *apiClient) track(id string) apiTrack {
	c.t.Helper()
	var tr apiTrack
	c.want("GET", "/api/v1/tracks/"+id, nil, http.StatusOK, &tr)
	return tr
}

func (c *apiClient) device(id string) apiDevice {
	c.t.Helper()
	var d apiDevice
	c.want("GET", "/api/v1/devices/"+id, nil, http.StatusOK, &d)
	return d
}

// startTrack starts a track of device through the API.
func (c *apiClient) startTrack(device, name string) apiTrack {
	c.t.Helper()
	var tr apiTrack
	r := c.want("POST", "/api/v1/tracks", map[string]string{"device": device, "name": name}, http.StatusCreated, &tr)
	if loc := r.header.Get("Location"); loc != "/api/v1/tracks/"+tr.ID {
		c.t.Errorf("POST /api/v1/tracks: Location %q, want /api/v1/tracks/%s", loc, tr.ID)
	}
	if !tr.Recording || tr.Stopped != nil || tr.Device != device || tr.Name != name || tr.Auto || tr.Summary.Points != 0 {
		c.t.Errorf("POST /api/v1/tracks: %+v, want a new recording track of %s named %q", tr, device, name)
	}
	return tr
}

// list reads one page of GET /api/v1/tracks?q.
func (c *apiClient) list(q url.Values) (trackPage, apiResponse) {
	c.t.Helper()
	var p trackPage
	r := c.want("GET", "/api/v1/tracks?"+q.Encode(), nil, http.StatusOK, &p)
	if p.Tracks == nil {
		c.t.Errorf("GET /api/v1/tracks?%s: tracks is not an array: %s", q.Encode(), r.body)
	}
	return p, r
}

// listAll follows next_cursor from q to the last page and returns the
// track ids in order and the number of pages.
func (c *apiClient) listAll(q url.Values) ([]string, int) {
	c.t.Helper()
	var ids []string
	for pages := 1; ; pages++ {
		p, r := c.list(q)
		for _, tr := range p.Tracks {
			ids = append(ids, tr.ID)
		}
		link := r.header.Get("Link")
		if p.NextCursor == "" {
			if link != "" {
				c.t.Errorf("last page with a Link header %q", link)
			}
			return ids, pages
		}
		if !strings.Contains(link, `rel="next"`) || !strings.Contains(link, "cursor="+url.QueryEscape(p.NextCursor)) {
			c.t.Errorf("page %d: Link %q does not lead to next_cursor %s", pages, link, p.NextCursor)
		}
		if pages > 50 {
			c.t.Fatalf("more than 50 pages of %s", q.Encode())
		}
		q = withParam(q, "cursor", p.NextCursor)
	}
}

// withParam returns a copy of q with k set to v.
func withParam(q url.Values, k, v string) url.Values {
	out := url.Values{}
	for kk, vv := range q {
		out[kk] = slices.Clone(vv)
	}
	out.Set(k, v)
	return out
}

// eventually polls cond every 50 ms until it holds, failing the test after
// apiTimeout.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(apiTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", apiTimeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitTrack polls the track until cond holds and returns it.
func (c *apiClient) waitTrack(id, what string, cond func(apiTrack) bool) apiTrack {
	c.t.Helper()
	var tr apiTrack
	deadline := time.Now().Add(apiTimeout)
	for {
		tr = c.track(id)
		if cond(tr) {
			return tr
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out waiting for track %s to have %s; last seen %+v", id, what, tr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// countPoints returns how many points of device InfluxDB holds with
// from ≤ time ≤ to, asking it directly (InfluxQL).
func (s *stack) countPoints(t *testing.T, device string, from, to time.Time) int {
	t.Helper()
	q := fmt.Sprintf(`SELECT count(lat) FROM position WHERE device = '%s' AND time >= %d AND time <= %d`, device, from.UnixNano(), to.UnixNano())
	body, err := s.influx.Query(q)
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Results []struct {
			Series []struct {
				Values [][]any `json:"values"`
			} `json:"series"`
		} `json:"results"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("%s: %v: %s", q, err, body)
	}
	if len(r.Results) == 0 || len(r.Results[0].Series) == 0 || len(r.Results[0].Series[0].Values) == 0 {
		return 0
	}
	n, _ := r.Results[0].Series[0].Values[0][1].(float64)
	return int(n)
}

// publishAll publishes each position as one message at QoS 1.
func publishAll(t *testing.T, c paho.Client, device string, ps []position.Position) {
	t.Helper()
	for i := range ps {
		tok := c.Publish("devices/"+device+"/positions", 1, false, ps[i].AppendJSON(nil))
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %s: %v", device, tok.Error())
		}
	}
}

// vanRoute is n positions from start+100 ms, 100 ms apart, north along the
// meridian 4.89 from 52.37 by 1e-5° (1.1 m: 40 km/h), climbing 1 m a point,
// with speed, course, satellites and fix.
func vanRoute(start time.Time, n int) []position.Position {
	ps := make([]position.Position, n)
	for i := range ps {
		ps[i] = position.Position{
			Time: start.Add(time.Duration(i+1) * 100 * time.Millisecond).UTC(),
			Lat:  52.37 + float64(i)*1e-5, Lon: 4.89, Alt: 10 + float64(i),
			Speed: 11 + float64(i%5)/10, Course: 0.5, Sats: 9, Fix: position.Fix3D,
			Set: position.Required | position.FieldAlt | position.FieldSpeed | position.FieldCourse | position.FieldSats | position.FieldFix,
		}
	}
	return ps
}

// walkAt is a walker's position at offset from start: east along the
// parallel 52.1 at 1.4 m/s, up to ±1 m off the line north or south.
func walkAt(start time.Time, offset time.Duration) position.Position {
	step := int(offset / (100 * time.Millisecond))
	jitter := float64(step*7919%19-9) * 1e-6 // ±9e-6°: ±1 m
	return position.Position{Time: start.Add(offset).UTC(), Lat: 52.1 + jitter, Lon: 5.1 + offset.Seconds()*2e-5, HDOP: 0.8,
		Set: position.Required | position.FieldHDOP}
}

// walk is n positions of walkAt, one a second from start+1 s.
func walk(start time.Time, n int) []position.Position {
	ps := make([]position.Position, n)
	for i := range ps {
		ps[i] = walkAt(start, time.Duration(i+1)*time.Second)
	}
	return ps
}

// haversine is the great-circle distance in metres (mean earth radius).
func haversine(lat1, lon1, lat2, lon2 float64) float64 {
	const r, rad = 6371008.8, math.Pi / 180
	a := math.Pow(math.Sin((lat2-lat1)*rad/2), 2) + math.Cos(lat1*rad)*math.Cos(lat2*rad)*math.Pow(math.Sin((lon2-lon1)*rad/2), 2)
	return 2 * r * math.Asin(math.Sqrt(a))
}

// near reports whether a and b differ by tolerance at most.
func near(a, b, tolerance float64) bool { return math.Abs(a-b) <= tolerance }

// samePosition compares an exported position with a published one, exactly.
func samePosition(got, want position.Position) bool {
	if !got.Time.Equal(want.Time) {
		return false
	}
	got.Time = want.Time
	return got == want
}

// sessionMessage is a device's recording command.
func sessionMessage(action, name string, at time.Time) []byte {
	m := map[string]string{"action": action, "time": at.UTC().Format(time.RFC3339Nano)}
	if name != "" {
		m["name"] = name
	}
	b, _ := json.Marshal(m)
	return b
}

// runTool runs an external reader and returns its standard output.
func runTool(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s is not installed (make tools): %v", name, err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.Bytes())
	}
	return stdout.Bytes()
}

// TestTracksAPIEndToEnd drives recording sessions, summaries, listings,
// exports and deletion from outside: ann registers devices through the
// API, a van publishes with its device token while ann records a track
// through the API, a phone records its own tracks over MQTT with its device
// token alone, positions that arrive late land in their track, and the
// exports read back by encoding/json, GDAL, GPSBabel and encoding/csv give
// back exactly the published points.
func TestTracksAPIEndToEnd(t *testing.T) {
	s := startAuthStack(t)
	a := s.openAuth(t)
	ctx := context.Background()
	if err := a.AddUser(ctx, "ann", "ann's correct horse"); err != nil {
		t.Fatal(err)
	}
	ann := s.api(t, s.userToken(t, "ann", "ann's correct horse"))

	// Devices registered through the API, each with its device token.
	tokens := map[string]string{}
	for _, d := range []struct{ id, name string }{{"ann-van", "Van"}, {"ann-phone", "Phone"}, {"ann-bike", "Bike"}, {"ann-watch", "Watch"}} {
		var out struct{ ID, Name, Token string }
		r := ann.want("POST", "/api/v1/devices", map[string]string{"id": d.id, "name": d.name}, http.StatusCreated, &out)
		if out.ID != d.id || out.Name != d.name || out.Token == "" || r.header.Get("Location") != "/api/v1/devices/"+d.id {
			t.Fatalf("POST /api/v1/devices: %+v, Location %q", out, r.header.Get("Location"))
		}
		tokens[d.id] = out.Token
	}
	ann.do("POST", "/api/v1/devices", map[string]string{"id": "ann-van"}).problem(t, "registering ann-van again", http.StatusConflict, "conflict")
	var devices struct {
		Devices []struct{ ID, Name string } `json:"devices"`
	}
	ann.want("GET", "/api/v1/devices", nil, http.StatusOK, &devices)
	if len(devices.Devices) != 4 {
		t.Errorf("GET /api/v1/devices: %+v, want ann's 4 devices", devices)
	}

	// A track started through the API records what the van publishes.
	van := e2eMustConnect(t, s.broker.TCPURL, "ann-van", tokens["ann-van"], nil)
	before := time.Now()
	trA := ann.startTrack("ann-van", "Delivery round")
	if trA.Started.Before(before.Add(-time.Second)) || trA.Started.After(time.Now().Add(time.Second)) {
		t.Errorf("track started at %v, want about now", trA.Started)
	}
	if d := ann.device("ann-van"); d.Recording != trA.ID {
		t.Errorf("ann-van records %q, want %s", d.Recording, trA.ID)
	}
	p := ann.do("POST", "/api/v1/tracks", map[string]string{"device": "ann-van"}).problem(t, "second start", http.StatusConflict, "already_recording")
	if p.Track != trA.ID {
		t.Errorf("409 names track %q, want %s", p.Track, trA.ID)
	}

	vanPts := vanRoute(trA.Started.Truncate(time.Millisecond), 25)
	publishAll(t, van, "ann-van", vanPts[:10])
	ann.waitTrack(trA.ID, "the first 10 points while recording", func(tr apiTrack) bool { return tr.Summary.Points == 10 && tr.Recording })
	publishAll(t, van, "ann-van", vanPts[10:])
	trA = ann.waitTrack(trA.ID, "25 points", func(tr apiTrack) bool { return tr.Summary.Points == 25 })
	checkVanSummary(t, trA.Summary, vanPts)

	var last struct {
		Device   string            `json:"device"`
		LastSeen time.Time         `json:"last_seen"`
		Position position.Position `json:"position"`
	}
	ann.want("GET", "/api/v1/devices/ann-van/last", nil, http.StatusOK, &last)
	if last.Device != "ann-van" || !last.LastSeen.Equal(vanPts[24].Time) || !samePosition(last.Position, vanPts[24]) {
		t.Errorf("last position %+v, want %+v", last, vanPts[24])
	}

	// Renaming, then stopping; a second stop is a conflict.
	var renamed apiTrack
	ann.want("PATCH", "/api/v1/tracks/"+trA.ID, map[string]string{"name": "Delivery round, north"}, http.StatusOK, &renamed)
	if renamed.Name != "Delivery round, north" || !renamed.Recording {
		t.Errorf("renamed track %+v", renamed)
	}
	time.Sleep(time.Until(vanPts[24].Time.Add(50 * time.Millisecond))) // the last fix is in the past
	var stopped apiTrack
	ann.want("POST", "/api/v1/tracks/"+trA.ID+"/stop", nil, http.StatusOK, &stopped)
	if stopped.Recording || stopped.Stopped == nil || stopped.Stopped.Before(vanPts[24].Time) || stopped.Summary.Points != 25 {
		t.Errorf("stopped track %+v, want stopped after its last point with 25 points", stopped)
	}
	ann.do("POST", "/api/v1/tracks/"+trA.ID+"/stop", nil).problem(t, "second stop", http.StatusConflict, "not_recording")
	if d := ann.device("ann-van"); d.Recording != "" {
		t.Errorf("ann-van still records %q", d.Recording)
	}

	// The phone records with its device token alone: session start and
	// stop on devices/ann-phone/session, with its own clock.
	phone := e2eMustConnect(t, s.broker.TCPURL, "ann-phone", tokens["ann-phone"], nil)
	p1Start := time.Now().Add(-20 * time.Minute).Truncate(time.Second).UTC()
	e2ePublish(t, phone, "devices/ann-phone/session", sessionMessage("start", "Morning walk", p1Start))
	var p1ID string
	eventually(t, "the phone's session to start a track", func() bool { p1ID = ann.device("ann-phone").Recording; return p1ID != "" })
	trP1 := ann.track(p1ID)
	if !trP1.Started.Equal(p1Start) || trP1.Name != "Morning walk" || trP1.Auto || !trP1.Recording {
		t.Errorf("the phone's track %+v, want Morning walk recording from %v", trP1, p1Start)
	}
	walkPts := walk(p1Start, 60)
	publishAll(t, phone, "ann-phone", walkPts)
	ann.waitTrack(p1ID, "the 60 walked points", func(tr apiTrack) bool { return tr.Summary.Points == 60 })
	p1Stop := p1Start.Add(61 * time.Second)
	e2ePublish(t, phone, "devices/ann-phone/session", sessionMessage("stop", "", p1Stop))
	trP1 = ann.waitTrack(p1ID, "stopped", func(tr apiTrack) bool { return !tr.Recording })
	if trP1.Stopped == nil || !trP1.Stopped.Equal(p1Stop) {
		t.Errorf("the phone's track stopped at %v, want %v", trP1.Stopped, p1Stop)
	}

	// Positions buffered on the phone arrive after the stop: their fix
	// times are inside the track's span, so they land in it.
	var late []position.Position
	for k := range 5 {
		late = append(late, walkAt(p1Start, time.Duration(10*k+1)*time.Second+500*time.Millisecond))
	}
	publishAll(t, phone, "ann-phone", late)
	trP1 = ann.waitTrack(p1ID, "the 5 late points counted", func(tr apiTrack) bool { return tr.Summary.Points == 65 && !tr.Stale })
	if trP1.Recording || !trP1.Stopped.Equal(p1Stop) || !trP1.Summary.First.Equal(walkPts[0].Time) || !trP1.Summary.Last.Equal(walkPts[59].Time) {
		t.Errorf("after late points: %+v", trP1)
	}
	allWalk := append(slices.Clone(walkPts), late...)
	slices.SortFunc(allWalk, func(a, b position.Position) int { return a.Time.Compare(b.Time) })
	var wantDist float64
	for i := 1; i < len(allWalk); i++ {
		wantDist += haversine(allWalk[i-1].Lat, allWalk[i-1].Lon, allWalk[i].Lat, allWalk[i].Lon)
	}
	if !near(trP1.Summary.Distance, wantDist, wantDist*1e-9) {
		t.Errorf("the late points' track: distance %v m, want %v m over all 65 points", trP1.Summary.Distance, wantDist)
	}

	// A second track of the phone, to delete later.
	p2Start := p1Start.Add(5 * time.Minute)
	e2ePublish(t, phone, "devices/ann-phone/session", sessionMessage("start", "Errand", p2Start))
	var p2ID string
	eventually(t, "the phone's second track", func() bool {
		p2ID = ann.device("ann-phone").Recording
		return p2ID != "" && p2ID != p1ID
	})
	errand := walk(p2Start, 10)
	publishAll(t, phone, "ann-phone", errand)
	ann.waitTrack(p2ID, "the errand's 10 points", func(tr apiTrack) bool { return tr.Summary.Points == 10 })
	p2Stop := p2Start.Add(11 * time.Second)
	e2ePublish(t, phone, "devices/ann-phone/session", sessionMessage("stop", "", p2Stop))
	ann.waitTrack(p2ID, "stopped", func(tr apiTrack) bool { return !tr.Recording })

	// Seven rides, started and stopped through the API.
	var rides []string
	for i := range 7 {
		tr := ann.startTrack("ann-bike", fmt.Sprintf("Ride %d", i))
		ann.want("POST", "/api/v1/tracks/"+tr.ID+"/stop", nil, http.StatusOK, nil)
		rides = append(rides, tr.ID)
	}

	t.Run("list", func(t *testing.T) {
		ann := ann.with(t)
		newestFirst := []string{rides[6], rides[5], rides[4], rides[3], rides[2], rides[1], rides[0], trA.ID, p2ID, p1ID}
		for _, limit := range []int{3, 9, 10, 500} {
			ids, pages := ann.listAll(url.Values{"limit": {strconv.Itoa(limit)}})
			if !slices.Equal(ids, newestFirst) {
				t.Errorf("limit %d: listed %v, want %v (newest first, each once)", limit, ids, newestFirst)
			}
			if want := (len(newestFirst) + limit - 1) / limit; pages != want {
				t.Errorf("limit %d: %d pages, want %d", limit, pages, want)
			}
		}
		page, _ := ann.list(url.Values{})
		if len(page.Tracks) != 10 || page.NextCursor != "" {
			t.Errorf("default limit: %d tracks, next cursor %q", len(page.Tracks), page.NextCursor)
		}
		for _, tr := range page.Tracks {
			if tr.ID == trA.ID && (tr.Name != "Delivery round, north" || tr.Summary.Points != 25 || tr.Recording) {
				t.Errorf("listed %+v", tr)
			}
		}

		for _, tc := range []struct {
			name string
			q    url.Values
			want []string
		}{
			{"device", url.Values{"device": {"ann-bike"}, "limit": {"2"}}, newestFirst[:7]},
			{"device phone", url.Values{"device": {"ann-phone"}}, []string{p2ID, p1ID}},
			{"to", url.Values{"to": {p1Start.Add(10 * time.Minute).Format(time.RFC3339)}}, []string{p2ID, p1ID}},
			{"from", url.Values{"from": {trA.Started.Add(-time.Millisecond).Format(time.RFC3339Nano)}, "limit": {"4"}}, newestFirst[:8]},
			{"from to", url.Values{"from": {p1Start.Add(30 * time.Second).Format(time.RFC3339)}, "to": {p1Start.Add(2 * time.Minute).Format(time.RFC3339)}}, []string{p1ID}},
			{"device from to", url.Values{"device": {"ann-phone"}, "from": {p2Start.Format(time.RFC3339)}, "to": {p2Stop.Format(time.RFC3339)}}, []string{p2ID}},
			{"van to", url.Values{"device": {"ann-van"}, "to": {p1Start.Format(time.RFC3339)}}, nil},
			{"future", url.Values{"from": {time.Now().Add(time.Hour).Format(time.RFC3339)}}, nil},
		} {
			ids, _ := ann.listAll(tc.q)
			if !slices.Equal(ids, tc.want) {
				t.Errorf("%s (%s): listed %v, want %v", tc.name, tc.q.Encode(), ids, tc.want)
			}
		}
	})

	t.Run("export json", func(t *testing.T) {
		ann := ann.with(t)
		r := ann.want("GET", "/api/v1/tracks/"+trA.ID+"/points?format=json", nil, http.StatusOK, nil)
		if ct := r.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q", ct)
		}
		got := decodeJSONExport(t, r.body, trA.ID)
		if len(got) != len(vanPts) {
			t.Fatalf("JSON export: %d points, want %d", len(got), len(vanPts))
		}
		for i := range vanPts {
			if !samePosition(got[i], vanPts[i]) {
				t.Errorf("JSON point %d: %+v, want %+v", i, got[i], vanPts[i])
			}
		}
		// No format is JSON.
		if r2 := ann.want("GET", "/api/v1/tracks/"+trA.ID+"/points", nil, http.StatusOK, nil); !bytes.Equal(r2.body, r.body) {
			t.Error("the default export differs from format=json")
		}
		// The phone's track holds the late points, in time order.
		r = ann.want("GET", "/api/v1/tracks/"+p1ID+"/points?format=json", nil, http.StatusOK, nil)
		got = decodeJSONExport(t, r.body, p1ID)
		if len(got) != len(allWalk) {
			t.Fatalf("the phone's track: %d points, want %d", len(got), len(allWalk))
		}
		for i := range allWalk {
			if !samePosition(got[i], allWalk[i]) {
				t.Errorf("the phone's point %d: %+v, want %+v", i, got[i], allWalk[i])
			}
		}
	})

	t.Run("export geojson", func(t *testing.T) {
		ann := ann.with(t)
		r := ann.want("GET", "/api/v1/tracks/"+trA.ID+"/points?format=geojson", nil, http.StatusOK, nil)
		if ct := r.header.Get("Content-Type"); ct != "application/geo+json" {
			t.Errorf("Content-Type %q", ct)
		}
		file := filepath.Join(t.TempDir(), "track.geojson")
		if err := os.WriteFile(file, r.body, 0o600); err != nil {
			t.Fatal(err)
		}
		info := string(runTool(t, "ogrinfo", "-ro", "-al", "-so", file))
		for _, want := range []string{"Feature Count: 1\n", "Geometry: 3D Line String\n"} {
			if !strings.Contains(info, want) {
				t.Errorf("ogrinfo does not say %q:\n%s", want, info)
			}
		}
		// The document itself holds the exact coordinates.
		var raw struct {
			Type     string `json:"type"`
			ID       string `json:"id"`
			Geometry struct {
				Type        string      `json:"type"`
				Coordinates [][]float64 `json:"coordinates"`
			} `json:"geometry"`
		}
		if err := json.Unmarshal(r.body, &raw); err != nil || raw.Type != "Feature" || raw.ID != trA.ID || raw.Geometry.Type != "LineString" {
			t.Fatalf("GeoJSON export: %v: %.300s", err, r.body)
		}
		if len(raw.Geometry.Coordinates) != len(vanPts) {
			t.Fatalf("GeoJSON export: %d positions, want %d", len(raw.Geometry.Coordinates), len(vanPts))
		}
		for i, p := range vanPts {
			if want := []float64{p.Lon, p.Lat, p.Alt}; !slices.Equal(raw.Geometry.Coordinates[i], want) {
				t.Errorf("GeoJSON position %d: %v, want %v", i, raw.Geometry.Coordinates[i], want)
			}
		}
		// GDAL reads the same feature and positions, to its precision
		// (15 significant digits).
		var fc struct {
			Features []struct {
				ID         string         `json:"id"`
				Properties map[string]any `json:"properties"`
				Geometry   struct {
					Type        string      `json:"type"`
					Coordinates [][]float64 `json:"coordinates"`
				} `json:"geometry"`
			} `json:"features"`
		}
		out := runTool(t, "ogr2ogr", "-f", "GeoJSON", "/vsistdout/", file, "-lco", "SIGNIFICANT_FIGURES=17")
		if err := json.Unmarshal(out, &fc); err != nil || len(fc.Features) != 1 {
			t.Fatalf("ogr2ogr wrote %d features, %v:\n%.500s", len(fc.Features), err, out)
		}
		f := fc.Features[0]
		if f.ID != trA.ID || f.Properties["device"] != "ann-van" || f.Properties["point_count"] != float64(len(vanPts)) {
			t.Errorf("GDAL read the feature %q with properties %v", f.ID, f.Properties)
		}
		if f.Geometry.Type != "LineString" || len(f.Geometry.Coordinates) != len(vanPts) {
			t.Fatalf("GDAL read a %s of %d positions, want a LineString of %d", f.Geometry.Type, len(f.Geometry.Coordinates), len(vanPts))
		}
		for i, p := range vanPts {
			got := f.Geometry.Coordinates[i]
			if len(got) != 3 || !near(got[0], p.Lon, 1e-12) || !near(got[1], p.Lat, 1e-12) || got[2] != p.Alt {
				t.Errorf("GeoJSON position %d: GDAL read %v, want %v %v %v", i, got, p.Lon, p.Lat, p.Alt)
			}
		}
	})

	t.Run("export gpx", func(t *testing.T) {
		ann := ann.with(t)
		r := ann.want("GET", "/api/v1/tracks/"+trA.ID+"/points?format=gpx", nil, http.StatusOK, nil)
		if ct := r.header.Get("Content-Type"); ct != "application/gpx+xml" {
			t.Errorf("Content-Type %q", ct)
		}
		if cd := r.header.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment;") || !strings.Contains(cd, `.gpx"`) {
			t.Errorf("Content-Disposition %q", cd)
		}
		file := filepath.Join(t.TempDir(), "track.gpx")
		if err := os.WriteFile(file, r.body, 0o600); err != nil {
			t.Fatal(err)
		}
		rows := readCSV(t, runTool(t, "gpsbabel", "-t", "-i", "gpx", "-f", file, "-o", "unicsv,utc=0", "-F", "-"))
		if len(rows) != len(vanPts) {
			t.Fatalf("GPSBabel read %d points, want %d", len(rows), len(vanPts))
		}
		for i, p := range vanPts {
			row := rows[i]
			lat, err1 := strconv.ParseFloat(row["Latitude"], 64)
			lon, err2 := strconv.ParseFloat(row["Longitude"], 64)
			alt, err3 := strconv.ParseFloat(row["Altitude"], 64)
			when, err4 := time.Parse("2006/01/02 15:04:05", row["Date"]+" "+row["Time"]) // with the fraction when there is one
			// GPSBabel writes 6 decimals of degrees, 1 of metres, milliseconds.
			if err1 != nil || err2 != nil || err3 != nil || err4 != nil || !near(lat, p.Lat, 5e-7+1e-12) || !near(lon, p.Lon, 5e-7+1e-12) ||
				!near(alt, p.Alt, 0.05+1e-9) || !when.Equal(p.Time) {
				t.Errorf("GPX point %d: GPSBabel read %v, want %v %v alt %v at %v", i, row, p.Lat, p.Lon, p.Alt, p.Time)
			}
		}
	})

	t.Run("export csv", func(t *testing.T) {
		ann := ann.with(t)
		r := ann.want("GET", "/api/v1/tracks/"+trA.ID+"/points?format=csv", nil, http.StatusOK, nil)
		if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/csv") {
			t.Errorf("Content-Type %q", ct)
		}
		if cd := r.header.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment;") || !strings.Contains(cd, `.csv"`) {
			t.Errorf("Content-Disposition %q", cd)
		}
		records, err := csv.NewReader(bytes.NewReader(r.body)).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"time", "lat", "lon", "alt", "speed", "course", "hdop", "sats", "fix", "acc", "batt"}; len(records) == 0 || !slices.Equal(records[0], want) {
			t.Fatalf("CSV header %v, want %v", records[:min(1, len(records))], want)
		}
		if len(records)-1 != len(vanPts) {
			t.Fatalf("CSV: %d rows, want %d", len(records)-1, len(vanPts))
		}
		for i, p := range vanPts {
			rec := records[i+1]
			when, _ := time.Parse(time.RFC3339Nano, rec[0])
			nums := make([]float64, 5)
			for j := range nums {
				nums[j], _ = strconv.ParseFloat(rec[1+j], 64)
			}
			sats, _ := strconv.Atoi(rec[7])
			if !when.Equal(p.Time) || nums[0] != p.Lat || nums[1] != p.Lon || nums[2] != p.Alt || nums[3] != p.Speed || nums[4] != p.Course ||
				rec[6] != "" || sats != p.Sats || rec[8] != string(p.Fix) || rec[9] != "" || rec[10] != "" {
				t.Errorf("CSV row %d: %v, want %+v", i+1, rec, p)
			}
		}
	})

	t.Run("simplify", func(t *testing.T) {
		ann := ann.with(t)
		// A straight walk with ±1 m of jitter: 5 m of tolerance leaves far
		// fewer points, the first and the last among them.
		r := ann.want("GET", "/api/v1/tracks/"+p1ID+"/points?format=json&simplify=5", nil, http.StatusOK, nil)
		got := decodeJSONExport(t, r.body, p1ID)
		if len(got) < 2 || len(got) >= len(allWalk)/2 {
			t.Fatalf("simplify=5 kept %d of %d points", len(got), len(allWalk))
		}
		if !samePosition(got[0], allWalk[0]) || !samePosition(got[len(got)-1], allWalk[len(allWalk)-1]) {
			t.Errorf("simplify=5 kept %+v … %+v, want the first and last points", got[0], got[len(got)-1])
		}
		j := 0
		for i := range got {
			for j < len(allWalk) && !samePosition(got[i], allWalk[j]) {
				j++
			}
			if j == len(allWalk) {
				t.Fatalf("simplified point %d %+v is not one of the track's, in order", i, got[i])
			}
		}
		// A tolerance under the jitter keeps more; the simplified GPX is read
		// back with the same count.
		fine := decodeJSONExport(t, ann.want("GET", "/api/v1/tracks/"+p1ID+"/points?simplify=0.05", nil, http.StatusOK, nil).body, p1ID)
		if len(fine) <= len(got) {
			t.Errorf("simplify=0.05 kept %d points, simplify=5 %d", len(fine), len(got))
		}
		gpx := ann.want("GET", "/api/v1/tracks/"+p1ID+"/points?format=gpx&simplify=5", nil, http.StatusOK, nil)
		file := filepath.Join(t.TempDir(), "simplified.gpx")
		if err := os.WriteFile(file, gpx.body, 0o600); err != nil {
			t.Fatal(err)
		}
		if rows := readCSV(t, runTool(t, "gpsbabel", "-t", "-i", "gpx", "-f", file, "-o", "unicsv,utc=0", "-F", "-")); len(rows) != len(got) {
			t.Errorf("simplified GPX: GPSBabel read %d points, want %d", len(rows), len(got))
		}
	})

	t.Run("delete", func(t *testing.T) {
		ann := ann.with(t)
		if n := s.countPoints(t, "ann-phone", p2Start, p2Stop); n != len(errand) {
			t.Fatalf("InfluxDB holds %d points of the errand before its deletion, want %d", n, len(errand))
		}
		r := ann.do("DELETE", "/api/v1/tracks/"+p2ID, nil)
		if r.status != http.StatusNoContent || len(r.body) != 0 {
			t.Fatalf("DELETE: %d %q, want 204 and no body", r.status, r.body)
		}
		for _, rt := range []struct{ method, path string }{
			{"GET", "/api/v1/tracks/" + p2ID},
			{"GET", "/api/v1/tracks/" + p2ID + "/points"},
			{"PATCH", "/api/v1/tracks/" + p2ID},
			{"POST", "/api/v1/tracks/" + p2ID + "/stop"},
			{"DELETE", "/api/v1/tracks/" + p2ID},
		} {
			var body any
			if rt.method == "PATCH" {
				body = map[string]string{"name": "x"}
			}
			ann.do(rt.method, rt.path, body).problem(t, rt.method+" "+rt.path+" after deletion", http.StatusNotFound, "not_found")
		}
		if n := s.countPoints(t, "ann-phone", p2Start, p2Stop); n != 0 {
			t.Errorf("InfluxDB still holds %d points of the deleted track", n)
		}
		// The phone's other track and the van are untouched.
		if n := s.countPoints(t, "ann-phone", p1Start, p1Stop); n != len(allWalk) {
			t.Errorf("InfluxDB holds %d points of the phone's other track, want %d", n, len(allWalk))
		}
		if n := s.countPoints(t, "ann-phone", time.Unix(0, 0), time.Now().Add(time.Hour)); n != len(allWalk) {
			t.Errorf("InfluxDB holds %d points of the phone, want %d", n, len(allWalk))
		}
		if n := s.countPoints(t, "ann-van", time.Unix(0, 0), time.Now().Add(time.Hour)); n != len(vanPts) {
			t.Errorf("InfluxDB holds %d points of the van, want %d", n, len(vanPts))
		}
		if tr := ann.track(p1ID); tr.Summary.Points != len(allWalk) {
			t.Errorf("the phone's other track has %d points, want %d", tr.Summary.Points, len(allWalk))
		}
		if got := decodeJSONExport(t, ann.want("GET", "/api/v1/tracks/"+p1ID+"/points", nil, http.StatusOK, nil).body, p1ID); len(got) != len(allWalk) {
			t.Errorf("the phone's other track exports %d points, want %d", len(got), len(allWalk))
		}
		if ids, _ := ann.listAll(url.Values{"device": {"ann-phone"}}); !slices.Equal(ids, []string{p1ID}) {
			t.Errorf("the phone's tracks after deletion: %v, want [%s]", ids, p1ID)
		}

		// A recording track is stopped and deleted; the device then records
		// nothing.
		tr := ann.startTrack("ann-bike", "Short ride")
		if r := ann.do("DELETE", "/api/v1/tracks/"+tr.ID, nil); r.status != http.StatusNoContent {
			t.Fatalf("DELETE a recording track: %d %s", r.status, r.body)
		}
		ann.do("GET", "/api/v1/tracks/"+tr.ID, nil).problem(t, "the deleted recording track", http.StatusNotFound, "not_found")
		if d := ann.device("ann-bike"); d.Recording != "" {
			t.Errorf("ann-bike records %q after its track was deleted", d.Recording)
		}
		ann.startTrack("ann-bike", "Next ride")
	})

	t.Run("positions stored before their track", func(t *testing.T) {
		// The bridge takes session messages and positions on two
		// connections, so a session's start may be carried out after
		// positions it covers were stored (here: for certain). They are the
		// track's points, and its summary counts them.
		ann := ann.with(t)
		watch := e2eMustConnect(t, s.broker.TCPURL, "ann-watch", tokens["ann-watch"], nil)
		w0 := time.Now().Add(-8 * time.Minute).Truncate(time.Second).UTC()
		run := walk(w0, 8)
		publishAll(t, watch, "ann-watch", run)
		eventually(t, "the watch's positions in InfluxDB", func() bool {
			return s.countPoints(t, "ann-watch", w0, w0.Add(time.Minute)) == len(run)
		})
		e2ePublish(t, watch, "devices/ann-watch/session", sessionMessage("start", "Offline run", w0))
		var id string
		eventually(t, "the watch's session to start a track", func() bool { id = ann.device("ann-watch").Recording; return id != "" })
		e2ePublish(t, watch, "devices/ann-watch/session", sessionMessage("stop", "", w0.Add(9*time.Second)))
		ann.waitTrack(id, "stopped", func(tr apiTrack) bool { return !tr.Recording })
		if got := decodeJSONExport(t, ann.want("GET", "/api/v1/tracks/"+id+"/points", nil, http.StatusOK, nil).body, id); len(got) != len(run) {
			t.Fatalf("the track exports %d points, want %d", len(got), len(run))
		}
		deadline := time.Now().Add(5 * time.Second) // two rounds of recomputation and more
		tr := ann.track(id)
		for tr.Summary.Points != len(run) && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
			tr = ann.track(id)
		}
		if tr.Summary.Points != len(run) || !tr.Summary.First.Equal(run[0].Time) || !tr.Summary.Last.Equal(run[len(run)-1].Time) {
			t.Errorf("the track exports %d points but its summary counts %d (from %v to %v, stale %v)",
				len(run), tr.Summary.Points, tr.Summary.First, tr.Summary.Last, tr.Stale)
		}
	})
}

// checkVanSummary compares the summary of the van's track with what its
// points give.
func checkVanSummary(t *testing.T, got apiSummary, ps []position.Position) {
	t.Helper()
	var dist, maxSpeed float64
	for i := range ps {
		if i > 0 {
			dist += haversine(ps[i-1].Lat, ps[i-1].Lon, ps[i].Lat, ps[i].Lon)
		}
		maxSpeed = max(maxSpeed, ps[i].Speed)
	}
	span := ps[len(ps)-1].Time.Sub(ps[0].Time).Seconds()
	climb := ps[len(ps)-1].Alt - ps[0].Alt
	wantBBox := []float64{ps[0].Lon, ps[0].Lat, ps[len(ps)-1].Lon, ps[len(ps)-1].Lat}
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"distance_m", got.Distance, dist},
		{"duration_s", got.Duration, span},
		{"moving_s", got.Moving, span}, // 11 m/s all along
		{"max_speed_mps", got.MaxSpeed, maxSpeed},
		{"avg_speed_mps", got.AvgSpeed, dist / span},
		{"elevation_gain_m", got.Gain, climb},
		{"elevation_loss_m", got.Loss, 0},
	} {
		if !near(c.got, c.want, 1e-6*max(1, math.Abs(c.want))) {
			t.Errorf("summary %s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if got.Points != len(ps) || !slices.Equal(got.BBox, wantBBox) || !got.First.Equal(ps[0].Time) || !got.Last.Equal(ps[len(ps)-1].Time) {
		t.Errorf("summary %+v, want %d points, bbox %v, from %v to %v", got, len(ps), wantBBox, ps[0].Time, ps[len(ps)-1].Time)
	}
}

// decodeJSONExport reads a JSON export: the track, whose id must be id, and
// its points.
func decodeJSONExport(t *testing.T, body []byte, id string) []position.Position {
	t.Helper()
	var doc struct {
		Track struct {
			ID string `json:"id"`
		} `json:"track"`
		Points []position.Position `json:"points"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("JSON export: %v: %.300s", err, body)
	}
	if doc.Track.ID != id {
		t.Errorf("JSON export of track %q, want %s", doc.Track.ID, id)
	}
	return doc.Points
}

// readCSV reads CSV with a header into one map a row.
func readCSV(t *testing.T, data []byte) []map[string]string {
	t.Helper()
	records, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil || len(records) == 0 {
		t.Fatalf("CSV: %v: %.300s", err, data)
	}
	var rows []map[string]string
	for _, rec := range records[1:] {
		row := map[string]string{}
		for i, k := range records[0] {
			row[k] = rec[i]
		}
		rows = append(rows, row)
	}
	return rows
}

// apiRoute is a request to the API.
type apiRoute struct {
	method, path string
	body         any
	write        string // the scope it needs when it writes
}

func (r apiRoute) String() string { return r.method + " " + r.path }

// routesOn lists a request of every route of the API on the track and the
// device given.
func routesOn(track, device string) []apiRoute {
	return []apiRoute{
		{"GET", "/api/v1/tracks?device=" + device, nil, ""},
		{"POST", "/api/v1/tracks", map[string]string{"device": device, "name": "hijack"}, "tracks:write"},
		{"GET", "/api/v1/tracks/" + track, nil, ""},
		{"PATCH", "/api/v1/tracks/" + track, map[string]string{"name": "hijacked"}, "tracks:write"},
		{"POST", "/api/v1/tracks/" + track + "/stop", nil, "tracks:write"},
		{"GET", "/api/v1/tracks/" + track + "/points", nil, ""},
		{"GET", "/api/v1/tracks/" + track + "/points?format=geojson", nil, ""},
		{"GET", "/api/v1/tracks/" + track + "/points?format=gpx", nil, ""},
		{"GET", "/api/v1/tracks/" + track + "/points?format=csv&simplify=5", nil, ""},
		{"GET", "/api/v1/devices/" + device, nil, ""},
		{"PATCH", "/api/v1/devices/" + device, map[string]any{"auto_split": 5, "name": "hijacked"}, "devices:write"},
		{"GET", "/api/v1/devices/" + device + "/last", nil, ""},
		{"GET", "/api/v1/live?device=" + device, nil, ""},
		{"DELETE", "/api/v1/tracks/" + track, nil, "tracks:write"},
		{"DELETE", "/api/v1/devices/" + device, nil, "devices:write"},
	}
}

// TestTracksAuthorization: a user reaches only their own tracks and
// devices (another user's ids are 404, exactly as ids that do not exist);
// a request without a valid token is 401 with a Bearer challenge, whatever
// is wrong with the token; a device token is 403, and so is a token without
// the scope a write needs.
func TestTracksAuthorization(t *testing.T) {
	s := startStack(t, ingest.Config{})
	a := s.openAuth(t)
	ctx := context.Background()
	for _, u := range []string{"ann", "bob"} {
		if err := a.AddUser(ctx, u, u+"'s correct horse"); err != nil {
			t.Fatal(err)
		}
	}
	annVanToken, err := a.AddDevice(ctx, "ann", "ann-van", "Van", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.AddDevice(ctx, "bob", "bob-car", "Car", nil); err != nil {
		t.Fatal(err)
	}
	annToken := s.userToken(t, "ann", "ann's correct horse")
	ann, bob := s.api(t, annToken), s.api(t, s.userToken(t, "bob", "bob's correct horse"))
	annRead := s.api(t, s.userToken(t, "ann", "ann's correct horse", readScopes...))
	annTrack := ann.startTrack("ann-van", "Ann's round")
	bobTrack := bob.startTrack("bob-car", "Bob's drive")

	routes := routesOn(annTrack.ID, "ann-van")
	public := []apiRoute{
		{"GET", "/api/v1/tracks", nil, ""},
		{"GET", "/api/v1/devices", nil, ""},
		{"POST", "/api/v1/devices", map[string]string{"id": "new-device"}, "devices:write"},
		{"GET", "/api/v1/live", nil, ""},
	}

	t.Run("other user's ids are 404", func(t *testing.T) {
		ann, bob := ann.with(t), bob.with(t)
		ghostTrack, ghostDevice := "aaaaaaaaaaaaaaaa", "no-such-device"
		ghosts := routesOn(ghostTrack, ghostDevice)
		for i, rt := range routes {
			p := bob.do(rt.method, rt.path, rt.body).problem(t, "bob: "+rt.String(), http.StatusNotFound, "not_found")
			// The same answer as for ids that exist nowhere: no oracle.
			g := bob.do(ghosts[i].method, ghosts[i].path, ghosts[i].body).problem(t, "bob: "+ghosts[i].String(), http.StatusNotFound, "not_found")
			g.Detail = strings.NewReplacer(ghostTrack, annTrack.ID, ghostDevice, "ann-van").Replace(g.Detail)
			if p != g {
				t.Errorf("bob: %s answers %+v, but %+v for an id that does not exist", rt, p, g)
			}
		}
		var page trackPage
		bob.want("GET", "/api/v1/tracks", nil, http.StatusOK, &page)
		if len(page.Tracks) != 1 || page.Tracks[0].ID != bobTrack.ID {
			t.Errorf("bob lists %+v, want only his own track", page.Tracks)
		}
		var devs struct {
			Devices []struct{ ID string } `json:"devices"`
		}
		bob.want("GET", "/api/v1/devices", nil, http.StatusOK, &devs)
		if len(devs.Devices) != 1 || devs.Devices[0].ID != "bob-car" {
			t.Errorf("bob's devices: %+v", devs)
		}
		// Nothing of ann's changed.
		if tr := ann.track(annTrack.ID); !tr.Recording || tr.Name != "Ann's round" {
			t.Errorf("ann's track after bob's attempts: %+v", tr)
		}
		if d := ann.device("ann-van"); d.Name != "Van" || d.AutoSplit != 0 || d.Recording != annTrack.ID {
			t.Errorf("ann's device after bob's attempts: %+v", d)
		}
		var annPage trackPage
		ann.want("GET", "/api/v1/tracks", nil, http.StatusOK, &annPage)
		if len(annPage.Tracks) != 1 || annPage.Tracks[0].ID != annTrack.ID {
			t.Errorf("ann lists %+v, want only her own track", annPage.Tracks)
		}
	})

	t.Run("a removed device's id registered by another user", func(t *testing.T) {
		// Device ids are global: once ann removes hers, bob may register the
		// same id. Ann's track of it, recording when she removed it, must
		// neither show in bob's device nor stop him recording, and bob's
		// positions must not become ann's points.
		ann, bob := ann.with(t), bob.with(t)
		if _, err := a.AddDevice(ctx, "ann", "ann-old", "", nil); err != nil {
			t.Fatal(err)
		}
		old := ann.startTrack("ann-old", "Left running")
		if r := ann.do("DELETE", "/api/v1/devices/ann-old", nil); r.status != http.StatusNoContent {
			t.Fatalf("ann removes ann-old: %d %s", r.status, r.body)
		}
		bob.want("POST", "/api/v1/devices", map[string]string{"id": "ann-old", "name": "Bob's now"}, http.StatusCreated, nil)
		if d := bob.device("ann-old"); d.Recording != "" {
			t.Errorf("bob's device ann-old shows the recording track %q (ann's is %s)", d.Recording, old.ID)
		}
		r := bob.do("POST", "/api/v1/tracks", map[string]string{"device": "ann-old", "name": "Bob's"})
		if r.status != http.StatusCreated {
			t.Errorf("bob cannot record with his device: %d %s", r.status, r.body)
		}
		if strings.Contains(string(r.body), old.ID) {
			t.Errorf("bob is shown ann's track id: %s", r.body)
		}
		c := paho.NewClient(paho.NewClientOptions().AddBroker(s.broker.TCPURL).SetClientID("ann-old"))
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
		defer c.Disconnect(100)
		bobPos := position.Position{Time: time.Now().UTC().Truncate(time.Millisecond), Lat: -33.9, Lon: 18.4, Set: position.Required}
		publishAll(t, c, "ann-old", []position.Position{bobPos})
		eventually(t, "bob's position in InfluxDB", func() bool {
			return s.countPoints(t, "ann-old", bobPos.Time, bobPos.Time) == 1
		})
		time.Sleep(300 * time.Millisecond) // filed in its track by now
		if got := decodeJSONExport(t, ann.want("GET", "/api/v1/tracks/"+old.ID+"/points", nil, http.StatusOK, nil).body, old.ID); len(got) != 0 {
			t.Errorf("ann's track exports bob's positions: %+v", got)
		}
		if tr := ann.track(old.ID); tr.Summary.Points != 0 {
			t.Errorf("ann's track counts bob's positions: %+v", tr.Summary)
		}
	})

	t.Run("bad tokens are 401", func(t *testing.T) {
		ann := ann.with(t)
		signer, err := a.Keys().Signer(ctx, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		foreign, err := token.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		claims := func(exp time.Time, aud string) *token.Claims {
			return &token.Claims{
				RegisteredClaims: jwt.RegisteredClaims{Issuer: s.cfg.Auth.Issuer, Subject: "usr:ann", Audience: jwt.ClaimStrings{aud},
					IssuedAt: jwt.NewNumericDate(exp.Add(-15 * time.Minute)), ExpiresAt: jwt.NewNumericDate(exp), ID: rand.Text()},
				ClientID: "trackctl", Scope: strings.Join(fullScopes, " "),
			}
		}
		sign := func(k token.Key, c *token.Claims) string {
			tok, err := token.Sign(k, c)
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}
		// The control: a token made so with the cloud's key is accepted.
		valid := sign(signer, claims(time.Now().Add(5*time.Minute), a.APIAudience()))
		s.api(t, valid).want("GET", "/api/v1/tracks", nil, http.StatusOK, nil)

		parts := strings.Split(annToken, ".")
		if len(parts) != 3 {
			t.Fatalf("ann's token is not a JWS: %q", annToken)
		}
		flipped := []byte(parts[2])
		flipped[0] = map[bool]byte{true: 'B', false: 'A'}[flipped[0] == 'A']
		var payload map[string]any
		if raw, err := base64.RawURLEncoding.DecodeString(parts[1]); err != nil || json.Unmarshal(raw, &payload) != nil {
			t.Fatalf("ann's token's payload: %v", err)
		}
		payload["sub"] = "usr:bob"
		bobPayload, _ := json.Marshal(payload)
		none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"at+jwt"}`)) + "." + parts[1] + "."

		for _, bad := range []struct {
			name, header string
			presented    bool // a bearer token was presented: the challenge says invalid_token
		}{
			{"no token", "", false},
			{"empty bearer", "Bearer ", false},
			{"basic credentials", "Basic " + base64.StdEncoding.EncodeToString([]byte("ann:ann's correct horse")), false},
			{"garbage", "Bearer garbage", true},
			{"signed by another key", "Bearer " + sign(foreign, claims(time.Now().Add(5*time.Minute), a.APIAudience())), true},
			{"expired", "Bearer " + sign(signer, claims(time.Now().Add(-5*time.Minute), a.APIAudience())), true},
			{"for another audience", "Bearer " + sign(signer, claims(time.Now().Add(5*time.Minute), "https://elsewhere.example/api/")), true},
			{"modified signature", "Bearer " + parts[0] + "." + parts[1] + "." + string(flipped), true},
			{"payload changed to bob", "Bearer " + parts[0] + "." + base64.RawURLEncoding.EncodeToString(bobPayload) + "." + parts[2], true},
			{"alg none", "Bearer " + none, true},
		} {
			c := &apiClient{t: t, base: s.httpURL, header: bad.header}
			for _, rt := range append(slices.Clone(routes), public...) {
				r := c.do(rt.method, rt.path, rt.body)
				r.problem(t, bad.name+": "+rt.String(), http.StatusUnauthorized, "invalid_token")
				challenge := r.header.Get("WWW-Authenticate")
				if !strings.HasPrefix(challenge, "Bearer ") || (bad.presented && !strings.Contains(challenge, `error="invalid_token"`)) {
					t.Errorf("%s: %s: WWW-Authenticate %q", bad.name, rt, challenge)
				}
			}
		}
		if tr := ann.track(annTrack.ID); !tr.Recording || tr.Name != "Ann's round" {
			t.Errorf("ann's track after the bad tokens: %+v", tr)
		}
	})

	t.Run("device token is 403", func(t *testing.T) {
		dev := s.api(t, annVanToken)
		for _, rt := range append(slices.Clone(routes), public...) {
			r := dev.do(rt.method, rt.path, rt.body)
			r.problem(t, "device token: "+rt.String(), http.StatusForbidden, "insufficient_scope")
			if challenge := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(challenge, "Bearer ") || !strings.Contains(challenge, `error="insufficient_scope"`) {
				t.Errorf("device token: %s: WWW-Authenticate %q", rt, challenge)
			}
		}
	})

	t.Run("read-only token", func(t *testing.T) {
		ann, annRead := ann.with(t), annRead.with(t)
		for _, rt := range append(slices.Clone(routes), public...) {
			if strings.HasPrefix(rt.path, "/api/v1/live") {
				continue // a stream: its reads are TestLiveEvents'
			}
			r := annRead.do(rt.method, rt.path, rt.body)
			if rt.write == "" {
				if r.status != http.StatusOK {
					t.Errorf("read-only token: %s: %d, want 200: %.300s", rt, r.status, r.body)
				}
				continue
			}
			r.problem(t, "read-only token: "+rt.String(), http.StatusForbidden, "insufficient_scope")
			if challenge := r.header.Get("WWW-Authenticate"); !strings.Contains(challenge, `error="insufficient_scope"`) || !strings.Contains(challenge, `scope="`+rt.write+`"`) {
				t.Errorf("read-only token: %s: WWW-Authenticate %q, want insufficient_scope for %s", rt, challenge, rt.write)
			}
		}
		if tr := ann.track(annTrack.ID); !tr.Recording || tr.Name != "Ann's round" {
			t.Errorf("ann's track after the read-only token's attempts: %+v", tr)
		}
		if d := ann.device("ann-van"); d.Name != "Van" || d.AutoSplit != 0 {
			t.Errorf("ann's device after the read-only token's attempts: %+v", d)
		}
	})
}

// TestTracksValidation: every malformed parameter and body is a 400
// problem naming what is wrong, and changes nothing.
func TestTracksValidation(t *testing.T) {
	s := startStack(t, ingest.Config{})
	a := s.openAuth(t)
	ctx := context.Background()
	if err := a.AddUser(ctx, "ann", "ann's correct horse"); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"ann-van", "ann-spare"} {
		if _, err := a.AddDevice(ctx, "ann", d, "", nil); err != nil {
			t.Fatal(err)
		}
	}
	ann := s.api(t, s.userToken(t, "ann", "ann's correct horse"))
	tr := ann.startTrack("ann-van", "Kept")
	id := tr.ID
	cursor := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	const invalidParameter, invalidRequest = "invalid_parameter", "invalid_request"
	long := strings.Repeat("n", 201)

	for _, tc := range []struct {
		name, method, path string
		body               any
		contentType        string // default application/json
		code, parameter    string
	}{
		{"limit 0", "GET", "/api/v1/tracks?limit=0", nil, "", invalidParameter, "limit"},
		{"limit 501", "GET", "/api/v1/tracks?limit=501", nil, "", invalidParameter, "limit"},
		{"limit x", "GET", "/api/v1/tracks?limit=x", nil, "", invalidParameter, "limit"},
		{"limit -3", "GET", "/api/v1/tracks?limit=-3", nil, "", invalidParameter, "limit"},
		{"limit 2.5", "GET", "/api/v1/tracks?limit=2.5", nil, "", invalidParameter, "limit"},
		{"from yesterday", "GET", "/api/v1/tracks?from=yesterday", nil, "", invalidParameter, "from"},
		{"to yesterday", "GET", "/api/v1/tracks?to=yesterday", nil, "", invalidParameter, "to"},
		{"from a date", "GET", "/api/v1/tracks?from=2026-11-21", nil, "", invalidParameter, "from"},
		{"from without zone", "GET", "/api/v1/tracks?from=2026-11-21T10:00:00", nil, "", invalidParameter, "from"},
		{"from before 1970", "GET", "/api/v1/tracks?from=1969-12-31T23:59:59Z", nil, "", invalidParameter, "from"},
		{"to before from", "GET", "/api/v1/tracks?from=2026-11-21T10:00:00Z&to=2026-11-21T09:59:59Z", nil, "", invalidParameter, "to"},
		{"cursor not base64", "GET", "/api/v1/tracks?cursor=not*a*cursor", nil, "", invalidParameter, "cursor"},
		{"cursor without id", "GET", "/api/v1/tracks?cursor=" + cursor("1700000000000000000"), nil, "", invalidParameter, "cursor"},
		{"cursor bad time", "GET", "/api/v1/tracks?cursor=" + cursor("soon."+id), nil, "", invalidParameter, "cursor"},
		{"cursor bad id", "GET", "/api/v1/tracks?cursor=" + cursor("1700000000000000000.NOT-AN-ID"), nil, "", invalidParameter, "cursor"},
		{"cursor too long", "GET", "/api/v1/tracks?cursor=" + cursor(strings.Repeat("1", 80)+"."+id), nil, "", invalidParameter, "cursor"},
		{"bad escape", "GET", "/api/v1/tracks?limit=%zz", nil, "", invalidParameter, ""},
		{"unknown parameter", "GET", "/api/v1/tracks?colour=red", nil, "", invalidParameter, "colour"},
		{"parameter in the wrong case", "GET", "/api/v1/tracks?Limit=3", nil, "", invalidParameter, "Limit"},
		{"repeated limit", "GET", "/api/v1/tracks?limit=3&limit=4", nil, "", invalidParameter, "limit"},
		{"repeated device", "GET", "/api/v1/tracks?device=ann-van&device=ann-spare", nil, "", invalidParameter, "device"},

		{"format kml", "GET", "/api/v1/tracks/" + id + "/points?format=kml", nil, "", invalidParameter, "format"},
		{"repeated format", "GET", "/api/v1/tracks/" + id + "/points?format=gpx&format=csv", nil, "", invalidParameter, "format"},
		{"simplify 0", "GET", "/api/v1/tracks/" + id + "/points?simplify=0", nil, "", invalidParameter, "simplify"},
		{"simplify -1", "GET", "/api/v1/tracks/" + id + "/points?simplify=-1", nil, "", invalidParameter, "simplify"},
		{"simplify NaN", "GET", "/api/v1/tracks/" + id + "/points?simplify=NaN", nil, "", invalidParameter, "simplify"},
		{"simplify Inf", "GET", "/api/v1/tracks/" + id + "/points?simplify=Inf", nil, "", invalidParameter, "simplify"},
		{"simplify huge", "GET", "/api/v1/tracks/" + id + "/points?simplify=1e9", nil, "", invalidParameter, "simplify"},
		{"simplify over the maximum", "GET", "/api/v1/tracks/" + id + "/points?simplify=100001", nil, "", invalidParameter, "simplify"},
		{"simplify words", "GET", "/api/v1/tracks/" + id + "/points?simplify=five", nil, "", invalidParameter, "simplify"},
		{"points unknown parameter", "GET", "/api/v1/tracks/" + id + "/points?limit=3", nil, "", invalidParameter, "limit"},

		{"track id short", "GET", "/api/v1/tracks/nope", nil, "", invalidParameter, "id"},
		{"track id upper case", "GET", "/api/v1/tracks/" + strings.ToUpper(id), nil, "", invalidParameter, "id"},
		{"track id not base32", "GET", "/api/v1/tracks/aaaaaaaaaaaaaaa1", nil, "", invalidParameter, "id"},
		{"track id long", "GET", "/api/v1/tracks/" + id + "a", nil, "", invalidParameter, "id"},
		{"track id PATCH", "PATCH", "/api/v1/tracks/nope", `{"name":"x"}`, "", invalidParameter, "id"},
		{"track id stop", "POST", "/api/v1/tracks/nope/stop", nil, "", invalidParameter, "id"},
		{"track id points", "GET", "/api/v1/tracks/nope/points", nil, "", invalidParameter, "id"},
		{"track id DELETE", "DELETE", "/api/v1/tracks/nope", nil, "", invalidParameter, "id"},
		{"track unknown parameter", "GET", "/api/v1/tracks/" + id + "?verbose=1", nil, "", invalidParameter, "verbose"},
		{"stop unknown parameter", "POST", "/api/v1/tracks/" + id + "/stop?at=now", nil, "", invalidParameter, "at"},
		{"start unknown parameter", "POST", "/api/v1/tracks?device=ann-spare", `{"device":"ann-spare"}`, "", invalidParameter, "device"},

		{"start bad JSON", "POST", "/api/v1/tracks", `{"device":`, "", invalidRequest, ""},
		{"start empty body", "POST", "/api/v1/tracks", "", "", invalidRequest, ""},
		{"start array", "POST", "/api/v1/tracks", `["ann-spare"]`, "", invalidRequest, ""},
		{"start unknown field", "POST", "/api/v1/tracks", `{"device":"ann-spare","colour":"red"}`, "", invalidRequest, ""},
		{"start trailing data", "POST", "/api/v1/tracks", `{"device":"ann-spare"}{"device":"ann-spare"}`, "", invalidRequest, ""},
		{"start without device", "POST", "/api/v1/tracks", `{"name":"x"}`, "", invalidRequest, ""},
		{"start device not a string", "POST", "/api/v1/tracks", `{"device":7}`, "", invalidRequest, ""},
		{"start malformed device", "POST", "/api/v1/tracks", `{"device":"ann/spare"}`, "", invalidRequest, ""},
		{"start name over 200 bytes", "POST", "/api/v1/tracks", `{"device":"ann-spare","name":"` + long + `"}`, "", invalidRequest, ""},
		{"start name with a control character", "POST", "/api/v1/tracks", `{"device":"ann-spare","name":"a\u0007b"}`, "", invalidRequest, ""},
		{"start not JSON", "POST", "/api/v1/tracks", `{"device":"ann-spare"}`, "text/plain", invalidRequest, ""},
		{"start body over 16 KiB", "POST", "/api/v1/tracks", "{" + strings.Repeat(" ", 17<<10) + `"device":"ann-spare"}`, "", invalidRequest, ""},
		{"rename name over 200 bytes", "PATCH", "/api/v1/tracks/" + id, `{"name":"` + long + `"}`, "", invalidRequest, ""},
		{"rename name not a string", "PATCH", "/api/v1/tracks/" + id, `{"name":5}`, "", invalidRequest, ""},
		{"rename unknown field", "PATCH", "/api/v1/tracks/" + id, `{"nom":"x"}`, "", invalidRequest, ""},

		{"device id malformed", "GET", "/api/v1/devices/ann+van", nil, "", invalidParameter, "id"},
		{"device id too long", "GET", "/api/v1/devices/" + strings.Repeat("d", 65), nil, "", invalidParameter, "id"},
		{"device unknown parameter", "GET", "/api/v1/devices/ann-van?full=1", nil, "", invalidParameter, "full"},
		{"last unknown parameter", "GET", "/api/v1/devices/ann-van/last?n=2", nil, "", invalidParameter, "n"},
		{"last device id malformed", "GET", "/api/v1/devices/ann+van/last", nil, "", invalidParameter, "id"},
		{"auto_split negative", "PATCH", "/api/v1/devices/ann-van", `{"auto_split":-1}`, "", invalidRequest, ""},
		{"auto_split over a week", "PATCH", "/api/v1/devices/ann-van", `{"auto_split":10081}`, "", invalidRequest, ""},
		{"auto_split fraction", "PATCH", "/api/v1/devices/ann-van", `{"auto_split":1.5}`, "", invalidRequest, ""},
		{"auto_split string", "PATCH", "/api/v1/devices/ann-van", `{"auto_split":"5"}`, "", invalidRequest, ""},
		{"device unknown field", "PATCH", "/api/v1/devices/ann-van", `{"autosplit":5}`, "", invalidRequest, ""},
		{"device name over 200 bytes", "PATCH", "/api/v1/devices/ann-van", `{"name":"` + long + `"}`, "", invalidRequest, ""},
		{"device PATCH unknown parameter", "PATCH", "/api/v1/devices/ann-van?x=1", `{"auto_split":5}`, "", invalidParameter, "x"},
		{"live unknown parameter", "GET", "/api/v1/live?since=0", nil, "", invalidParameter, "since"},
		{"live malformed device", "GET", "/api/v1/live?device=ann%2Fvan", nil, "", invalidParameter, "device"},
		{"devices unknown parameter", "GET", "/api/v1/devices?owner=bob", nil, "", invalidParameter, "owner"},
		{"DELETE unknown parameter", "DELETE", "/api/v1/tracks/" + id + "?force=1", nil, "", invalidParameter, "force"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ct := tc.contentType
			if ct == "" {
				ct = "application/json"
			}
			p := ann.send(tc.method, tc.path, tc.body, ct).problem(t, tc.method+" "+tc.path, http.StatusBadRequest, tc.code)
			if t.Failed() {
				return
			}
			if tc.code == invalidParameter && tc.parameter != "" && p.Parameter != tc.parameter {
				t.Errorf("parameter %q, want %q (%s)", p.Parameter, tc.parameter, p.Detail)
			}
			if tc.code == invalidRequest && p.Parameter != "" {
				t.Errorf("a body problem names parameter %q", p.Parameter)
			}
			if p.Detail == "" {
				t.Error("no detail")
			}
		})
	}

	// Nothing changed.
	if got := ann.track(id); !got.Recording || got.Name != "Kept" {
		t.Errorf("the track after the bad requests: %+v", got)
	}
	if d := ann.device("ann-van"); d.AutoSplit != 0 || d.Name != "" {
		t.Errorf("the device after the bad requests: %+v", d)
	}
	if d := ann.device("ann-spare"); d.Recording != "" {
		t.Errorf("ann-spare records %s after the bad requests", d.Recording)
	}
	// Good values next to the bad ones are accepted.
	for _, path := range []string{
		"/api/v1/tracks?limit=1", "/api/v1/tracks?limit=500", "/api/v1/tracks?from=2026-11-21T10:00:00%2B01:00",
		"/api/v1/tracks?from=2026-11-21T10:00:00Z&to=2026-11-21T10:00:00Z", "/api/v1/tracks?device=ann-spare",
		"/api/v1/tracks/" + id + "/points?format=GPX", "/api/v1/tracks/" + id + "/points?simplify=100000",
		"/api/v1/tracks/" + id + "/points?simplify=0.001",
	} {
		ann.want("GET", path, nil, http.StatusOK, nil)
	}
	ann.do("GET", "/api/v1/tracks/aaaaaaaaaaaaaaaa", nil).problem(t, "a well-formed id of no track", http.StatusNotFound, "not_found")
	ann.do("POST", "/api/v1/tracks", `{"device":"no-such-device"}`).problem(t, "a well-formed device that does not exist", http.StatusNotFound, "not_found")
}

// TestOpenAPIDescribesEveryRoute: the OpenAPI 3.1 document the running
// cloud serves describes every route of the API and of the authorization
// server under /api/, with exactly the methods they answer.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	s := startStack(t, ingest.Config{})
	resp, err := apiHTTP.Get(s.httpURL + "/api/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("GET /api/openapi.json: %s %s, %v", resp.Status, resp.Header.Get("Content-Type"), err)
	}
	type operation struct {
		OperationID string `json:"operationId"`
		Parameters  []struct {
			Name     string `json:"name"`
			In       string `json:"in"`
			Required bool   `json:"required"`
		} `json:"parameters"`
		Responses map[string]json.RawMessage `json:"responses"`
		Security  *[]map[string][]string     `json:"security"`
	}
	var doc struct {
		OpenAPI string `json:"openapi"`
		Info    struct {
			Title, Version string
		} `json:"info"`
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Components struct {
			SecuritySchemes map[string]json.RawMessage `json:"securitySchemes"`
		} `json:"components"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.OpenAPI != "3.1.0" || doc.Info.Title == "" || doc.Info.Version == "" {
		t.Errorf("openapi %q, info %+v", doc.OpenAPI, doc.Info)
	}

	// Every route is described, with its method.
	routes := [][2]string{{"GET", "/api/v1/devices"}, {"POST", "/api/v1/devices"}, {"DELETE", "/api/v1/devices/{id}"}, {"GET", "/api/v1/revocations"}}
	for _, r := range api.New(api.Config{}).Routes() {
		routes = append(routes, [2]string{r.Method, r.Path})
	}
	for _, r := range routes {
		if _, ok := doc.Paths[r[1]][strings.ToLower(r[0])]; !ok {
			t.Errorf("%s %s is not described", r[0], r[1])
		}
	}

	// Every operation described is routed, with its path parameters, and
	// the methods not described are not.
	methods := []string{"GET", "POST", "PUT", "PATCH", "DELETE"}
	ids := map[string]bool{}
	for path, item := range doc.Paths {
		concrete := strings.NewReplacer("{id}", "aaaaaaaaaaaaaaaa", "{slug}", "not-found", "{ident}", "359710041234567").Replace(path)
		if strings.Contains(concrete, "{") {
			t.Errorf("%s: a path parameter this test does not know", path)
			continue
		}
		for _, m := range methods {
			raw, described := item[strings.ToLower(m)]
			var body io.Reader
			if m == "POST" || m == "PATCH" {
				body = strings.NewReader("{}")
			}
			req, _ := http.NewRequest(m, s.httpURL+concrete, body)
			resp, err := apiHTTP.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if !described {
				if resp.StatusCode != http.StatusMethodNotAllowed {
					t.Errorf("%s %s is not described but answers %s", m, path, resp.Status)
				}
				continue
			}
			if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed {
				t.Errorf("%s %s is described but answers %s", m, path, resp.Status)
			}
			var op operation
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Errorf("%s %s: %v", m, path, err)
				continue
			}
			if op.OperationID == "" || ids[op.OperationID] {
				t.Errorf("%s %s: operationId %q missing or not unique", m, path, op.OperationID)
			}
			ids[op.OperationID] = true
			for _, name := range []string{"id", "slug"} {
				if !strings.Contains(path, "{"+name+"}") {
					continue
				}
				if !slices.ContainsFunc(op.Parameters, func(p struct {
					Name     string `json:"name"`
					In       string `json:"in"`
					Required bool   `json:"required"`
				}) bool {
					return p.Name == name && p.In == "path" && p.Required
				}) {
					t.Errorf("%s %s: path parameter %s is not described", m, path, name)
				}
			}
			if op.Security == nil {
				t.Errorf("%s %s: no security requirement (say [] when public)", m, path)
				continue
			}
			for _, req := range *op.Security {
				for scheme := range req {
					if _, ok := doc.Components.SecuritySchemes[scheme]; !ok {
						t.Errorf("%s %s: security scheme %q is not defined", m, path, scheme)
					}
				}
			}
			if len(*op.Security) > 0 {
				for _, code := range []string{"401", "403"} {
					if _, ok := op.Responses[code]; !ok {
						t.Errorf("%s %s: needs a token but does not describe %s", m, path, code)
					}
				}
			}
		}
	}

	// Every $ref points into the document.
	var generic any
	if err := json.Unmarshal(body, &generic); err != nil {
		t.Fatal(err)
	}
	var walkRefs func(v any)
	walkRefs = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				if ref, ok := e.(string); k == "$ref" && ok {
					if !resolves(generic, ref) {
						t.Errorf("$ref %s does not resolve", ref)
					}
				} else {
					walkRefs(e)
				}
			}
		case []any:
			for _, e := range v {
				walkRefs(e)
			}
		}
	}
	walkRefs(generic)

	// Every problem type's URI answers its description.
	for _, pt := range problem.Types {
		var d struct {
			Type, Title, Code, Description string
			Status                         int
		}
		resp, err := apiHTTP.Get(s.httpURL + pt.URI())
		if err != nil {
			t.Fatal(err)
		}
		err = json.NewDecoder(resp.Body).Decode(&d)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || d.Type != pt.URI() || d.Code != pt.Code() || d.Status != pt.Status || d.Description == "" {
			t.Errorf("GET %s: %s %+v %v", pt.URI(), resp.Status, d, err)
		}
	}
}

// resolves reports whether a local JSON pointer reference ("#/a/b") names a
// member of doc.
func resolves(doc any, ref string) bool {
	rest, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return false
	}
	for _, seg := range strings.Split(rest, "/") {
		m, ok := doc.(map[string]any)
		if !ok {
			return false
		}
		if doc, ok = m[strings.NewReplacer("~1", "/", "~0", "~").Replace(seg)]; !ok {
			return false
		}
	}
	return true
}

// sseEvent is one Server-Sent Event.
type sseEvent struct {
	name string
	data string
}

// liveData is the data of a live position or status event.
type liveData struct {
	Device   string            `json:"device"`
	Time     time.Time         `json:"time"`
	Position position.Position `json:"position"`
	Status   json.RawMessage   `json:"status"`
}

// openLive opens GET /api/v1/live?query with token and returns its events
// as they come, until the test ends.
func (s *stack) openLive(t *testing.T, token, query string) <-chan sseEvent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", s.httpURL+"/api/v1/live"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		t.Fatalf("GET /api/v1/live%s: %s %s: %s", query, resp.Status, resp.Header.Get("Content-Type"), b)
	}
	events := make(chan sseEvent, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.name != "" || ev.data != "" {
					select {
					case events <- ev:
					case <-ctx.Done():
						return
					}
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "event:"):
				ev.name = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
			case strings.HasPrefix(line, "data:"):
				ev.data += strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " ")
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		resp.Body.Close()
		<-done
	})
	return events
}

// nextLive waits for the first event that match accepts and returns it
// with the events before it.
func nextLive(t *testing.T, events <-chan sseEvent, what string, match func(sseEvent, liveData) bool) (liveData, []sseEvent) {
	t.Helper()
	var seen []sseEvent
	timeout := time.After(apiTimeout)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("the live stream ended before %s; seen %v", what, seen)
			}
			var d liveData
			if ev.name == "position" || ev.name == "status" {
				if err := json.Unmarshal([]byte(ev.data), &d); err != nil {
					t.Fatalf("live %s event: %v: %s", ev.name, err, ev.data)
				}
			}
			if match(ev, d) {
				return d, seen
			}
			seen = append(seen, ev)
		case <-timeout:
			t.Fatalf("no %s on the live stream within %v; seen %v", what, apiTimeout, seen)
		}
	}
}

// drainLive returns the events that came until now, waiting settle more.
func drainLive(events <-chan sseEvent, settle time.Duration) []sseEvent {
	var out []sseEvent
	timeout := time.After(settle)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return out
			}
			out = append(out, ev)
		case <-timeout:
			return out
		}
	}
}

// TestLiveEvents: a user's live stream shows the positions (and status) of
// their devices as they arrive over MQTT, and nobody else's; a new stream
// starts with the last position.
func TestLiveEvents(t *testing.T) {
	s := startAuthStack(t)
	a := s.openAuth(t)
	ctx := context.Background()
	for _, u := range []string{"ann", "bob"} {
		if err := a.AddUser(ctx, u, u+"'s correct horse"); err != nil {
			t.Fatal(err)
		}
	}
	devTokens := map[string]string{}
	for _, u := range []struct{ user, device string }{{"ann", "ann-car"}, {"ann", "ann-bike"}, {"bob", "bob-car"}} {
		tok, err := a.AddDevice(ctx, u.user, u.device, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		devTokens[u.device] = tok
	}
	annToken := s.userToken(t, "ann", "ann's correct horse", readScopes...)
	bobToken := s.userToken(t, "bob", "bob's correct horse", readScopes...)
	annLive := s.openLive(t, annToken, "")
	annBikeLive := s.openLive(t, annToken, "?device=ann-bike")
	bobLive := s.openLive(t, bobToken, "")

	car := e2eMustConnect(t, s.broker.TCPURL, "ann-car", devTokens["ann-car"], nil)
	fix := time.Now().Add(-time.Second).Truncate(time.Millisecond).UTC()
	pos := position.Position{Time: fix, Lat: 48.8566, Lon: 2.3522, Speed: 13.9, Set: position.Required | position.FieldSpeed}
	publishAll(t, car, "ann-car", []position.Position{pos})
	got, _ := nextLive(t, annLive, "ann-car's position", func(ev sseEvent, d liveData) bool {
		return ev.name == "position" && d.Device == "ann-car"
	})
	if !got.Time.Equal(fix) || !samePosition(got.Position, pos) {
		t.Errorf("ann's live position %+v, want %+v", got, pos)
	}
	e2ePublish(t, car, "devices/ann-car/status", []byte(`{"state":"online","batt":81}`))
	got, _ = nextLive(t, annLive, "ann-car's status", func(ev sseEvent, d liveData) bool {
		return ev.name == "status" && d.Device == "ann-car"
	})
	if !strings.Contains(string(got.Status), `"batt":81`) {
		t.Errorf("ann's live status %s", got.Status)
	}

	// Bob sees his own car, and never ann's.
	bobCar := e2eMustConnect(t, s.broker.TCPURL, "bob-car", devTokens["bob-car"], nil)
	bobPos := position.Position{Time: fix.Add(time.Second), Lat: -33.9, Lon: 18.4, Set: position.Required}
	publishAll(t, bobCar, "bob-car", []position.Position{bobPos})
	_, before := nextLive(t, bobLive, "bob-car's position", func(ev sseEvent, d liveData) bool {
		return ev.name == "position" && d.Device == "bob-car"
	})
	for _, ev := range append(before, drainLive(bobLive, 300*time.Millisecond)...) {
		if strings.Contains(ev.data, "ann-") {
			t.Errorf("bob's live stream shows ann's device: %s %s", ev.name, ev.data)
		}
	}
	for _, ev := range drainLive(annLive, 0) {
		if strings.Contains(ev.data, "bob-car") {
			t.Errorf("ann's live stream shows bob's car: %s %s", ev.name, ev.data)
		}
	}
	// A stream of one device shows that device only.
	bike := e2eMustConnect(t, s.broker.TCPURL, "ann-bike", devTokens["ann-bike"], nil)
	bikePos := position.Position{Time: fix.Add(2 * time.Second), Lat: 48.86, Lon: 2.35, Set: position.Required}
	publishAll(t, bike, "ann-bike", []position.Position{bikePos})
	_, before = nextLive(t, annBikeLive, "ann-bike's position", func(ev sseEvent, d liveData) bool {
		return ev.name == "position" && d.Device == "ann-bike"
	})
	for _, ev := range before {
		if strings.Contains(ev.data, "ann-car") {
			t.Errorf("the stream of ann-bike shows ann-car: %s %s", ev.name, ev.data)
		}
	}

	// A new stream starts with each device's last position and status.
	fresh := s.openLive(t, annToken, "")
	got, _ = nextLive(t, fresh, "ann-car's last position on a new stream", func(ev sseEvent, d liveData) bool {
		return ev.name == "position" && d.Device == "ann-car"
	})
	if !samePosition(got.Position, pos) {
		t.Errorf("the new stream's last position %+v, want %+v", got.Position, pos)
	}
}

// TestAutoSplitEndToEnd: a device with an automatic split of one minute
// gets a track per run of positions, split at gaps longer than a minute,
// the newest still recording; starting a track by hand closes it.
func TestAutoSplitEndToEnd(t *testing.T) {
	s := startAuthStack(t)
	a := s.openAuth(t)
	ctx := context.Background()
	if err := a.AddUser(ctx, "ann", "ann's correct horse"); err != nil {
		t.Fatal(err)
	}
	devToken, err := a.AddDevice(ctx, "ann", "ann-truck", "Truck", nil)
	if err != nil {
		t.Fatal(err)
	}
	ann := s.api(t, s.userToken(t, "ann", "ann's correct horse"))
	var d apiDevice
	ann.want("PATCH", "/api/v1/devices/ann-truck", map[string]int{"auto_split": 1}, http.StatusOK, &d)
	if d.AutoSplit != 1 || d.Name != "Truck" {
		t.Fatalf("PATCH auto_split: %+v", d)
	}
	if d := ann.device("ann-truck"); d.AutoSplit != 1 {
		t.Fatalf("auto_split %d after PATCH", d.AutoSplit)
	}

	now := time.Now().Truncate(time.Second).UTC()
	runs := [][]position.Position{walk(now.Add(-6*time.Minute), 10), walk(now.Add(-3*time.Minute), 10), walk(now.Add(-11*time.Second), 5)}
	truck := e2eMustConnect(t, s.broker.TCPURL, "ann-truck", devToken, nil)
	for _, run := range runs {
		publishAll(t, truck, "ann-truck", run)
	}
	var page trackPage
	eventually(t, "three automatic tracks", func() bool {
		page, _ = ann.list(url.Values{"device": {"ann-truck"}})
		return len(page.Tracks) == 3 && page.Tracks[0].Summary.Points == 5 && page.Tracks[1].Summary.Points == 10 && page.Tracks[2].Summary.Points == 10
	})
	for i, tr := range page.Tracks {
		run := runs[len(runs)-1-i] // newest first
		first, last := run[0].Time, run[len(run)-1].Time
		if !tr.Auto || tr.Device != "ann-truck" || !tr.Started.Equal(first) || !tr.Summary.First.Equal(first) || !tr.Summary.Last.Equal(last) {
			t.Errorf("automatic track %d: %+v, want from %v to %v", i, tr, first, last)
		}
		if recording := i == 0; tr.Recording != recording || (!recording && (tr.Stopped == nil || !tr.Stopped.Equal(last))) {
			t.Errorf("automatic track %d: recording %v, stopped %v; want recording %v", i, tr.Recording, tr.Stopped, recording)
		}
	}
	live := page.Tracks[0]
	if d := ann.device("ann-truck"); d.Recording != live.ID {
		t.Errorf("ann-truck records %q, want %s", d.Recording, live.ID)
	}

	// Starting a track by hand closes the automatic one at its last point.
	manual := ann.startTrack("ann-truck", "By hand")
	if closed := ann.track(live.ID); closed.Recording || closed.Stopped == nil || !closed.Stopped.Equal(runs[2][4].Time) {
		t.Errorf("the automatic track after a manual start: %+v", closed)
	}
	if d := ann.device("ann-truck"); d.Recording != manual.ID {
		t.Errorf("ann-truck records %q, want %s", d.Recording, manual.ID)
	}
}
