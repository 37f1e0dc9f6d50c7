package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"trackgate/hw/loadgen"
)

// loadRun is a loadgen run: its report, and what the measured processes
// (and loadgen itself) used while it ran.
type loadRun struct {
	report     loadgen.Report
	start, end time.Time
	procs      map[string]ProcStat
}

// loadArgs are loadgen's flags for a run.
type loadArgs struct {
	broker, tokens     string
	phones, idle       int
	rate               float64
	batch, inflight    int
	duration, idleHold time.Duration
	receivers          int
	ptyDir             string
	cpuProfile         string // file loadgen writes its CPU profile to, if any
}

func (a loadArgs) argv(bin string) []string {
	argv := []string{filepath.Join(bin, "loadgen"), "--mqtt", a.broker, "--prefix", phonePrefix,
		"--phones", strconv.Itoa(a.phones), "--idle", strconv.Itoa(a.idle), "--idle-hold", a.idleHold.String(),
		"--rate", strconv.FormatFloat(a.rate, 'f', -1, 64), "--batch", strconv.Itoa(max(a.batch, 1)),
		"--inflight", strconv.Itoa(max(a.inflight, 1)), "--duration", a.duration.String(),
		"--receivers", strconv.Itoa(a.receivers), "--log-level", "warn"}
	if a.tokens != "" {
		argv = append(argv, "--tokens", a.tokens)
	}
	if a.ptyDir != "" {
		argv = append(argv, "--pty-dir", a.ptyDir)
	}
	if a.cpuProfile != "" {
		argv = append(argv, "--cpuprofile", a.cpuProfile)
	}
	return argv
}

// runLoad runs loadgen, metering procs and loadgen; onEvent is told of its
// stage events (with the meter, to read memory at that moment).
func runLoad(ctx context.Context, o options, dir, name string, a loadArgs, procs []*proc, onEvent func(event string, m *meter)) (loadRun, error) {
	var lr loadRun
	logf, err := os.Create(filepath.Join(dir, name+".loadgen.log"))
	if err != nil {
		return lr, err
	}
	defer logf.Close()
	argv := a.argv(o.bin)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return lr, err
	}
	lr.start = time.Now()
	if err := cmd.Start(); err != nil {
		return lr, fmt.Errorf("loadgen: %w", err)
	}
	self := &proc{name: "loadgen", cmd: cmd, done: make(chan struct{})}
	m := startMeter(append(procs[:len(procs):len(procs)], self)...)
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var got bool
	for sc.Scan() {
		var ev struct {
			Event string `json:"event"`
			loadgen.Report
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			continue
		}
		if ev.Event == "report" {
			lr.report, got = ev.Report, true
			continue
		}
		if onEvent != nil {
			onEvent(ev.Event, m)
		}
	}
	lr.procs = m.stop()
	lr.end = time.Now()
	werr := cmd.Wait()
	close(self.done)
	if !got {
		return lr, fmt.Errorf("loadgen gave no report (%v); see %s", werr, logf.Name())
	}
	if werr != nil {
		return lr, fmt.Errorf("loadgen: %v; see %s", werr, logf.Name())
	}
	return lr, nil
}
