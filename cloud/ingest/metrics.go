package ingest

import (
	"github.com/prometheus/client_golang/prometheus"

	"trackgate/internal/position"
)

// Rejection reasons beyond position.Reason.
const (
	ReasonTopic = "topic" // the topic is not devices/{device}/positions with a valid id
	ReasonStore = "store" // InfluxDB refused the point on its own (e.g. a field type conflict)
)

// Metrics are the ingest bridge's Prometheus metrics.
type Metrics struct {
	messages     prometheus.Counter
	written      prometheus.Counter
	rejected     *prometheus.CounterVec
	batchSize    prometheus.Histogram
	writeSeconds prometheus.Histogram
	writeErrors  *prometheus.CounterVec
	unacked      prometheus.Gauge
	// storedPositions observes the positions of each Config.OnStored call.
	storedPositions prometheus.Histogram
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		messages: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "trackgate_ingest_messages_received_total",
			Help: "MQTT messages received on the positions subscription.",
		}),
		written: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "trackgate_ingest_positions_written_total",
			Help: "Positions InfluxDB accepted (a redelivered position counts again).",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trackgate_ingest_positions_rejected_total",
			Help: "Positions, or whole payloads for syntax and too_large, rejected and never written, by reason.",
		}, []string{"reason"}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "trackgate_ingest_batch_positions",
			Help:    "Positions per batch written to InfluxDB.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 8),
		}),
		writeSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "trackgate_ingest_write_duration_seconds",
			Help:    "Latency of one write request to InfluxDB.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		writeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trackgate_ingest_write_errors_total",
			Help: "Failed write requests to InfluxDB, by kind: transient (retried) or permanent (batch split to isolate bad points).",
		}, []string{"kind"}),
		unacked: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "trackgate_ingest_unacked_messages",
			Help: "Messages received but not yet acknowledged to the broker (in flight to InfluxDB or the stored hook).",
		}),
		storedPositions: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "trackgate_ingest_on_stored_positions",
			Help:    "Positions per call of the stored hook (the cloud's track bookkeeping), gathered from the batches written since its previous call.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 9),
		}),
	}
	reg.MustRegister(m.messages, m.written, m.rejected, m.batchSize, m.writeSeconds, m.writeErrors, m.unacked, m.storedPositions)
	for _, r := range position.Reasons {
		m.rejected.WithLabelValues(string(r))
	}
	m.rejected.WithLabelValues(ReasonTopic)
	m.rejected.WithLabelValues(ReasonStore)
	m.writeErrors.WithLabelValues("transient")
	m.writeErrors.WithLabelValues("permanent")
	return m
}
