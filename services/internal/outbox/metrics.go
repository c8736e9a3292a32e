package outbox

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are a relay's Prometheus collectors. The counters are shared by
// every relay registered with the same registry (see Register); the
// pending gauges are computed per schema when scraped.
type metrics struct {
	delivered, failed *prometheus.CounterVec
	pending           *pendingCollector
	schema            string
}

func newMetrics(r *Relay) *metrics {
	return &metrics{
		schema: r.Schema,
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "tokenmanager", Subsystem: "outbox", Name: "delivered_total",
			Help: "Outbox messages delivered and deleted.",
		}, []string{"schema", "topic"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "tokenmanager", Subsystem: "outbox", Name: "failed_total",
			Help: "Outbox delivery attempts that failed and were rescheduled.",
		}, []string{"schema", "topic"}),
		pending: &pendingCollector{
			relay: r,
			depth: prometheus.NewDesc("tokenmanager_outbox_pending_messages",
				"Messages waiting in the outbox.", nil, prometheus.Labels{"schema": r.Schema}),
			age: prometheus.NewDesc("tokenmanager_outbox_oldest_pending_age_seconds",
				"Age of the oldest message waiting in the outbox.", nil, prometheus.Labels{"schema": r.Schema}),
		},
	}
}

func (m *metrics) observe(topic string, delivered bool) {
	if delivered {
		m.delivered.WithLabelValues(m.schema, topic).Inc()
	} else {
		m.failed.WithLabelValues(m.schema, topic).Inc()
	}
}

// Register registers the relay's metrics with reg; call it before Run.
// Relays of several schemas, or several relays of one schema (each with its
// own Topics), may register with the same registry: they share the
// counters, which carry schema and topic labels, and the per-schema gauges.
func (r *Relay) Register(reg prometheus.Registerer) error {
	if err := r.init(); err != nil {
		return err
	}
	for _, c := range []**prometheus.CounterVec{&r.metrics.delivered, &r.metrics.failed} {
		if err := reg.Register(*c); err != nil {
			var dup prometheus.AlreadyRegisteredError
			if !errors.As(err, &dup) {
				return err
			}
			existing, ok := dup.ExistingCollector.(*prometheus.CounterVec)
			if !ok {
				return err
			}
			*c = existing
		}
	}
	if err := reg.Register(r.metrics.pending); err != nil && !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
		return err
	}
	return nil
}

// pendingCollector reports Stats at scrape time, so the gauges are never
// stale and cost nothing between scrapes.
type pendingCollector struct {
	relay      *Relay
	depth, age *prometheus.Desc
}

func (c *pendingCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.depth
	ch <- c.age
}

func (c *pendingCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	depth, age, err := c.relay.Stats(ctx)
	if err != nil {
		// Leave the gauges out of this scrape rather than fail all of it.
		c.relay.log.Warn("outbox: metrics", "err", err)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(depth))
	ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, age.Seconds())
}
