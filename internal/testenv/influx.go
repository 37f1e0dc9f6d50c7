package testenv

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"trackgate/internal/influxconf"
)

const (
	influxDatabase     = "trackgate"
	influxReadyTimeout = 60 * time.Second
	influxPollInterval = 50 * time.Millisecond
	influxStopTimeout  = 10 * time.Second
	influxLogTailBytes = 4 << 10
)

// Influx is a throw-away influxd 1.8 server started by StartInflux. It
// listens on loopback only, keeps its data in the test's temporary directory
// and is stopped when the test ends.
//
// Start, Stop and Kill must be called from the test goroutine (Start may call
// t.Fatalf).
type Influx struct {
	// URL is the HTTP API base URL, e.g. "http://127.0.0.1:41234" (no
	// trailing slash). It stays the same across Stop/Kill and Start.
	URL string
	// Database is the database created at start-up ("trackgate"). Its
	// default retention policy is "autogen", so the v2 compatibility bucket
	// is "trackgate/autogen" (or just "trackgate").
	Database string

	t          testing.TB
	bin        string
	configPath string
	logPath    string
	client     *http.Client

	mu   sync.Mutex
	proc *influxProc // nil when not running
}

// influxProc is one run of influxd.
type influxProc struct {
	cmd     *exec.Cmd
	exited  chan struct{} // closed once cmd has been waited for
	waitErr error         // cmd.Wait result; read only after exited is closed
}

// StartInflux starts influxd from <RepoRoot>/.tools/bin/influxd on free
// loopback ports with fresh temporary directories, waits until it answers
// /ping, creates the "trackgate" database and registers a cleanup that stops
// it. The test fails (it is never skipped) if the binary is missing or the
// server does not become ready.
func StartInflux(t testing.TB) *Influx {
	t.Helper()
	bin := filepath.Join(RepoRoot(t), ".tools", "bin", "influxd")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("testenv: influxd not found (%v); run `make tools` to install it", err)
	}

	dir := t.TempDir()
	addrs := freeAddrs(t, 2)
	rpcAddr, httpAddr := addrs[0], addrs[1]
	inf := &Influx{
		URL:        "http://" + httpAddr,
		Database:   influxDatabase,
		t:          t,
		bin:        bin,
		configPath: filepath.Join(dir, "influxd.toml"),
		logPath:    filepath.Join(dir, "influxd.log"),
		client:     &http.Client{Timeout: 30 * time.Second},
	}
	config := influxconf.Config{RPCAddr: rpcAddr, HTTPAddr: httpAddr, Flux: true,
		MetaDir: filepath.Join(dir, "meta"), DataDir: filepath.Join(dir, "data"), WALDir: filepath.Join(dir, "wal")}.String()
	if err := os.WriteFile(inf.configPath, []byte(config), 0o600); err != nil {
		t.Fatalf("testenv: write influxd config: %v", err)
	}

	t.Cleanup(inf.Stop)
	inf.Start()
	if _, err := inf.Query("CREATE DATABASE " + influxDatabase); err != nil {
		t.Fatalf("testenv: create database %q: %v\n%s", influxDatabase, err, inf.logTail())
	}
	return inf
}

// Start starts influxd again, on the same ports and with the same data, after
// Stop or Kill, and waits until it is ready. It fails the test if influxd is
// already running or does not become ready within 60 s.
func (inf *Influx) Start() {
	t := inf.t
	t.Helper()
	inf.mu.Lock()
	defer inf.mu.Unlock()
	if inf.proc != nil {
		t.Fatalf("testenv: influxd is already running; call Stop or Kill first")
	}

	logFile, err := os.OpenFile(inf.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatalf("testenv: open influxd log: %v", err)
	}
	cmd := exec.Command(inf.bin, "run", "-config", inf.configPath)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = sysProcAttr()
	err = cmd.Start()
	logFile.Close() // the child has its own copy of the descriptor
	if err != nil {
		t.Fatalf("testenv: start influxd: %v", err)
	}
	p := &influxProc{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	inf.proc = p

	began := time.Now()
	if err := inf.waitReady(p); err != nil {
		inf.killLocked()
		t.Fatalf("testenv: influxd at %s not ready after %v: %v\n%s",
			inf.URL, time.Since(began).Round(time.Millisecond), err, inf.logTail())
	}
	t.Logf("testenv: influxd ready at %s after %v", inf.URL, time.Since(began).Round(time.Millisecond))
}

// waitReady polls GET /ping until it answers 204, influxd exits or the
// timeout expires.
func (inf *Influx) waitReady(p *influxProc) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(influxReadyTimeout)
	tick := time.NewTicker(influxPollInterval)
	defer tick.Stop()
	for {
		resp, err := client.Get(inf.URL + "/ping")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusNoContent {
				return nil
			}
			err = fmt.Errorf("GET /ping: status %s", resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out: %w", err)
		}
		select {
		case <-p.exited:
			return fmt.Errorf("influxd exited: %v", p.waitErr)
		case <-tick.C:
		}
	}
}

