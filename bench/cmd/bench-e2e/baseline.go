package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// baseline is the pipeline a user would otherwise assemble: mosquitto
// (Debian's), Telegraf's mqtt_consumer at QoS 1 with a persistent session
// (its only at-least-once configuration), and its InfluxDB output into the
// same influxd.
type baseline struct {
	mosquitto, telegraf *proc
	mqtt                string
	telegrafPprof       string
}

// baselineSettings are a baseline run's knobs.
type baselineSettings struct {
	name string
	// queue is mosquitto's max_queued_messages per client (0: unlimited;
	// its default is 1000) and inflight its max_inflight_messages (0:
	// unlimited; default 20).
	queue, inflight int
	// Telegraf's: max_undelivered_messages, metric_batch_size,
	// metric_buffer_limit and flush_interval.
	undelivered, batch, buffer int
	flush                      string
}

// Telegraf's and mosquitto's defaults, and the settings a fair user
// would tune them to: the broker queue unlimited (it must hold what Telegraf
// has not acknowledged, or it drops it), Telegraf allowed 10,000 messages
// in flight, written 5,000 points at a time at least every 100 ms.
var (
	baselineDefaults = baselineSettings{name: "defaults", queue: 1000, inflight: 20, undelivered: 1000, batch: 1000, buffer: 10000, flush: "10s"}
	baselineTuned    = baselineSettings{name: "tuned", queue: 0, inflight: 0, undelivered: 10000, batch: 5000, buffer: 1000000, flush: "100ms"}
)

// startBaseline starts mosquitto and Telegraf (writing into db of
// influxURL) and waits until Telegraf's session is subscribed.
func startBaseline(ctx context.Context, o options, dir, influxURL string, set baselineSettings) (*baseline, error) {
	dir = filepath.Join(dir, "baseline-"+set.name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	addr := freePort()
	host, port, _ := net.SplitHostPort(addr)
	mconf := fmt.Sprintf(`listener %s %s
allow_anonymous true
user root
persistence false
max_queued_messages %d
max_inflight_messages %d
log_dest file %s
log_type error
log_type warning
log_type notice
log_type information
log_type subscribe
connection_messages true
`, port, host, set.queue, set.inflight, filepath.Join(dir, "mosquitto-events.log"))
	mpath := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(mpath, []byte(mconf), 0o644); err != nil {
		return nil, err
	}
	b := &baseline{mqtt: "tcp://" + addr}
	var err error
	release(addr)
	b.mosquitto, err = startProc(dir, "mosquitto", o.mosquitto, "-c", mpath)
	if err != nil {
		return nil, err
	}
	if err := waitTCP(ctx, b.mosquitto, addr, 10*time.Second); err != nil {
		b.stop()
		return nil, err
	}
	pprofAddr := freePort()
	b.telegrafPprof = "http://" + pprofAddr
	tconf := fmt.Sprintf(`[agent]
  interval = "10s"
  round_interval = false
  metric_batch_size = %d
  metric_buffer_limit = %d
  collection_jitter = "0s"
  flush_interval = %q
  flush_jitter = "0s"
  omit_hostname = true
  quiet = true

[[outputs.influxdb]]
  urls = [%q]
  database = %q
  skip_database_creation = true
  timeout = "30s"

[[inputs.mqtt_consumer]]
  servers = [%q]
  topics = ["devices/+/positions"]
  qos = 1
  persistent_session = true
  client_id = "telegraf-bench"
  max_undelivered_messages = %d
  data_format = "json_v2"
  [[inputs.mqtt_consumer.topic_parsing]]
    topic = "devices/+/positions"
    tags = "_/device/_"
  [[inputs.mqtt_consumer.json_v2]]
    measurement_name = "position"
    [[inputs.mqtt_consumer.json_v2.object]]
      path = "@this"
      timestamp_key = "time"
      timestamp_format = "2006-01-02T15:04:05Z07:00"
      disable_prepend_keys = true
`, set.batch, set.buffer, set.flush, influxURL, dbTelegraf, b.mqtt, set.undelivered)
	tpath := filepath.Join(dir, "telegraf.conf")
	if err := os.WriteFile(tpath, []byte(tconf), 0o644); err != nil {
		b.stop()
		return nil, err
	}
	release(pprofAddr)
	b.telegraf, err = startProc(dir, "telegraf", o.telegraf, "--config", tpath, "--pprof-addr", pprofAddr)
	if err != nil {
		b.stop()
		return nil, err
	}
	// Telegraf is subscribed once mosquitto logs its client's subscription.
	deadline := time.Now().Add(30 * time.Second)
	for !logHas(filepath.Join(dir, "mosquitto-events.log"), "telegraf-bench 1 devices/+/positions") {
		if b.telegraf.exited() || time.Now().After(deadline) {
			defer b.stop()
			return nil, fmt.Errorf("telegraf did not subscribe: %v\n%s", b.telegraf.err, b.telegraf.logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
	return b, nil
}

func (b *baseline) procs() []*proc { return []*proc{b.mosquitto, b.telegraf} }

func (b *baseline) stop() {
	b.telegraf.stop()
	b.mosquitto.stop()
}

// logHas reports whether the file has a line containing s.
func logHas(path, s string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.Contains(sc.Text(), s) {
			return true
		}
	}
	return false
}

// waitTCP waits until addr accepts connections.
func waitTCP(ctx context.Context, p *proc, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if p.exited() {
			return fmt.Errorf("%s exited: %v\n%s", p.name, p.err, p.logTail())
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s: %s not listening after %v", p.name, addr, timeout)
}
