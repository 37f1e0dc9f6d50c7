package cloud_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"trackgate/cloud"
	"trackgate/cloud/ingest"
	"trackgate/hw/gpssim"
	"trackgate/internal/testenv"
)

// process is a command under test, its output kept.
type process struct {
	t    *testing.T
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

func startProcess(t *testing.T, bin string, args ...string) *process {
	t.Helper()
	p := &process{t: t, cmd: exec.Command(bin, args...), out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.Env = os.Environ()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(bin), p.out)
		}
	})
	return p
}

// stop signals the process and waits for it, failing the test unless a
// SIGTERM ends it with status 0.
func (p *process) stop(sig syscall.Signal) {
	p.t.Helper()
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.t.Fatalf("%s did not end after %s:\n%s", p.cmd.Path, sig, p.out)
	}
	if sig == syscall.SIGTERM && p.err != nil {
		p.t.Fatalf("%s after SIGTERM: %v\n%s", p.cmd.Path, p.err, p.out)
	}
}

// toggleProxy forwards connections to target while up; down, it closes
// them and refuses new ones: the cloud unreachable from the gateway.
type toggleProxy struct {
	addr   string
	mu     sync.Mutex
	up     bool
	conns  []net.Conn
	target string
}

func newToggleProxy(t testing.TB, target string) *toggleProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &toggleProxy{addr: ln.Addr().String(), up: true, target: target}
	t.Cleanup(func() { ln.Close(); p.set(false) })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			up := p.up
			if up {
				p.conns = append(p.conns, c)
			}
			p.mu.Unlock()
			if !up {
				c.Close()
				continue
			}
			go func() {
				u, err := net.DialTimeout("tcp", p.target, 5*time.Second)
				if err != nil {
					c.Close()
					return
				}
				p.mu.Lock()
				p.conns = append(p.conns, u)
				p.mu.Unlock()
				go func() { io.Copy(u, c); u.Close() }()
				io.Copy(c, u)
				c.Close()
			}()
		}
	}()
	return p
}

func (p *toggleProxy) set(up bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.up = up
	if !up {
		for _, c := range p.conns {
			c.Close()
		}
		p.conns = nil
	}
}

// gatewayStatus is the part of the gateway's /status the test reads.
type gatewayStatus struct {
	Uplink struct {
		State   string `json:"state"`
		Error   string `json:"error"`
		Backlog struct {
			Items            uint64  `json:"items"`
			Bytes            int64   `json:"bytes"`
			OldestAgeSeconds float64 `json:"oldest_age_seconds"`
		} `json:"backlog"`
		Drain struct {
			State          string  `json:"state"`
			TotalItems     uint64  `json:"total_items"`
			ProcessedItems uint64  `json:"processed_items"`
			AverageRate    float64 `json:"average_rate_per_second"`
		} `json:"drain"`
	} `json:"uplink"`
	Enrolment struct {
		State string `json:"state"`
		Owner string `json:"owner"`
	} `json:"enrolment"`
}

