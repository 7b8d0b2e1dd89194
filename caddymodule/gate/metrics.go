package gate

import (
	"errors"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/conngate/conngate/store"
)

// metrics are created once per process and registered on every config's
// registry (Caddy gives each config load a new one), so counters keep
// counting across reloads.
type metrics struct {
	decisions      *prometheus.CounterVec
	allowed        prometheus.Counter
	cacheHits      prometheus.Counter
	cacheMisses    prometheus.Counter
	lookups        *prometheus.CounterVec
	lookupSeconds  prometheus.Histogram
	streamUp       *prometheus.GaugeVec
	eventsApplied  prometheus.Counter
	appliedRev     *prometheus.GaugeVec
	revocationLag  prometheus.Histogram
	lookupOK       prometheus.Counter
	lookupFailures prometheus.Counter
	failovers      *prometheus.CounterVec
}

var gateMetrics = newMetrics()

func newMetrics() *metrics {
	const ns = "conngate"
	m := &metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "gate_decisions_total",
			Help: "Requests decided by connection_gate, by result (allowed, denied, unavailable) and reason.",
		}, []string{"result", "reason"}),
		cacheHits: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "status_cache_hits_total", Help: "Connection statuses served from the cache.",
		}),
		cacheMisses: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "status_cache_misses_total", Help: "Connection statuses not in the cache, or too stale to serve.",
		}),
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "control_lookups_total", Help: "Status lookups sent to the control endpoint, by result (ok, error).",
		}, []string{"result"}),
		lookupSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Name: "control_lookup_duration_seconds", Help: "Time taken by status lookups to the control endpoint.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		streamUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "stream_connected", Help: "1 while the change stream from the control endpoint is connected and caught up.",
		}, []string{"control_url", "gateway_id"}),
		eventsApplied: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "stream_events_applied_total", Help: "Status changes applied to the cache from the change stream.",
		}),
		appliedRev: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Name: "stream_applied_revision", Help: "Last store revision applied from the change stream.",
		}, []string{"control_url", "gateway_id"}),
		revocationLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Name: "revocation_lag_seconds", Help: "Time from a status change in the store to its application in this gateway's cache.",
			Buckets: []float64{.001, .0025, .005, .01, .02, .05, .1, .25, .5, 1, 5, 30},
		}),
		failovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "control_failovers_total",
			Help: "Switches from one control endpoint to another, by what switched: statuses (the lookups and the change stream) or keys (the key set).",
		}, []string{"control_url", "gateway_id", "kind"}),
	}
	m.allowed = m.decisions.WithLabelValues("allowed", "connection_active")
	m.lookupOK = m.lookups.WithLabelValues("ok")
	m.lookupFailures = m.lookups.WithLabelValues("error")
	return m
}

func (m *metrics) register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.decisions, m.cacheHits, m.cacheMisses, m.lookups, m.lookupSeconds,
		m.streamUp, m.eventsApplied, m.appliedRev, m.revocationLag, m.failovers} {
		if err := reg.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if !errors.As(err, &already) {
				return err
			}
		}
	}
	return nil
}

func (m *metrics) denied(d *denial) {
	result := "denied"
	if d.status == http.StatusServiceUnavailable {
		result = "unavailable"
	}
	m.decisions.WithLabelValues(result, d.reason).Inc()
}

func (m *metrics) observeLookup(took time.Duration, err error) {
	m.lookupSeconds.Observe(took.Seconds())
	if err != nil {
		m.lookupFailures.Inc()
	} else {
		m.lookupOK.Inc()
	}
}

func (m *metrics) streamConnected(s *statusSource, up bool) {
	v := 0.0
	if up {
		v = 1
	}
	m.streamUp.WithLabelValues(s.label, s.gatewayID).Set(v)
}

// Kinds of failover: what moved to another control endpoint.
const (
	failoverStatuses = "statuses"
	failoverKeys     = "keys"
)

// failoverCounter is the series that counts the failovers of kind of the
// gates on source s.
func (m *metrics) failoverCounter(s *statusSource, kind string) prometheus.Counter {
	return m.failovers.WithLabelValues(s.label, s.gatewayID, kind)
}

// forget removes the series of a source that is gone, so that a gate
// removed by a reload does not stay exported as a disconnected stream.
func (m *metrics) forget(s *statusSource) {
	m.streamUp.DeleteLabelValues(s.label, s.gatewayID)
	m.appliedRev.DeleteLabelValues(s.label, s.gatewayID)
	m.failovers.DeletePartialMatch(prometheus.Labels{"control_url": s.label, "gateway_id": s.gatewayID})
}

func (m *metrics) eventApplied(s *statusSource, c store.Change) {
	m.appliedRev.WithLabelValues(s.label, s.gatewayID).Set(float64(c.Revision))
	if c.ID == "" {
		return // a sync or reset, not a change
	}
	m.eventsApplied.Inc()
	if !c.ChangedAt.IsZero() {
		m.revocationLag.Observe(time.Since(c.ChangedAt).Seconds())
	}
}