// Stop sends SIGTERM and waits for influxd to exit; if it has not exited
// after 10 s it is killed. Stop does nothing if influxd is not running.
func (inf *Influx) Stop() {
	inf.t.Helper()
	inf.mu.Lock()
	defer inf.mu.Unlock()
	if inf.proc == nil {
		return
	}
	inf.reportUnexpectedExitLocked()
	if err := inf.proc.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		inf.t.Logf("testenv: SIGTERM influxd: %v", err)
	}
	timer := time.NewTimer(influxStopTimeout)
	defer timer.Stop()
	select {
	case <-inf.proc.exited:
	case <-timer.C:
		inf.t.Logf("testenv: influxd did not exit %v after SIGTERM; killing it", influxStopTimeout)
	}
	inf.killLocked()
}

// Kill sends SIGKILL and waits for influxd to exit, simulating a crash (data
// that was not yet snapshotted is recovered from the WAL on the next Start).
// Kill does nothing if influxd is not running.
func (inf *Influx) Kill() {
	inf.t.Helper()
	inf.mu.Lock()
	defer inf.mu.Unlock()
	if inf.proc == nil {
		return
	}
	inf.reportUnexpectedExitLocked()
	inf.killLocked()
}

// killLocked kills the process if it is still alive, waits for it and marks
// the server as not running. inf.mu must be held and inf.proc non-nil.
func (inf *Influx) killLocked() {
	p := inf.proc
	select {
	case <-p.exited:
	default:
		if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			inf.t.Logf("testenv: SIGKILL influxd: %v", err)
		}
		<-p.exited
	}
	inf.proc = nil
}

// reportUnexpectedExitLocked logs the exit status and log tail if influxd
// exited on its own, before Stop or Kill was called. inf.mu must be held and
// inf.proc non-nil.
func (inf *Influx) reportUnexpectedExitLocked() {
	select {
	case <-inf.proc.exited:
		inf.t.Logf("testenv: influxd exited unexpectedly: %v\n%s", inf.proc.waitErr, inf.logTail())
	default:
	}
}

// Query runs an InfluxQL statement against the database via POST /query and
// returns the raw JSON response body. It returns an error (along with the
// body) if the status is not 2xx or if a statement in the response reports
// an error (InfluxQL reports many errors with status 200).
func (inf *Influx) Query(influxQL string) ([]byte, error) {
	u := inf.URL + "/query?" + url.Values{"db": {inf.Database}}.Encode()
	resp, err := inf.client.PostForm(u, url.Values{"q": {influxQL}})
	if err != nil {
		return nil, fmt.Errorf("influxql %q: %w", influxQL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("influxql %q: read response: %w", influxQL, err)
	}
	if resp.StatusCode/100 != 2 {
		return body, fmt.Errorf("influxql %q: status %s: %s", influxQL, resp.Status, strings.TrimSpace(string(body)))
	}
	var parsed struct {
		Error   string `json:"error"`
		Results []struct {
			Error string `json:"error"`
		} `json:"results"`
	}
	if err := json.Unmarshal(body, &parsed); err != nil {
		return body, fmt.Errorf("influxql %q: decode response: %w", influxQL, err)
	}
	if parsed.Error != "" {
		return body, fmt.Errorf("influxql %q: %s", influxQL, parsed.Error)
	}
	for _, r := range parsed.Results {
		if r.Error != "" {
			return body, fmt.Errorf("influxql %q: %s", influxQL, r.Error)
		}
	}
	return body, nil
}

// logTail returns the end of the influxd log for failure messages.
func (inf *Influx) logTail() string {
	data, err := os.ReadFile(inf.logPath)
	if err != nil {
		return fmt.Sprintf("(no influxd log: %v)", err)
	}
	if len(data) > influxLogTailBytes {
		data = data[len(data)-influxLogTailBytes:]
		if i := strings.IndexByte(string(data), '\n'); i >= 0 {
			data = data[i+1:]
		}
	}
	if len(strings.TrimSpace(string(data))) == 0 {
		return "(influxd log " + inf.logPath + " is empty)"
	}
	return "influxd log tail (" + inf.logPath + "):\n" + string(data)
}
