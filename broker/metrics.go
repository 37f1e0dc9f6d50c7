package broker

import (
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/prometheus/client_golang/prometheus"

	"trackgate/internal/position"
)

// metrics are the broker's counters, registered under trackgate_broker_.
type metrics struct {
	connectRefused  *prometheus.CounterVec // by reason
	aclDenied       *prometheus.CounterVec // by action: publish, subscribe
	kicked          *prometheus.CounterVec // sessions ended by the broker: expired, revoked
	payloadRejected *prometheus.CounterVec // by kind and reason
	ownTracks       *prometheus.CounterVec // OwnTracks messages by type
	connRateLimited prometheus.Counter
	publishesHeld   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, b *Broker) *metrics {
	m := &metrics{
		connectRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "trackgate_broker_connect_refused_total",
			Help: "MQTT connections refused at CONNECT, by reason."}, []string{"reason"}),
		aclDenied: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "trackgate_broker_acl_denied_total",
			Help: "Publishes and subscriptions (or deliveries) the client's token does not allow."}, []string{"action"}),
		kicked: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "trackgate_broker_sessions_ended_total",
			Help: "Sessions the broker disconnected: token expired or revoked."}, []string{"reason"}),
		payloadRejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "trackgate_broker_payload_rejected_total",
			Help: "Messages (or positions of a batch) refused at the edge, by topic kind and reason."}, []string{"kind", "reason"}),
		ownTracks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "trackgate_broker_owntracks_messages_total",
			Help: "OwnTracks messages by what became of them: location, lwt, ignored, invalid, encrypted."}, []string{"type"}),
		connRateLimited: prometheus.NewCounter(prometheus.CounterOpts{Name: "trackgate_broker_connections_rate_limited_total",
			Help: "Connections closed at accept because their address opened too many."}),
		publishesHeld: prometheus.NewCounter(prometheus.CounterOpts{Name: "trackgate_broker_publishes_held_total",
			Help: "QoS 1 publishes held back until a durable subscriber (the ingest bridge) caught up."}),
	}
	for _, r := range connectRefusals {
		m.connectRefused.WithLabelValues(r)
	}
	for _, a := range []string{"publish", "subscribe"} {
		m.aclDenied.WithLabelValues(a)
	}
	for _, r := range []string{"expired", "revoked"} {
		m.kicked.WithLabelValues(r)
	}
	for _, r := range position.Reasons {
		m.payloadRejected.WithLabelValues("positions", string(r))
	}
	info := func(name, help string, get func(*mqtt.Server) int64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 {
			if srv := b.server(); srv != nil {
				return float64(get(srv))
			}
			return 0
		})
	}
	if reg != nil {
		reg.MustRegister(m.connectRefused, m.aclDenied, m.kicked, m.payloadRejected, m.ownTracks, m.connRateLimited, m.publishesHeld,
			info("trackgate_broker_clients_connected", "MQTT clients connected.",
				func(s *mqtt.Server) int64 { return atomic.LoadInt64(&s.Info.ClientsConnected) }),
			info("trackgate_broker_inflight_messages", "QoS 1 and 2 messages waiting for an acknowledgement.",
				func(s *mqtt.Server) int64 { return atomic.LoadInt64(&s.Info.Inflight) }),
			info("trackgate_broker_messages_dropped", "Messages the broker dropped for a subscriber (must stay 0 for QoS 1).",
				func(s *mqtt.Server) int64 {
					return atomic.LoadInt64(&s.Info.MessagesDropped) + atomic.LoadInt64(&s.Info.InflightDropped)
				}),
			info("trackgate_broker_messages_received", "PUBLISH packets received.",
				func(s *mqtt.Server) int64 { return atomic.LoadInt64(&s.Info.MessagesReceived) }),
		)
	}
	return m
}
