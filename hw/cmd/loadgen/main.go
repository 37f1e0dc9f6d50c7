// Command loadgen drives a loopback broker with simulated phones (QoS 1
// positions at a fixed rate or as fast as acknowledged), idle authenticated
// connections and simulated serial receivers, for benchmarks. It prints JSON
// lines on standard output: an event line at each stage ({"event":
// "idle-connected"} and {"event": "phones-connected"}) and the report at the
// end ({"event": "report", ...}).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	"trackgate/hw/loadgen"
	"trackgate/internal/config"
	"trackgate/internal/logx"
)

func main() {
	if os.Getenv("GOGC") == "" {
		// Load generation allocates a payload per message and keeps
		// little: fewer collections leave more of the machine to what
		// is measured. GOGC set in the environment wins.
		debug.SetGCPercent(400)
	}
	config.Main(run)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg loadgen.Config
	fs.StringVar(&cfg.Broker, "mqtt", "tcp://127.0.0.1:1883", "broker `URL` (loopback only)")
	tokens := fs.String("tokens", "", "`file` of devices, one \"DEVICE TOKEN\" per line: each connects as user DEVICE with password TOKEN (default: anonymous devices named by --prefix)")
	prefix := fs.String("prefix", "load", "device id `prefix` of anonymous devices (PREFIX-00000, ...)")
	phones := fs.Int("phones", 100, "publishing phones, `n`")
	idle := fs.Int("idle", 0, "connections that authenticate and stay idle, `n` (the devices after the phones')")
	fs.DurationVar(&cfg.IdleHold, "idle-hold", 0, "how `long` the idle connections are held, once up, before the phones start")
	fs.Float64Var(&cfg.Rate, "rate", 0, "positions per `second`, all phones together; 0: as fast as the broker acknowledges")
	fs.IntVar(&cfg.Batch, "batch", 1, "positions per message, `n` (a JSON array when more than 1)")
	fs.IntVar(&cfg.Inflight, "inflight", 20, "unacknowledged messages per phone, `n`")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how `long` the phones publish (at most 1h)")
	fs.Float64Var(&cfg.ConnectRate, "connect-rate", 2000, "new connections per `second`")
	fs.IntVar(&cfg.Receivers, "receivers", 0, "simulated serial receivers, `n`, on pseudo-terminals linked at DIR/gpsN")
	fs.Float64Var(&cfg.ReceiverRate, "receiver-rate", 10, "receiver epochs per `second`")
	fs.StringVar(&cfg.PtyDir, "pty-dir", "./var/loadgen", "`directory` of the receivers' pseudo-terminal links")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to `file` (go tool pprof)")
	log, err := logx.Parse(fs, "loadgen [flags]", args, stderr)
	if err != nil {
		return err
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	cfg.Logger = log
	devs, err := devices(*tokens, *prefix, *phones+*idle)
	if err != nil {
		return config.Usagef("%v", err)
	}
	cfg.Phones, cfg.Idle = devs[:*phones], devs[*phones:]
	var mu sync.Mutex
	emit := func(v any) {
		b, _ := json.Marshal(v)
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(stdout, "%s\n", b)
	}
	cfg.OnEvent = func(event string, at time.Time) {
		emit(map[string]any{"event": event, "at": at})
	}
	rep, err := loadgen.Run(ctx, cfg)
	emit(struct {
		Event string `json:"event"`
		loadgen.Report
	}{"report", rep})
	return err
}

// devices returns n devices: the first n of the tokens file, or anonymous
// ones named PREFIX-NNNNN.
func devices(tokens, prefix string, n int) ([]loadgen.Device, error) {
	if n < 0 || n > loadgen.MaxConnections {
		return nil, fmt.Errorf("%d connections: want 0 to %d", n, loadgen.MaxConnections)
	}
	if tokens == "" {
		devs := make([]loadgen.Device, n)
		for i := range devs {
			devs[i].ID = fmt.Sprintf("%s-%05d", prefix, i)
		}
		return devs, nil
	}
	f, err := os.Open(tokens)
	if err != nil {
		return nil, fmt.Errorf("tokens: %w", err)
	}
	defer f.Close()
	var devs []loadgen.Device
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for line := 1; sc.Scan() && len(devs) < n; line++ {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 2 {
			return nil, fmt.Errorf("tokens %s:%d: want \"DEVICE TOKEN\"", tokens, line)
		}
		devs = append(devs, loadgen.Device{ID: fields[0], Username: fields[0], Password: fields[1]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("tokens %s: %w", tokens, err)
	}
	if len(devs) < n {
		return nil, fmt.Errorf("tokens %s: %d devices, %d wanted", tokens, len(devs), n)
	}
	return devs, nil
}
