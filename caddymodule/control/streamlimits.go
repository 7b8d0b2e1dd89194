package control

import (
	"net/http"
	"strconv"
	"sync"

	"github.com/conngate/conngate/caddymodule/controlapi"
)

// Defaults of the change stream limits. Gateways and people have separate
// budgets, so that no number of open pages can keep a gateway from
// subscribing.
const (
	DefaultMaxStreams             = 4096
	DefaultMaxStreamsPerPrincipal = 32
	DefaultMaxGatewayStreams      = 1024
)

// streamRetryAfter is what a refused stream is told to wait, in seconds.
const streamRetryAfter = 5

// streamLimits are one config's limits.
type streamLimits struct {
	people, perPrincipal, gateways int
}

// streamLimiter counts the open change streams of a process, per kind and
// per principal.
type streamLimiter struct {
	mu          sync.Mutex
	people      int
	gateways    int
	byPrincipal map[string]int
}

func newStreamLimiter() *streamLimiter { return &streamLimiter{byPrincipal: map[string]int{}} }

// open takes a place for a stream of principal id (a gateway's, or a
// person's), or answers 429 when the limits are reached. The returned func
// gives the place back.
func (l *streamLimiter) open(lim streamLimits, principalID string, gateway bool) (release func(), err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	kind := "person"
	switch {
	case gateway && l.gateways >= lim.gateways:
		err = tooManyStreams("The control endpoint has %d gateway change streams open, its max_gateway_streams.", lim.gateways)
		kind = "gateway"
	case !gateway && l.byPrincipal[principalID] >= lim.perPrincipal:
		err = tooManyStreams("You have %d change streams open, the most one principal may (max_streams_per_principal); close one (a browser tab) first.", lim.perPrincipal)
	case !gateway && l.people >= lim.people:
		err = tooManyStreams("The control endpoint has %d change streams of people open, its max_streams.", lim.people)
	}
	if err != nil {
		streamMetrics.refused.WithLabelValues(kind).Inc()
		return nil, err
	}
	if gateway {
		l.gateways++
		streamMetrics.open.WithLabelValues("gateway").Inc()
		return func() {
			l.mu.Lock()
			l.gateways--
			l.mu.Unlock()
			streamMetrics.open.WithLabelValues("gateway").Dec()
		}, nil
	}
	l.people++
	l.byPrincipal[principalID]++
	streamMetrics.open.WithLabelValues("person").Inc()
	return func() {
		l.mu.Lock()
		l.people--
		if l.byPrincipal[principalID]--; l.byPrincipal[principalID] == 0 {
			delete(l.byPrincipal, principalID)
		}
		l.mu.Unlock()
		streamMetrics.open.WithLabelValues("person").Dec()
	}, nil
}

func tooManyStreams(format string, args ...any) error {
	e := controlapi.Errorf(http.StatusTooManyRequests, controlapi.CodeTooManyStreams, format, args...)
	e.Header = map[string]string{"Retry-After": strconv.Itoa(streamRetryAfter)}
	return e
}
