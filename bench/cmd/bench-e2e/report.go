package main

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
)

// median of xs (0 when empty).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// pick returns f of each result of scenario and pipeline, in run order.
func pick(rs []Result, scenario, pipeline string, f func(Result) float64) []float64 {
	var out []float64
	for _, r := range rs {
		if r.Scenario == scenario && r.Pipeline == pipeline {
			out = append(out, f(r))
		}
	}
	return out
}

// ratios divides, run by run, a's figure by b's (runs both have).
func ratios(rs []Result, aScen, aPipe, bScen, bPipe string, f func(Result) float64) []float64 {
	byRun := map[int]float64{}
	for _, r := range rs {
		if r.Scenario == bScen && r.Pipeline == bPipe && f(r) > 0 {
			byRun[r.Run] = f(r)
		}
	}
	var out []float64
	for _, r := range rs {
		if d, ok := byRun[r.Run]; ok && r.Scenario == aScen && r.Pipeline == aPipe {
			out = append(out, f(r)/d)
		}
	}
	return out
}

func perSecond(r Result) float64 { return r.PerSecond }

// rows are the table's scenarios, in order.
var rows = []struct{ scenario, pipeline, title string }{
	{"ceiling", "influxd", "ceiling: line protocol straight into influxd, 2 writers × 5,000 points"},
	{"a", "trackgate", "a: {phones} phones, as fast as acknowledged (QoS 1, {inflight} in flight each)"},
	{"a", "telegraf", "a: the same through mosquitto + Telegraf (tuned, at-least-once)"},
	{"a-defaults", "telegraf", "a: mosquitto + Telegraf as installed, 1,000 messages/s"},
	{"b", "trackgate", "b: {phones} phones at a fixed {rate} positions/s"},
	{"c", "trackgate", "c: {idle} idle authenticated connections, then {phones} phones as in a"},
	{"d", "trackgate", "d: {receivers} serial receivers at {hz} Hz through the gateway"},
}

