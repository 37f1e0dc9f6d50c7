package gateway

import (
	"encoding/json"
	"net/http"
	"sort"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"trackgate/hw/receiver"
	"trackgate/internal/epoch"
	"trackgate/internal/logx"
	"trackgate/internal/topic"
)

// publisher publishes one reader's fixes and status to the embedded broker.
type publisher struct {
	g                 *Gateway
	device            string
	positions, status string
}

func newPublisher(g *Gateway, device string) *publisher {
	return &publisher{
		g:         g,
		device:    device,
		positions: topic.Device(device, topic.Positions),
		status:    topic.Device(device, topic.Status),
	}
}

// Fix publishes a fix as the wire contract's position object.
func (p *publisher) Fix(e *epoch.Epoch) {
	// The broker keeps the payload until every subscriber has it: a new
	// buffer each time.
	payload := e.Position.AppendJSON(make([]byte, 0, 256))
	if err := p.g.broker.Publish(p.positions, payload, false); err != nil {
		p.g.metrics.publishErrors.Inc()
		p.g.log.Error("fix not published", "device", p.device, logx.Err(err))
		return
	}
	p.g.metrics.published.Inc()
}

// Status publishes the status, retained.
func (p *publisher) Status(s receiver.Status) {
	payload, err := json.Marshal(s)
	if err != nil {
		p.g.log.Error("status not encoded", "device", p.device, logx.Err(err))
		return
	}
	if err := p.g.broker.Publish(p.status, payload, true); err != nil {
		p.g.metrics.publishErrors.Inc()
		p.g.log.Error("status not published", "device", p.device, logx.Err(err))
	}
}

// statusHandler serves every source's current status, by device.
func (g *Gateway) statusHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		out := make([]struct {
			Device string `json:"device"`
			receiver.Status
		}, len(g.readers))
		for i, r := range g.readers {
			out[i].Device, out[i].Status = r.Spec().Device, r.Status()
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Device < out[j].Device })
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		doc := map[string]any{"sources": out}
		if st, ok := g.broker.AuthStatus(); ok {
			doc["auth"] = st
		}
		if g.fwd != nil {
			doc["uplink"] = g.fwd.Status()
		}
		if g.cfg.Uplink.Enrolment != nil {
			doc["enrolment"] = g.cfg.Uplink.Enrolment()
		}
		_ = enc.Encode(doc)
	})
}

// metrics are the gateway's Prometheus metrics.
type metrics struct {
	published     prometheus.Counter
	publishErrors prometheus.Counter
}

func newMetrics(reg *prometheus.Registry, readers []*receiver.Reader) *metrics {
	m := &metrics{
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "trackgate_gateway_fixes_published_total",
			Help: "Fixes from receivers published to the embedded broker.",
		}),
		publishErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "trackgate_gateway_publish_errors_total",
			Help: "Fixes and statuses the embedded broker did not take (it was stopping).",
		}),
	}
	reg.MustRegister(m.published, m.publishErrors, receiverCollector(readers),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// receiverCounters lists the per-source counters exported as metrics.
var receiverCounters = []struct {
	name, help string
	get        func(*receiver.Counters) uint64
}{
	{"bytes_total", "Bytes read from the source.", func(c *receiver.Counters) uint64 { return c.Bytes }},
	{"sentences_total", "NMEA sentences framed with a valid checksum.", func(c *receiver.Counters) uint64 { return c.Sentences }},
	{"bad_checksums_total", "Sentences dropped for a checksum mismatch.", func(c *receiver.Counters) uint64 { return c.BadChecksum }},
	{"missing_checksums_total", "Sentences without a checksum (dropped unless --nmea-lax).", func(c *receiver.Counters) uint64 { return c.NoChecksum }},
	{"overlong_lines_total", "Lines dropped for being longer than the cap.", func(c *receiver.Counters) uint64 { return c.Overlong }},
	{"garbage_bytes_total", "Bytes outside valid sentences (binary, noise, broken sentences).", func(c *receiver.Counters) uint64 { return c.GarbageBytes }},
	{"parse_errors_total", "Sentences of a used type that did not parse.", func(c *receiver.Counters) uint64 { return c.ParseErrors }},
	{"ignored_sentences_total", "Sentences of types not used (proprietary, AIS, TXT, ...).", func(c *receiver.Counters) uint64 { return c.Ignored }},
	{"epochs_total", "Epochs assembled.", func(c *receiver.Counters) uint64 { return c.Epochs }},
	{"fixes_total", "Valid fixes handed on for publishing.", func(c *receiver.Counters) uint64 { return c.Fixes }},
	{"no_fixes_total", "Epochs without a solution.", func(c *receiver.Counters) uint64 { return c.NoFixes }},
	{"rejected_fixes_total", "Fixes failing validation (a receiver's wrong date, say).", func(c *receiver.Counters) uint64 { return c.Rejected }},
	{"reconnects_total", "Times the source was reopened after it failed or went away.", func(c *receiver.Counters) uint64 { return c.Reconnects }},
}

// collector exports every reader's counters and state.
type collector struct {
	readers  []*receiver.Reader
	counters []*prometheus.Desc
	up       *prometheus.Desc
}

func receiverCollector(readers []*receiver.Reader) *collector {
	c := &collector{
		readers: readers,
		up: prometheus.NewDesc("trackgate_receiver_state",
			"1 for the source's current state (online, no-fix, offline), 0 for the others.",
			[]string{"device", "source", "state"}, nil),
	}
	for _, rc := range receiverCounters {
		c.counters = append(c.counters, prometheus.NewDesc("trackgate_receiver_"+rc.name, rc.help, []string{"device", "source"}, nil))
	}
	return c
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.counters {
		ch <- d
	}
	ch <- c.up
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	for _, r := range c.readers {
		s := r.Status()
		dev, src := r.Spec().Device, r.Spec().Source()
		for i, rc := range receiverCounters {
			ch <- prometheus.MustNewConstMetric(c.counters[i], prometheus.CounterValue, float64(rc.get(&s.Counters)), dev, src)
		}
		for _, state := range []string{receiver.StateOnline, receiver.StateNoFix, receiver.StateOffline} {
			v := 0.0
			if s.State == state {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, v, dev, src, state)
		}
	}
}
