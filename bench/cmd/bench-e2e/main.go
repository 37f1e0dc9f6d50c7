// Command bench-e2e is trackgate's end-to-end benchmark harness (make
// bench-e2e). It starts influxd, the cloud and the gateway on loopback,
// provisions devices with their tokens, drives them with loadgen, and
// measures from outside: positions persisted per second (counted in
// InfluxDB), publish→queryable latency, CPU seconds and peak RSS of every
// process, and loss. In the same run it measures the pipeline a user would
// otherwise assemble, mosquitto + Telegraf's mqtt_consumer + InfluxDB, with
// the same load, and influxd's own line-protocol write ceiling, and prints
// one table of medians and ratios. BENCHMARKS.md says how to read it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"trackgate/internal/procstat"
)

// Where each pipeline's positions go, and the devices' id prefixes.
const (
	dbOurs         = "trackgate"
	dbTelegraf     = "telegraf"
	dbCeiling      = "ceiling"
	measurement    = "position"
	phonePrefix    = "ph"
	receiverPrefix = "rx"
	// sampleRe picks every 50th phone (ph-00000, ph-00050, ... ph-00950):
	// the devices whose positions the latency poller follows.
	sampleRe = `^ph-00[0-9][05]0$`
)

// options are the harness's flags.
type options struct {
	bin, influxd, telegraf, mosquitto string
	influxURL                         string
	out                               string
	runs                              int
	duration                          time.Duration
	scenarios                         []string
	phones, idle, receivers           int
	batch, inflight                   int
	latencyRate                       float64
	receiverRate                      float64
}

// devices is how many devices to provision: the phones and the idle ones.
func (o options) devices() int { return o.phones + o.idle }

func (o options) has(s string) bool { return slices.Contains(o.scenarios, s) }

var logOut io.Writer = os.Stderr

