package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"trackgate/cloud"
	"trackgate/cloud/auth"
	"trackgate/internal/influxconf"
	"trackgate/internal/procstat"
)

// held are the loopback ports picked for processes not yet started, kept
// bound until release, just before their process starts, so that nothing
// else on the machine (tests running in parallel) takes one in between.
var held = struct {
	sync.Mutex
	ls map[string]net.Listener
}{ls: map[string]net.Listener{}}

// freePort returns a loopback address whose port is held until release.
func freePort() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	held.Lock()
	defer held.Unlock()
	held.ls[ln.Addr().String()] = ln
	return ln.Addr().String()
}

// release frees the ports of addrs for the process about to bind them.
func release(addrs ...string) {
	held.Lock()
	defer held.Unlock()
	for _, a := range addrs {
		if ln := held.ls[a]; ln != nil {
			ln.Close()
			delete(held.ls, a)
		}
	}
}

// waitHTTP waits until url answers 2xx, or p exits, or timeout.
func waitHTTP(ctx context.Context, p *proc, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if p != nil && p.exited() {
			return fmt.Errorf("%s exited: %v\n%s", p.name, p.err, p.logTail())
		}
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	name := url
	if p != nil {
		name = p.name + " (" + url + ")"
	}
	return fmt.Errorf("%s not ready after %v", name, timeout)
}

// startInfluxd starts influxd with its data in dir, its HTTP API (with
// pprof) on a free loopback port.
func startInfluxd(ctx context.Context, bin, dir string) (*proc, string, error) {
	httpAddr, rpcAddr := freePort(), freePort()
	conf := influxconf.Config{RPCAddr: rpcAddr, HTTPAddr: httpAddr, Pprof: true,
		MetaDir: filepath.Join(dir, "meta"), DataDir: filepath.Join(dir, "data"), WALDir: filepath.Join(dir, "wal")}.String()
	path := filepath.Join(dir, "influxdb.conf")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, "", err
	}
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, "", err
	}
	release(httpAddr, rpcAddr)
	p, err := startProc(filepath.Dir(dir), "influxd", bin, "run", "-config", path)
	if err != nil {
		return nil, "", err
	}
	u := "http://" + httpAddr
	if err := waitHTTP(ctx, p, u+"/ping", time.Minute); err != nil {
		p.stop()
		return nil, "", err
	}
	return p, u, nil
}

// provision makes the cloud's data directory: a user "bench" owning n
// devices PREFIX-00000..., each with its device token, written as
// "DEVICE TOKEN" lines to the returned file (mode 0600).
func provision(ctx context.Context, dataDir, issuer, prefix string, n int) (string, error) {
	a, st, err := cloud.OpenAuth(ctx, dataDir, auth.Config{Issuer: issuer, DeviceTokenTTL: 24 * time.Hour, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return "", fmt.Errorf("provision: %w", err)
	}
	defer st.Close()
	if err := a.AddUser(ctx, "bench", "bench-password-not-used"); err != nil {
		return "", fmt.Errorf("provision: %w", err)
	}
	var b strings.Builder
	for i := range n {
		id := fmt.Sprintf("%s-%05d", prefix, i)
		tok, err := a.AddDevice(ctx, "bench", id, "", nil)
		if err != nil {
			return "", fmt.Errorf("provision %s: %w", id, err)
		}
		fmt.Fprintf(&b, "%s %s\n", id, tok)
	}
	path := filepath.Join(filepath.Dir(dataDir), "tokens")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return "", err
	}
	return path, nil
}

// stack is trackgate under test: influxd, the cloud and the gateway.
type stack struct {
	influxd, cloud, gateway *proc
	influxURL               string
	mqtt                    string // the gateway's broker, tcp://...
	cloudPprof, gwPprof     string // pprof base URLs
	gwMetrics               string // the gateway's /metrics
	gwArgv                  []string
	gwAddrs                 []string // the gateway's listeners
	dir                     string
	issuer                  string
	tokens                  string // the devices' tokens file
	ptyDir                  string // where the receivers' links go
}

