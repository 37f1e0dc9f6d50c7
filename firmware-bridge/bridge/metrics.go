package bridge

import "github.com/prometheus/client_golang/prometheus"

// Reasons a report is dropped, the label of the dropped-reports counter.
const (
	DropUnknown     = "unknown_device" // no registered device has the identifier
	DropSecret      = "bad_secret"     // the device's secret is missing or wrong
	DropNeedsSecret = "needs_secret"   // the device has a secret this protocol cannot carry
	DropNoFix       = "no_fix"         // the tracker reports no valid fix
	DropInvalid     = "invalid"        // a value out of range (a time in the future, say)
	DropBadRequest  = "bad_request"    // a request or frame that does not decode
	DropRateLimited = "rate_limited"   // over the address's request rate
	DropPublish     = "publish_failed" // the broker did not take it (the tracker is told to retry)
	DropUnavailable = "unavailable"    // the cloud could not be asked who the device is
)

// metrics are the bridge's counters, registered under trackgate_bridge_.
type metrics struct {
	accepted  *prometheus.CounterVec // connections accepted, by protocol
	open      *prometheus.GaugeVec   // connections open, by protocol
	closed    *prometheus.CounterVec // connections closed, by protocol and reason
	positions *prometheus.CounterVec // positions published, by protocol
	dropped   *prometheus.CounterVec // reports dropped, by protocol and reason
	requests  *prometheus.CounterVec // HTTP requests answered, by protocol and status code
	brokerUp  prometheus.GaugeFunc
}

func newMetrics(reg prometheus.Registerer, brokerUp func() float64) *metrics {
	m := &metrics{
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "trackgate_bridge_connections_total",
			Help: "Tracker connections accepted, by protocol."}, []string{"protocol"}),
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "trackgate_bridge_connections_open",
			Help: "Tracker connections open, by protocol."}, []string{"protocol"}),
		closed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "trackgate_bridge_connections_closed_total",
			Help: "Tracker connections closed, by protocol and reason: eof, idle, slow, bad_frame, flood, per_address, refused, publish, shutdown, error."},
			[]string{"protocol", "reason"}),
		positions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "trackgate_bridge_positions_total",
			Help: "Positions the broker acknowledged, by protocol."}, []string{"protocol"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "trackgate_bridge_dropped_total",
			Help: "Reports not published, by protocol and reason."}, []string{"protocol", "reason"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "trackgate_bridge_http_requests_total",
			Help: "HTTP requests of the HTTP protocols, by protocol and status code."}, []string{"protocol", "code"}),
		brokerUp: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "trackgate_bridge_broker_connected",
			Help: "1 while the bridge's broker connection is up."}, brokerUp),
	}
	reg.MustRegister(m.accepted, m.open, m.closed, m.positions, m.dropped, m.requests, m.brokerUp)
	return m
}