func logf(format string, args ...any) {
	fmt.Fprintf(logOut, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench-e2e:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("bench-e2e", flag.ContinueOnError)
	var o options
	fs.StringVar(&o.bin, "bin", "./bin", "`directory` of trackgate's commands (cloud, gateway, loadgen)")
	fs.StringVar(&o.influxd, "influxd", "./.tools/bin/influxd", "influxd `binary`")
	fs.StringVar(&o.influxURL, "influx-url", "", "use this running InfluxDB 1.x (`URL`) instead of starting influxd")
	fs.StringVar(&o.telegraf, "telegraf", "./.tools/bin/telegraf", "telegraf `binary` of the baseline")
	fs.StringVar(&o.mosquitto, "mosquitto", "/usr/sbin/mosquitto", "mosquitto `binary` of the baseline")
	fs.StringVar(&o.out, "out", "", "results `directory` (default var/bench/TIME)")
	fs.IntVar(&o.runs, "runs", 3, "runs of each measurement; the table shows medians")
	fs.DurationVar(&o.duration, "duration", 20*time.Second, "how long each load runs")
	scen := fs.String("scenarios", "ceiling,a,telegraf,b,c,d", "what to run, comma-separated: ceiling (raw influxd writes), a (1,000 phones sustained), telegraf (the same through mosquitto + Telegraf), b (latency at a fixed rate), c (idle connections, then active), d (serial receivers)")
	fs.IntVar(&o.phones, "phones", 1000, "publishing phones")
	fs.IntVar(&o.idle, "idle", 10000, "idle authenticated connections of scenario c")
	fs.IntVar(&o.receivers, "receivers", 50, "serial receivers of scenario d")
	fs.Float64Var(&o.receiverRate, "receiver-rate", 10, "receiver epochs per second")
	fs.IntVar(&o.batch, "batch", 10, "positions per message (a JSON array) in scenarios a, b and c and the baseline")
	fs.IntVar(&o.inflight, "inflight", 20, "unacknowledged messages per phone when publishing as fast as acknowledged")
	fs.Float64Var(&o.latencyRate, "latency-rate", 20000, "positions per second of scenario b")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.scenarios = strings.Split(*scen, ",")
	if !o.has("c") {
		o.idle = 0
	}
	if !o.has("d") {
		o.receivers = 0
	}
	if o.out == "" {
		o.out = filepath.Join("var", "bench", time.Now().Format("20060102-150405"))
	}
	for _, p := range []*string{&o.bin, &o.influxd, &o.telegraf, &o.out} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		*p = abs
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	// Every process started here may hold as many descriptors as allowed:
	// raising the limit in this process raises it in theirs.
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	logf("results in %s", o.out)
	s, err := startStack(ctx, o, o.out)
	if err != nil {
		return err
	}
	defer s.stop()
	results, err := measure(ctx, o, s)
	if b, jerr := json.MarshalIndent(results, "", "  "); jerr == nil {
		_ = os.WriteFile(filepath.Join(o.out, "results.json"), b, 0o644)
	}
	table := summarize(o, results, machine())
	fmt.Fprint(stdout, table)
	_ = os.WriteFile(filepath.Join(o.out, "summary.txt"), []byte(table), 0o644)
	return err
}

// Result is one measurement.
type Result struct {
	Scenario string `json:"scenario"`
	Pipeline string `json:"pipeline"` // trackgate, telegraf or influxd
	Run      int    `json:"run"`
	// Published positions were acknowledged by the broker (receiver
	// epochs written, for receivers); Unacked were sent without an
	// acknowledgement by the end.
	Published int64 `json:"published"`
	Unacked   int64 `json:"unacked"`
	Stored    int64 `json:"stored"`
	Lost      int64 `json:"lost"`
	// Seconds is from the first publish until InfluxDB held the last
	// position; PerSecond is Stored over it.
	Seconds   float64             `json:"seconds"`
	PerSecond float64             `json:"per_second"`
	Latency   *Latency            `json:"latency,omitempty"`
	Procs     map[string]ProcStat `json:"procs"`
	Notes     map[string]float64  `json:"notes,omitempty"`
}

// measure runs the chosen scenarios o.runs times each; what failed is
// reported and the rest goes on.
func measure(ctx context.Context, o options, s *stack) ([]Result, error) {
	var results []Result
	var errs []error
	add := func(r Result, err error) {
		if err != nil {
			logf("%s/%s run %d: %v", r.Scenario, r.Pipeline, r.Run, err)
			errs = append(errs, fmt.Errorf("%s/%s run %d: %w", r.Scenario, r.Pipeline, r.Run, err))
			return
		}
		logf("%-8s %-9s run %d: %9.0f positions/s  stored %d of %d  lost %d%s", r.Scenario, r.Pipeline, r.Run,
			r.PerSecond, r.Stored, r.Published, r.Lost, latencyText(r.Latency))
		results = append(results, r)
	}
	inf := newInflux(s.influxURL)
	// each runs one measurement once the stack is quiet.
	each := func(f func()) {
		s.settle(ctx)
		f()
	}
	for run := 1; run <= o.runs && ctx.Err() == nil; run++ {
		if o.has("ceiling") {
			each(func() {
				r := Result{Scenario: "ceiling", Pipeline: "influxd", Run: run}
				m := startMeter(s.influxd)
				var err error
				var n int64
				r.PerSecond, n, err = inf.ceiling(ctx, dbCeiling, 2, 5000, o.duration/2)
				r.Published, r.Stored, r.Procs, r.Seconds = n, n, m.stop(), (o.duration / 2).Seconds()
				add(r, err)
			})
		}
		if o.has("a") {
			each(func() { add(sustained(ctx, o, s, run, "a", 0)) })
		}
		if o.has("telegraf") {
			each(func() { add(telegrafRun(ctx, o, s, run, baselineTuned, 0)) })
		}
		if o.has("b") {
			each(func() { add(fixedRate(ctx, o, s, run)) })
		}
		if o.has("c") {
			each(func() { add(sustained(ctx, o, s, run, "c", o.idle)) })
		}
		if o.has("d") {
			each(func() { add(receivers(ctx, o, s, run)) })
		}
	}
	if o.has("telegraf") && ctx.Err() == nil {
		// Once: the baseline as installed, at 1,000 messages a second.
		each(func() { add(telegrafRun(ctx, o, s, 1, baselineDefaults, 1000*float64(o.batch))) })
	}
	return results, errors.Join(errs...)
}

func latencyText(l *Latency) string {
	if l == nil {
		return ""
	}
	return fmt.Sprintf("  latency p50 %.0f ms p99 %.0f ms p99.9 %.0f ms", l.P50, l.P99, l.P999)
}

// sustained is scenario a (idle == 0) or c: the phones publish as fast as
// acknowledged, after idle connections are up when idle > 0.
func sustained(ctx context.Context, o options, s *stack, run int, name string, idle int) (Result, error) {
	r := Result{Scenario: name, Pipeline: "trackgate", Run: run, Notes: map[string]float64{}}
	procs := s.procs()
	var idleRSS float64
	var before float64
	if idle > 0 {
		// From a fresh gateway: what the connections cost, not what the
		// earlier scenarios left in its heap.
		if err := s.restartGateway(ctx); err != nil {
			return r, err
		}
		procs = s.procs()
		u, _ := procstat.Read(s.gateway.pid())
		before = float64(u.RSS) / 1e6
	}
	a := loadArgs{broker: s.mqtt, tokens: s.tokens, phones: o.phones, idle: idle, batch: o.batch, inflight: o.inflight,
		duration: o.duration, idleHold: 5 * time.Second}
	var profiles chan error
	if name == "a" && run == 1 {
		a.cpuProfile = filepath.Join(o.out, "profiles", "loadgen.cpu.pprof")
		if err := os.MkdirAll(filepath.Dir(a.cpuProfile), 0o755); err != nil {
			return r, err
		}
		profiles = make(chan error, 1)
		go func() { profiles <- profile(ctx, o, s) }()
	}
	lr, err := runLoad(ctx, o, o.out, fmt.Sprintf("%s-%d", name, run), a, procs, func(ev string, m *meter) {
		if ev == "idle-connected" {
			time.Sleep(2 * time.Second)
			idleRSS = m.rss("gateway")
			for k, v := range goMemory(ctx, s.gwMetrics) {
				r.Notes["gateway_idle_"+k] = v
			}
			if run == 1 {
				path := filepath.Join(o.out, "profiles", "gateway.idle.heap.pprof")
				if err := fetchProfile(ctx, s.gwPprof+"/debug/pprof/heap", path, 0); err != nil {
					logf("idle heap profile: %v", err)
				}
			}
		}
		if ev == "phones-connected" && run == 1 {
			go func() {
				path := filepath.Join(o.out, "profiles", "gateway.busy.heap.pprof")
				if err := fetchProfile(ctx, s.gwPprof+"/debug/pprof/heap", path, o.duration/2); err != nil {
					logf("busy heap profile: %v", err)
				}
			}()
		}
	})
	if profiles != nil {
		if perr := <-profiles; perr != nil {
			logf("profiles: %v", perr)
		}
	}
	if err != nil {
		return r, err
	}
	if idle > 0 {
		r.Notes["idle_connections"] = float64(idle)
		r.Notes["gateway_rss_before_mb"] = before
		r.Notes["gateway_rss_idle_mb"] = idleRSS
		r.Notes["gateway_kb_per_idle_connection"] = (idleRSS - before) * 1e3 / float64(idle)
		r.Notes["connect_seconds"] = lr.report.ConnectSeconds
	}
	return stored(ctx, s.influxURL, dbOurs, `^`+phonePrefix+`-`, r, lr, 30*time.Second)
}

// stored counts what the run published into db and fills in r.
func stored(ctx context.Context, influxURL, db, devices string, r Result, lr loadRun, quiet time.Duration) (Result, error) {
	rep := lr.report
	r.Procs = lr.procs
	r.Published, r.Unacked = rep.Positions, rep.Unacked
	if rep.Positions == 0 {
		return r, errors.New("nothing was published")
	}
	n, at, err := newInflux(influxURL).waitCount(ctx, db, measurement, where(devices, rep.First, rep.Last), rep.Positions, quiet)
	if err != nil {
		return r, err
	}
	r.Stored, r.Lost = n, max(0, rep.Positions-n)
	r.Seconds = at.Sub(rep.Started).Seconds()
	r.PerSecond = float64(n) / r.Seconds
	return r, nil
}

// fixedRate is scenario b: the phones publish latencyRate positions a
// second, batch to a message; the latency of every 50th phone's positions
// is followed.
func fixedRate(ctx context.Context, o options, s *stack, run int) (Result, error) {
	r := Result{Scenario: "b", Pipeline: "trackgate", Run: run}
	inf := newInflux(s.influxURL)
	lat := startLatency(inf, dbOurs, measurement, sampleRe, 2*time.Second, 50*time.Millisecond)
	a := loadArgs{broker: s.mqtt, tokens: s.tokens, phones: o.phones, rate: o.latencyRate, batch: o.batch, inflight: 100, duration: o.duration}
	lr, err := runLoad(ctx, o, o.out, fmt.Sprintf("b-%d", run), a, s.procs(), nil)
	if err != nil {
		lat.stop(0)
		return r, err
	}
	r, err = stored(ctx, s.influxURL, dbOurs, `^`+phonePrefix+`-`, r, lr, 30*time.Second)
	// Let the poller see the last ones, then count what it followed.
	time.Sleep(2 * lat.interval)
	total, cerr := inf.count(ctx, dbOurs, measurement, where(sampleRe, lr.report.First, lr.report.Last))
	l, lerr := lat.stop(total)
	r.Latency = &l
	// The offered rate, to compare with the persisted one.
	r.Notes = map[string]float64{"offered_per_second": o.latencyRate, "late_messages": float64(lr.report.Late)}
	return r, errors.Join(err, cerr, lerr)
}

// receivers is scenario d: serial receivers on pseudo-terminals, read by
// the gateway.
func receivers(ctx context.Context, o options, s *stack, run int) (Result, error) {
	r := Result{Scenario: "d", Pipeline: "trackgate", Run: run}
	inf := newInflux(s.influxURL)
	re := `^` + receiverPrefix + `-`
	lat := startLatency(inf, dbOurs, measurement, re, 2*time.Second, 50*time.Millisecond)
	a := loadArgs{broker: s.mqtt, receivers: o.receivers, duration: o.duration, ptyDir: s.ptyDir}
	lr, err := runLoad(ctx, o, o.out, fmt.Sprintf("d-%d", run), a, s.procs(), nil)
	if err != nil {
		lat.stop(0)
		return r, err
	}
	r.Procs = lr.procs
	r.Published = lr.report.Epochs
	cond := where(re, lr.start, lr.end.Add(time.Second))
	n, at, err := inf.waitCount(ctx, dbOurs, measurement, cond, r.Published, 5*time.Second)
	if err != nil {
		lat.stop(0)
		return r, err
	}
	r.Stored, r.Lost = n, max(0, r.Published-n)
	r.Seconds = at.Sub(lr.start).Seconds()
	r.PerSecond = float64(n) / lr.end.Sub(lr.start).Seconds()
	time.Sleep(2 * lat.interval)
	l, err := lat.stop(n)
	r.Latency = &l
	return r, err
}

// telegrafRun is the baseline: mosquitto + Telegraf with settings set, the
// same phones (anonymous) as scenario a, as fast as acknowledged (rate 0)
// or at rate positions a second.
func telegrafRun(ctx context.Context, o options, s *stack, run int, set baselineSettings, rate float64) (Result, error) {
	r := Result{Scenario: "a", Pipeline: "telegraf", Run: run, Notes: map[string]float64{}}
	if set.name != baselineTuned.name {
		r.Scenario = "a-defaults"
		r.Notes["offered_per_second"] = rate
	}
	b, err := startBaseline(ctx, o, o.out, s.influxURL, set)
	if err != nil {
		return r, err
	}
	defer b.stop()
	procs := append(b.procs(), s.influxd)
	a := loadArgs{broker: b.mqtt, phones: o.phones, rate: rate, batch: o.batch, inflight: o.inflight, duration: o.duration}
	var profiles chan error
	if run == 1 && set.name == baselineTuned.name {
		profiles = make(chan error, 1)
		go func() {
			profiles <- fetchProfile(ctx, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", b.telegrafPprof, profileSeconds(o)),
				filepath.Join(o.out, "profiles", "telegraf.cpu.pprof"), o.duration/5)
		}()
	}
	lr, err := runLoad(ctx, o, o.out, fmt.Sprintf("telegraf-%s-%d", set.name, run), a, procs, nil)
	if profiles != nil {
		if perr := <-profiles; perr != nil {
			logf("telegraf profile: %v", perr)
		}
	}
	if err != nil {
		return r, err
	}
	quiet := 15 * time.Second
	if set.flush == baselineDefaults.flush {
		quiet = 30 * time.Second
	}
	return stored(ctx, s.influxURL, dbTelegraf, `^`+phonePrefix+`-`, r, lr, quiet)
}

// profileSeconds is how long CPU profiles run: the middle half of a load.
func profileSeconds(o options) int { return max(1, int(o.duration.Seconds()/2)) }

// profile saves CPU profiles of the gateway, the cloud and influxd over the
// middle of the load, then their allocation profiles.
func profile(ctx context.Context, o options, s *stack) error {
	dir := filepath.Join(o.out, "profiles")
	targets := map[string]string{"gateway": s.gwPprof, "cloud": s.cloudPprof}
	if s.influxd != nil {
		targets["influxd"] = s.influxURL
	}
	errc := make(chan error, len(targets))
	for name, base := range targets {
		go func() {
			err := fetchProfile(ctx, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", base, profileSeconds(o)), filepath.Join(dir, name+".cpu.pprof"), o.duration/5)
			if err == nil {
				err = fetchProfile(ctx, base+"/debug/pprof/allocs", filepath.Join(dir, name+".allocs.pprof"), 0)
			}
			errc <- err
		}()
	}
	var errs []error
	for range targets {
		errs = append(errs, <-errc)
	}
	return errors.Join(errs...)
}

// goMemory reads the Go runtime's memory figures (MB) from a /metrics
// page: where a process's resident memory goes.
func goMemory(ctx context.Context, url string) map[string]float64 {
	out := map[string]float64{}
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return out
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	for line := range strings.Lines(string(b)) {
		for _, name := range []string{"heap_inuse_bytes", "heap_idle_bytes", "heap_released_bytes", "stack_inuse_bytes", "sys_bytes"} {
			if v, ok := strings.CutPrefix(line, "go_memstats_"+name+" "); ok {
				var f float64
				fmt.Sscan(v, &f)
				out[strings.TrimSuffix(name, "_bytes")+"_mb"] = f / 1e6
			}
		}
		if v, ok := strings.CutPrefix(line, "go_goroutines "); ok {
			var f float64
			fmt.Sscan(v, &f)
			out["goroutines"] = f
		}
	}
	return out
}

// fetchProfile saves what url answers to path, after delay.
func fetchProfile(ctx context.Context, url, path string, delay time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(delay):
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
