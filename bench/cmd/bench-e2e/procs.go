package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"trackgate/internal/procstat"
)

// proc is a process the harness started, logging to DIR/NAME.log.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error
}

// startProc starts argv in its own process group, its output in
// dir/name.log.
func startProc(dir, name string, argv ...string) (*proc, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, waits up to 15 s, then kills.
func (p *proc) stop() {
	if p == nil || p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
		<-p.done
	}
}

// logTail returns the last lines of the process's log.
func (p *proc) logTail() string {
	b, _ := os.ReadFile(p.logPath)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// ProcStat is what a process used during a measurement.
type ProcStat struct {
	CPUSeconds float64 `json:"cpu_seconds"`
	PeakRSSMB  float64 `json:"peak_rss_mb"`
}

// meter samples processes every 100 ms from start to stop: the CPU time
// they used in between and their peak RSS.
type meter struct {
	procs  []*proc
	first  []procstat.Usage
	peak   []int64
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
}

func startMeter(all ...*proc) *meter {
	var procs []*proc
	for _, p := range all {
		if p != nil {
			procs = append(procs, p)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &meter{procs: procs, first: make([]procstat.Usage, len(procs)), peak: make([]int64, len(procs)), cancel: cancel}
	for i, p := range procs {
		m.first[i], _ = procstat.Read(p.pid())
		m.peak[i] = m.first[i].RSS
	}
	m.wg.Go(func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				m.sample()
			}
		}
	})
	return m
}

func (m *meter) sample() []procstat.Usage {
	now := make([]procstat.Usage, len(m.procs))
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, p := range m.procs {
		u, err := procstat.Read(p.pid())
		if err != nil {
			continue
		}
		now[i] = u
		m.peak[i] = max(m.peak[i], u.RSS)
	}
	return now
}

// rss returns the named process's resident memory now, in MB.
func (m *meter) rss(name string) float64 {
	now := m.sample()
	for i, p := range m.procs {
		if p.name == name {
			return float64(now[i].RSS) / 1e6
		}
	}
	return 0
}

// stop ends sampling and returns each process's CPU seconds and peak RSS.
func (m *meter) stop() map[string]ProcStat {
	m.cancel()
	m.wg.Wait()
	now := m.sample()
	out := map[string]ProcStat{}
	for i, p := range m.procs {
		if now[i].CPU < m.first[i].CPU { // it exited
			now[i].CPU = m.first[i].CPU
		}
		out[p.name] = ProcStat{CPUSeconds: (now[i].CPU - m.first[i].CPU).Seconds(), PeakRSSMB: float64(m.peak[i]) / 1e6}
	}
	return out
}