// summarize prints the medians of every measurement, the ratios and the
// targets.
func summarize(o options, rs []Result, machine string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\ntrackgate end-to-end benchmarks: medians of %d runs, %s per load, batch %d position(s) per message\n", o.runs, o.duration, o.batch)
	fmt.Fprintf(&b, "machine: %s\nresults: %s\n\n", machine, o.out)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tpositions/s\tstored\tlost\tp50 ms\tp99 ms\tp99.9 ms\tCPU s / peak RSS MB per process\t")
	for _, row := range rows {
		got := pick(rs, row.scenario, row.pipeline, perSecond)
		if len(got) == 0 {
			continue
		}
		title := strings.NewReplacer("{phones}", thousands(float64(o.phones)), "{inflight}", fmt.Sprint(o.inflight),
			"{rate}", thousands(o.latencyRate), "{idle}", thousands(float64(o.idle)), "{receivers}", fmt.Sprint(o.receivers),
			"{hz}", fmt.Sprint(o.receiverRate)).Replace(row.title)
		stored := median(pick(rs, row.scenario, row.pipeline, func(r Result) float64 { return float64(r.Stored) }))
		lost := slices.Max(pick(rs, row.scenario, row.pipeline, func(r Result) float64 { return float64(r.Lost) }))
		pub := median(pick(rs, row.scenario, row.pipeline, func(r Result) float64 { return float64(r.Published) }))
		lostText := thousands(lost)
		if lost > 0 && pub > 0 {
			lostText += fmt.Sprintf(" (%.0f%%)", 100*lost/pub)
		}
		lat := func(f func(*Latency) float64) string {
			v := pick(rs, row.scenario, row.pipeline, func(r Result) float64 {
				if r.Latency == nil {
					return -1
				}
				return f(r.Latency)
			})
			if m := median(v); m >= 0 {
				return fmt.Sprintf("%.0f", m)
			}
			return "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", title, thousands(median(got)), thousands(stored), lostText,
			lat(func(l *Latency) float64 { return l.P50 }), lat(func(l *Latency) float64 { return l.P99 }),
			lat(func(l *Latency) float64 { return l.P999 }), procText(rs, row.scenario, row.pipeline))
	}
	tw.Flush()

	fmt.Fprintf(&b, "\ncomparisons (ratio per run, median):\n")
	ours := median(pick(rs, "a", "trackgate", perSecond))
	if tg := median(pick(rs, "a", "telegraf", perSecond)); tg > 0 {
		fmt.Fprintf(&b, "  trackgate / mosquitto + Telegraf (sustained, at-least-once):  %s / %s = %.1f×\n",
			thousands(ours), thousands(tg), median(ratios(rs, "a", "trackgate", "a", "telegraf", perSecond)))
	}
	if ceil := median(pick(rs, "ceiling", "influxd", perSecond)); ceil > 0 {
		fmt.Fprintf(&b, "  trackgate / raw influxd line-protocol ceiling:                %s / %s = %.2f\n",
			thousands(ours), thousands(ceil), median(ratios(rs, "a", "trackgate", "ceiling", "influxd", perSecond)))
	}

	fmt.Fprintf(&b, "\ntargets:\n")
	target := func(ok bool, format string, args ...any) {
		mark := "met   "
		if !ok {
			mark = "MISSED"
		}
		fmt.Fprintf(&b, "  %s %s\n", mark, fmt.Sprintf(format, args...))
	}
	if got := pick(rs, "a", "trackgate", perSecond); len(got) > 0 {
		lost := slices.Max(pick(rs, "a", "trackgate", func(r Result) float64 { return float64(r.Lost) }))
		target(ours >= 100000 && lost == 0, "≥ 100,000 positions/s sustained with zero loss: %s/s, %s lost", thousands(ours), thousands(lost))
	}
	if r := ratios(rs, "a", "trackgate", "a", "telegraf", perSecond); len(r) > 0 {
		target(median(r) >= 3, "≥ 3× the Telegraf pipeline: %.1f×", median(r))
	}
	if p99 := pick(rs, "b", "trackgate", func(r Result) float64 { return r.Latency.P99 }); len(p99) > 0 {
		target(median(p99) <= 300, "p99 publish→queryable ≤ 300 ms at %s positions/s: %.0f ms", thousands(o.latencyRate), median(p99))
	}
	if idle := pick(rs, "c", "trackgate", func(r Result) float64 { return r.Notes["gateway_rss_idle_mb"] }); len(idle) > 0 {
		per := median(pick(rs, "c", "trackgate", func(r Result) float64 { return r.Notes["gateway_kb_per_idle_connection"] }))
		target(median(idle) < 200, "%s idle authenticated connections under 200 MB gateway RSS: %.0f MB (%.1f KB per connection)",
			thousands(float64(o.idle)), median(idle), per)
	}
	return b.String()
}

// procText is each process's median CPU seconds and peak RSS.
func procText(rs []Result, scenario, pipeline string) string {
	names := map[string]bool{}
	for _, r := range rs {
		if r.Scenario == scenario && r.Pipeline == pipeline {
			for n := range r.Procs {
				names[n] = true
			}
		}
	}
	order := []string{"gateway", "cloud", "mosquitto", "telegraf", "influxd", "loadgen"}
	var parts []string
	for _, n := range order {
		if !names[n] {
			continue
		}
		cpu := median(pick(rs, scenario, pipeline, func(r Result) float64 { return r.Procs[n].CPUSeconds }))
		rss := median(pick(rs, scenario, pipeline, func(r Result) float64 { return r.Procs[n].PeakRSSMB }))
		parts = append(parts, fmt.Sprintf("%s %.1f/%.0f", n, cpu, rss))
	}
	return strings.Join(parts, "  ")
}

// thousands formats v rounded, with commas.
func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		s = "-" + s
	}
	return s
}

// machine describes the machine: CPU model and count, memory, kernel, Go.
func machine() string {
	model, mem := "unknown CPU", ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				var kb float64
				fmt.Sscan(v, &kb)
				mem = fmt.Sprintf(", %.0f GiB", kb/(1<<20))
				break
			}
		}
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return fmt.Sprintf("%s, %d cores%s, Linux %s, %s; every process on it at once", model, runtime.NumCPU(), mem,
		strings.TrimSpace(string(kernel)), runtime.Version())
}