func readGatewayStatus(addr string) (gatewayStatus, error) {
	var st gatewayStatus
	resp, err := http.Get("http://" + addr + "/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// epochLog records what the simulated receivers wrote, by device.
type epochLog struct {
	mu      sync.Mutex
	written map[string][]epochWritten
}

type epochWritten struct {
	fix time.Time
	at  time.Time
}

// TestUplinkOutageEndToEnd: a gateway enrolled through the device grant
// reads 10 receivers at 10 Hz and forwards through its queue to an upstream
// broker; the broker is stopped for a minute, during which the gateway is
// killed (SIGKILL) and restarted and a phone reports with the cloud
// unreachable. When the broker is back every position is in InfluxDB, once
// per device and time, the status told the backlog and its drain, and a
// revoked enrolment stops the uplink.
func TestUplinkOutageEndToEnd(t *testing.T) {
	ctx := context.Background()
	upAddr, cloudAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	s := newStack(t, ingest.Config{}, "tcp://"+upAddr)
	s.cfg.HTTP, s.cfg.Auth.Issuer = cloudAddr, "http://"+cloudAddr
	s.stopCloud = s.launchCloud(t)
	issuer := s.cfg.Auth.Issuer

	brokerBin := commandBinary(t, "trackgate/broker/cmd/broker")
	gatewayBin := commandBinary(t, "trackgate/gateway/cmd/gateway")
	upData := t.TempDir()
	startUpstream := func() *process {
		return startProcess(t, brokerBin, "--mqtt", upAddr, "--mqtt-ws", "", "--data", upData, "--issuer", issuer,
			"--revocations-interval", "200ms", "--log-level", "debug")
	}
	up := startUpstream()
	s.waitReady(t)

	a, st, err := cloud.OpenAuth(ctx, s.cfg.Data, s.cfg.Auth)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := a.AddUser(ctx, "ann", "ann's correct horse"); err != nil {
		t.Fatal(err)
	}
	phoneToken, err := a.AddDevice(ctx, "ann", "phone", "Ann's phone", nil)
	if err != nil {
		t.Fatal(err)
	}

	// Ten receivers at 10 Hz.
	const receivers = 10
	log := &epochLog{written: map[string][]epochWritten{}}
	simCtx, stopSims := context.WithCancel(ctx)
	var simWG sync.WaitGroup
	defer func() { stopSims(); simWG.Wait() }()
	var sources []string
	for i := range receivers {
		dev := fmt.Sprintf("van%d", i)
		link := filepath.Join(t.TempDir(), "gps")
		sim, err := gpssim.New(gpssim.Config{Link: link, Rate: 10, Seed: int64(i + 1), Lat: 52 + float64(i)/100, Lon: 4.9, Speed: 15,
			Logger: slog.New(slog.DiscardHandler), OnEpoch: func(f gpssim.Fix, at time.Time) {
				if !f.Valid {
					return
				}
				log.mu.Lock()
				log.written[dev] = append(log.written[dev], epochWritten{f.Time, at})
				log.mu.Unlock()
			}})
		if err != nil {
			t.Fatal(err)
		}
		simWG.Add(1)
		go func() { defer simWG.Done(); sim.Run(simCtx) }()
		<-sim.Ready()
		sources = append(sources, "--source", "serial:"+link+"@9600="+dev)
	}

	// Enrolment: the owner approves the gateway on the website; the
	// receivers' devices are registered to her.
	gwData := filepath.Join(t.TempDir(), "gateway")
	enroll := startProcess(t, gatewayBin, append([]string{"enroll", "--cloud", issuer, "--data", gwData}, sources...)...)
	var userCode string
	s.waitFor(t, "the enrolment code", func() bool {
		m := regexp.MustCompile(`enter the code\s+(\S+)`).FindStringSubmatch(enroll.out.String())
		if m != nil {
			userCode = m[1]
		}
		return m != nil
	})
	b := newWebBrowser(t, s.httpURL)
	_, body := b.follow(b.do(http.MethodGet, "/device?"+url.Values{"user_code": {userCode}}.Encode(), nil, nil))
	resp, body := b.follow(b.do(http.MethodPost, "/login", signInForm(body, "ann", "ann's correct horse"), nil))
	if resp.Request.URL.Path != "/device" || !strings.Contains(body, "approve") {
		t.Fatalf("device page after sign-in: %s at %s: %.300s", resp.Status, resp.Request.URL, body)
	}
	form := hiddenFields(body)
	form.Set("action", "approve")
	if resp, body = b.do(http.MethodPost, "/device", form, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("approving: %s: %.300s", resp.Status, body)
	}
	select {
	case <-enroll.done:
	case <-time.After(time.Minute):
		t.Fatal("gateway enroll did not end")
	}
	if enroll.err != nil {
		t.Fatalf("gateway enroll: %v\n%s", enroll.err, enroll.out)
	}
	if fi, err := os.Stat(filepath.Join(gwData, "enrolment.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("enrolment.json: %v %v", fi, err)
	}
	ann, err := st.UserByName(ctx, "ann")
	if err != nil {
		t.Fatal(err)
	}
	devs, err := st.Devices(ctx, ann.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != receivers+1 {
		t.Fatalf("ann's devices after the enrolment: %d, want %d", len(devs), receivers+1)
	}

	// The gateway: its broker verifies phones with the cloud's keys, which
	// it reaches through a proxy the test can cut.
	cloudProxy := newToggleProxy(t, cloudAddr)
	gwMQTT, gwHTTP := testenv.FreeAddr(t), testenv.FreeAddr(t)
	gwArgs := append([]string{"--mqtt", gwMQTT, "--mqtt-ws", "", "--http", gwHTTP, "--data", gwData, "--issuer", issuer,
		"--jwks", "http://" + cloudProxy.addr + "/.well-known/jwks.json",
		"--revocations-url", "http://" + cloudProxy.addr + "/api/v1/revocations",
		"--uplink", "mqtt://" + upAddr}, sources...)
	gw := startProcess(t, gatewayBin, gwArgs...)
	status := func() gatewayStatus {
		st, _ := readGatewayStatus(gwHTTP)
		return st
	}
	s.waitFor(t, "the uplink to connect", func() bool { return status().Uplink.State == "connected" })
	if st := status(); st.Enrolment.Owner != "ann" || st.Enrolment.State != "enrolled" {
		t.Fatalf("enrolment in /status: %+v", st.Enrolment)
	}
	s.waitFor(t, "positions in InfluxDB", func() bool { return s.count(t) > 10*receivers })

	phonePositions := map[time.Time]bool{}
	publishPhone := func(n int) {
		t.Helper()
		c := e2eMustConnect(t, "tcp://"+gwMQTT, "phone", phoneToken, nil)
		for range n {
			tm := time.Now().UTC().Truncate(time.Millisecond)
			e2ePublish(t, c, "devices/phone/positions", []byte(fmt.Sprintf(`{"time":%q,"lat":52.1,"lon":4.3}`, tm.Format(time.RFC3339Nano))))
			phonePositions[tm] = true
			time.Sleep(5 * time.Millisecond)
		}
		c.Disconnect(250)
	}
	publishPhone(5)

	// The outage: the upstream broker stops for a minute, and the cloud
	// is unreachable from the gateway.
	outage := time.Minute
	if v := os.Getenv("TRACKGATE_TEST_OUTAGE"); v != "" { // a shorter one while debugging
		if d, err := time.ParseDuration(v); err == nil {
			outage = d
		}
	}
	outageStart := time.Now()
	up.stop(syscall.SIGTERM)
	cloudProxy.set(false)
	s.waitFor(t, "the uplink to notice", func() bool { return status().Uplink.State != "connected" })
	time.Sleep(outage / 6)
	if st := status(); st.Uplink.Backlog.Items < uint64(outage/6/time.Second)*5*receivers || st.Uplink.Backlog.OldestAgeSeconds < outage.Seconds()/12 {
		t.Fatalf("backlog 10 s into the outage: %+v", st.Uplink.Backlog)
	}

	// Killed and restarted during the outage: what it queued is on disk.
	killedAt := time.Now()
	gw.stop(syscall.SIGKILL)
	gw = startProcess(t, gatewayBin, gwArgs...)
	s.waitFor(t, "the restarted gateway's status", func() bool { _, err := readGatewayStatus(gwHTTP); return err == nil })
	restartedAt := time.Now()
	// A phone connects while the cloud is unreachable: cached keys and
	// revocation list.
	publishPhone(20)
	if st := status(); st.Uplink.Backlog.Items < uint64(outage/6/time.Second)*5*receivers {
		t.Fatalf("backlog after the restart: %+v", st.Uplink.Backlog)
	}

	time.Sleep(time.Until(outageStart.Add(outage)))
	cloudProxy.set(true)
	up = startUpstream()
	s.waitFor(t, "the backlog to drain", func() bool {
		st := status()
		return st.Uplink.State == "connected" && st.Uplink.Drain.State == "completed" && st.Uplink.Backlog.OldestAgeSeconds < 1
	})
	last := status()
	t.Logf("drain: %d of %d entries at %.0f/s", last.Uplink.Drain.ProcessedItems, last.Uplink.Drain.TotalItems, last.Uplink.Drain.AverageRate)
	if last.Uplink.Drain.ProcessedItems < uint64(outage/2/time.Second)*10*receivers {
		t.Errorf("drain job: %+v", last.Uplink.Drain)
	}

	stopSims()
	simWG.Wait()
	s.waitFor(t, "the last positions upstream", func() bool { return status().Uplink.Backlog.Items == 0 })
	var stored map[key]bool
	want := 0
	log.mu.Lock()
	for _, w := range log.written {
		want += len(w)
	}
	log.mu.Unlock()
	s.waitFor(t, "every position in InfluxDB", func() bool {
		stored = map[key]bool{}
		for k := range s.stored(t) {
			stored[k] = true
		}
		return len(stored) >= want-2*receivers*10+len(phonePositions)
	})
	time.Sleep(2 * time.Second) // nothing more comes
	stored = map[key]bool{}
	for k := range s.stored(t) {
		stored[k] = true
	}

	// Every fix written while the gateway ran is stored, once (InfluxDB
	// keys by device and time); only those written in the moment it was
	// killed may be missing, and nothing else is stored.
	byTime := func(dev string, tm time.Time) key {
		return key{dev, tm.UTC().Truncate(10 * time.Millisecond).UnixNano()}
	}
	storedRounded := map[key]bool{}
	for k := range stored {
		storedRounded[byTime(k.device, time.Unix(0, k.time))] = true
	}
	missing, inKill, total := 0, 0, 0
	log.mu.Lock()
	for dev, ws := range log.written {
		for _, w := range ws {
			total++
			if storedRounded[byTime(dev, w.fix)] {
				delete(storedRounded, byTime(dev, w.fix))
				continue
			}
			if w.at.After(killedAt.Add(-time.Second)) && w.at.Before(restartedAt.Add(2*time.Second)) {
				inKill++
				continue
			}
			missing++
			if missing < 5 {
				t.Errorf("%s: fix %s (written %s) not stored", dev, w.fix.Format(time.RFC3339Nano), w.at.Format(time.RFC3339Nano))
			}
		}
	}
	log.mu.Unlock()
	for tm := range phonePositions {
		if !stored[key{"phone", tm.UnixNano()}] {
			t.Errorf("phone position %s not stored", tm.Format(time.RFC3339Nano))
		}
	}
	for k := range storedRounded {
		if k.device == "phone" {
			delete(storedRounded, k)
		}
	}
	if missing > 0 || len(storedRounded) > 0 {
		t.Errorf("%d of %d fixes missing; %d stored positions no receiver or phone sent", missing, total, len(storedRounded))
	}
	t.Logf("%d fixes written, %d stored; %d written in the second the gateway was killed were lost", total, total-inKill, inKill)

	// Revoking the enrolment stops the uplink, and /status says so.
	var enrolment struct {
		RefreshToken string `json:"refresh_token"`
	}
	raw, err := os.ReadFile(filepath.Join(gwData, "enrolment.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &enrolment); err != nil {
		t.Fatal(err)
	}
	resp, err = http.PostForm(s.httpURL+"/revoke", url.Values{"token": {enrolment.RefreshToken}, "client_id": {"gateway"}})
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %v %v", resp, err)
	}
	resp.Body.Close()
	s.waitFor(t, "the uplink to stop", func() bool {
		st := status()
		return st.Uplink.State == "revoked" && st.Enrolment.State == "revoked"
	})
	gw.stop(syscall.SIGTERM)
	up.stop(syscall.SIGTERM)
}