// startStack starts influxd (when influxURL is empty), provisions devices,
// and starts the cloud and the gateway (with receivers sources rx-NN on
// ptyDir/gpsN).
func startStack(ctx context.Context, o options, dir string) (*stack, error) {
	s := &stack{influxURL: o.influxURL, ptyDir: filepath.Join(dir, "pty")}
	if s.influxURL == "" {
		p, u, err := startInfluxd(ctx, o.influxd, filepath.Join(dir, "influxdb"))
		if err != nil {
			return nil, err
		}
		s.influxd, s.influxURL = p, u
	}
	inf := newInflux(s.influxURL)
	for _, db := range []string{dbOurs, dbTelegraf, dbCeiling} {
		if err := inf.createDB(ctx, db); err != nil {
			s.stop()
			return nil, err
		}
	}
	httpAddr := freePort()
	issuer := "http://" + httpAddr
	t0 := time.Now()
	tokens, err := provision(ctx, filepath.Join(dir, "cloud"), issuer, phonePrefix, o.devices())
	if err != nil {
		s.stop()
		return nil, err
	}
	s.tokens = tokens
	logf("provisioned %d devices with their tokens in %.1f s", o.devices(), time.Since(t0).Seconds())

	mqttAddr, gwHTTP := freePort(), freePort()
	s.mqtt = "tcp://" + mqttAddr
	cloudPprof, gwPprof := freePort(), freePort()
	s.cloudPprof, s.gwPprof = "http://"+cloudPprof, "http://"+gwPprof
	release(httpAddr, cloudPprof)
	s.cloud, err = startProc(dir, "cloud", filepath.Join(o.bin, "cloud"), "serve", "--http", httpAddr, "--issuer", issuer,
		"--data", filepath.Join(dir, "cloud"), "--mqtt", s.mqtt, "--influx-url", s.influxURL, "--influx-bucket", dbOurs,
		"--pprof", cloudPprof, "--log-level", "warn")
	if err != nil {
		s.stop()
		return nil, err
	}
	if err := waitHTTP(ctx, s.cloud, issuer+"/healthz", time.Minute); err != nil {
		s.stop()
		return nil, err
	}
	var sources strings.Builder
	for i := range o.receivers {
		fmt.Fprintf(&sources, "serial:%s=%s-%02d\n", filepath.Join(s.ptyDir, fmt.Sprintf("gps%d", i)), receiverPrefix, i)
	}
	sourcesFile := filepath.Join(dir, "sources")
	if err := os.WriteFile(sourcesFile, []byte(sources.String()), 0o644); err != nil {
		s.stop()
		return nil, err
	}
	s.gwMetrics = "http://" + gwHTTP + "/metrics"
	s.gwArgv = []string{filepath.Join(o.bin, "gateway"), "--mqtt", mqttAddr, "--mqtt-ws", "",
		"--issuer", issuer, "--data", filepath.Join(dir, "gateway"), "--http", gwHTTP, "--mqtt-conn-rate", "-1",
		"--sources", sourcesFile, "--pprof", gwPprof, "--log-level", "warn"}
	s.dir, s.issuer, s.gwAddrs = dir, issuer, []string{mqttAddr, gwHTTP, gwPprof}
	if err := s.startGateway(ctx); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// startGateway starts the gateway and waits until it serves and the
// cloud's ingest bridge is connected to it.
func (s *stack) startGateway(ctx context.Context) error {
	release(s.gwAddrs...)
	var err error
	if s.gateway, err = startProc(s.dir, "gateway", s.gwArgv...); err != nil {
		return err
	}
	if err := waitHTTP(ctx, s.gateway, strings.TrimSuffix(s.gwMetrics, "/metrics")+"/healthz", time.Minute); err != nil {
		return err
	}
	return waitHTTP(ctx, s.cloud, s.issuer+"/readyz", time.Minute)
}

// restartGateway stops the gateway and starts it again, so that a
// measurement of its memory starts from a fresh process.
func (s *stack) restartGateway(ctx context.Context) error {
	s.gateway.stop()
	return s.startGateway(ctx)
}

func (s *stack) procs() []*proc { return []*proc{s.gateway, s.cloud, s.influxd} }

// settle waits, up to settleMax, until the stack's processes together use
// less than a tenth of a core over settleWindow: each measurement starts on
// a quiet machine, not during influxd's compaction of the previous load.
func (s *stack) settle(ctx context.Context) {
	start := time.Now()
	cpu := func() (total time.Duration) {
		for _, p := range s.procs() {
			if u, err := procstat.Read(p.pid()); err == nil {
				total += u.CPU
			}
		}
		return total
	}
	for time.Since(start) < settleMax {
		before := cpu()
		select {
		case <-ctx.Done():
			return
		case <-time.After(settleWindow):
		}
		if cpu()-before < settleWindow/10 {
			break
		}
	}
	if waited := time.Since(start); waited > 2*settleWindow {
		logf("waited %.1f s for the stack to go quiet", waited.Seconds())
	}
}

// settleWindow and settleMax bound stack.settle.
const (
	settleWindow = time.Second
	settleMax    = 30 * time.Second
)

// stop stops the gateway, the cloud and influxd, in that order.
func (s *stack) stop() {
	s.gateway.stop()
	s.cloud.stop()
	s.influxd.stop()
}
