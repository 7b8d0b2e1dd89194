package control

import (
	"errors"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// streamMetrics are created once per process and registered with every
// config's registry (Caddy makes a new registry per config load).
var streamMetrics = struct {
	open    *prometheus.GaugeVec
	refused *prometheus.CounterVec
}{
	open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "conngate", Subsystem: "control", Name: "streams_open",
		Help: "Change streams open, by kind of subscriber (gateway or person).",
	}, []string{"kind"}),
	refused: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "conngate", Subsystem: "control", Name: "streams_refused_total",
		Help: "Change streams refused with 429 because a stream limit was reached, by kind of subscriber.",
	}, []string{"kind"}),
}

func registerMetrics(ctx caddy.Context) error {
	reg := ctx.GetMetricsRegistry()
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{streamMetrics.open, streamMetrics.refused} {
		if err := reg.Register(c); err != nil && !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
			return err
		}
	}
	return nil
}
