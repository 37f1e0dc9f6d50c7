package cloud_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"trackgate/internal/procstat"

	"golang.org/x/sync/errgroup"
)

// procStats reads a process's resident set (bytes) and CPU time used.
func procStats(tb testing.TB, pid int) (rss int64, cpu time.Duration) {
	tb.Helper()
	u, err := procstat.Read(pid)
	if err != nil {
		tb.Fatal(err)
	}
	return u.RSS, u.CPU
}

// BenchmarkFirmwareBridgeGT06 measures the firmware-bridge process under
// 10,000 concurrent GT06 trackers, each logged in as its own registered
// device, sending a location every 10 s and a heartbeat every 30 s: its
// RSS per connection and its CPU. Then 200 of them send locations back to
// back for 10 s: the peak positions per second through the adapter (each
// acknowledged by the broker before the tracker's next frame is read).
// The cloud, influxd and the broker run on the same machine. Run it with
// -benchtime 1x; TRACKGATE_BENCH_TRACKERS and TRACKGATE_BENCH_STEADY change
// the tracker count (10000) and the steady phase (60s).
func BenchmarkFirmwareBridgeGT06(b *testing.B) {
	trackers := 10_000
	if v, err := strconv.Atoi(os.Getenv("TRACKGATE_BENCH_TRACKERS")); err == nil && v > 0 {
		trackers = v
	}
	steady := time.Minute
	if v, err := time.ParseDuration(os.Getenv("TRACKGATE_BENCH_STEADY")); err == nil && v > 0 {
		steady = v
	}
	s := startAuthStack(b)
	ctx := context.Background()
	a := s.openAuth(b)
	if err := a.AddUser(ctx, "ann", "correct horse battery staple"); err != nil {
		b.Fatal(err)
	}
	imei := func(i int) string { return fmt.Sprintf("35%013d", i) }
	start := time.Now()
	for i := range trackers {
		if _, err := a.AddDevice(ctx, "ann", imei(i), "", nil); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("registered %d devices in %v", trackers, time.Since(start).Round(time.Millisecond))
	fb := startFirmwareBridge(b, s, a, "--max-conns-per-address", "100000", "--frame-rate", "10000", "--frame-burst", "10000", "--log-level", "warn")
	pid := fb.cmd.Process.Pid
	time.Sleep(2 * time.Second)
	rss0, _ := procStats(b, pid)

	// Connect and log in every tracker, 200 at a time.
	conns := make([]net.Conn, trackers)
	var g errgroup.Group
	g.SetLimit(200)
	start = time.Now()
	for i := range trackers {
		g.Go(func() error {
			c, err := net.Dial("tcp", fb.gt06)
			if err != nil {
				return err
			}
			conns[i] = c
			if _, err := c.Write(gt06Login(imei(i), 1)); err != nil {
				return err
			}
			c.SetReadDeadline(time.Now().Add(time.Minute))
			_, err = io.ReadFull(c, make([]byte, 10))
			return err
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatalf("login: %v", err)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	b.Logf("%d trackers logged in in %v", trackers, time.Since(start).Round(time.Millisecond))

	// Steady: a location every 10 s and a heartbeat every 30 s from each,
	// their phases spread.
	positions := func() float64 { return fb.metric(b, "trackgate_bridge_positions_total", `protocol="gt06"`) }
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var sent, failed atomic.Int64
	base := time.Now().Add(-2 * time.Hour).Truncate(time.Second)
	for i, c := range conns {
		wg.Go(func() {
			offset := time.Duration(i) * 10 * time.Second / time.Duration(trackers)
			select {
			case <-time.After(offset):
			case <-stop:
				return
			}
			tick := time.NewTicker(10 * time.Second)
			defer tick.Stop()
			ack := make([]byte, 10)
			for n := 0; ; n++ {
				tm := base.Add(time.Duration(n) * time.Second)
				if _, err := c.Write(gt06Location(tm, 22.5, 114.05, 36, 90, uint16(2+n))); err != nil {
					failed.Add(1)
					return
				}
				sent.Add(1)
				if n%3 == 0 {
					c.Write(gt06Frame(0x13, []byte{0x46, 0x05, 0x04, 0x00, 0x02}, uint16(50000+n)))
					c.SetReadDeadline(time.Now().Add(30 * time.Second))
					if _, err := io.ReadFull(c, ack); err != nil {
						failed.Add(1)
						return
					}
				}
				select {
				case <-tick.C:
				case <-stop:
					return
				}
			}
		})
	}
	time.Sleep(15 * time.Second) // every tracker in its rhythm
	rss1, cpu1 := procStats(b, pid)
	p1, t1 := positions(), time.Now()
	time.Sleep(steady)
	rss2, cpu2 := procStats(b, pid)
	p2, t2 := positions(), time.Now()
	close(stop)
	wg.Wait()
	wall := t2.Sub(t1)
	cpuPct := 100 * float64(cpu2-cpu1) / float64(wall)
	perConn := float64(max(rss1, rss2)-rss0) / float64(trackers)
	b.Logf("steady %v: %.0f positions/s, bridge CPU %.1f%% of one core, RSS %.1f MB (%.1f MB before the trackers), %.1f KB per connection; %d write failures",
		wall.Round(time.Second), (p2-p1)/wall.Seconds(), cpuPct, float64(max(rss1, rss2))/(1<<20), float64(rss0)/(1<<20), perConn/1024, failed.Load())

	// Peak: 200 trackers send locations back to back for 10 s. Each
	// location is published (and acknowledged by the broker) before the
	// bridge reads the tracker's next frame.
	const blasters = 200
	stop = make(chan struct{})
	for i := range blasters {
		c := conns[i]
		wg.Go(func() {
			buf := make([]byte, 0, 64*40)
			for n := 0; ; n += 64 {
				buf = buf[:0]
				for k := range 64 {
					// Further back in time than the steady phase's positions.
					buf = append(buf, gt06Location(base.Add(-time.Duration(1+n+k)*time.Second), 22.5, 114.05, 36, 90, uint16(n+k))...)
				}
				if _, err := c.Write(buf); err != nil {
					return
				}
				select {
				case <-stop:
					return
				default:
				}
			}
		})
	}
	time.Sleep(2 * time.Second)
	p3, t3 := positions(), time.Now()
	_, cpu3 := procStats(b, pid)
	time.Sleep(10 * time.Second)
	p4, t4 := positions(), time.Now()
	_, cpu4 := procStats(b, pid)
	close(stop)
	for _, c := range conns[:blasters] {
		c.Close()
	}
	wg.Wait()
	peak := (p4 - p3) / t4.Sub(t3).Seconds()
	b.Logf("peak: %.0f positions/s through the GT06 adapter (%d connections sending back to back), bridge CPU %.0f%% of one core",
		peak, blasters, 100*float64(cpu4-cpu3)/float64(t4.Sub(t3)))
	b.ReportMetric(perConn/1024, "KB-RSS/conn")
	b.ReportMetric(cpuPct, "%CPU-steady")
	b.ReportMetric(peak, "positions/s-peak")
}
