package gate

import (
	"context"
	"net/http"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// endpoints is a list of interchangeable servers (control endpoints, or
// their key sets) and the one in use: the last that answered. Work starts
// at the one in use and moves down the list, wrapping around, only when it
// fails; the one in use changes only when another has answered, so a
// failover is one switch, reported once (report), however many requests
// saw the failure, and an outage of them all switches nothing.
type endpoints struct {
	urls    []string
	current atomic.Int32
	// report is called once per switch, with the error that the endpoint
	// left behind gave.
	report func(from, to string, cause error)
}

// inUse returns the index of the endpoint in use.
func (e *endpoints) inUse() int { return int(e.current.Load()) }

// answered records that endpoint i worked, after the one in use at from
// failed with cause: i is now in use, unless another switch came first.
func (e *endpoints) answered(from, i int, cause error) {
	if from == i || !e.current.CompareAndSwap(int32(from), int32(i)) {
		return
	}
	if e.report != nil {
		e.report(e.urls[from], e.urls[i], cause)
	}
}

// try runs attempt against each endpoint in turn, from the one in use,
// until one gives an answer that another endpoint would not change (next
// false). Each attempt gets an equal share of what is left of ctx's
// deadline, so that an endpoint that hangs leaves time for the others; with
// one endpoint ctx is passed on as it is.
func (e *endpoints) try(ctx context.Context, attempt func(ctx context.Context, url string) (next bool, err error)) error {
	from := e.inUse()
	n := len(e.urls)
	var first, last error
	for k := range n {
		i := (from + k) % n
		actx, cancel := shareOf(ctx, n-k)
		next, err := attempt(actx, e.urls[i])
		cancel()
		if !next {
			if err == nil {
				e.answered(from, i, first)
			}
			return err
		}
		if k == 0 {
			first = err
		}
		last = err
		if ctx.Err() != nil {
			break
		}
	}
	return last
}

// shareOf gives one of the attempts left its share of ctx's time.
func shareOf(ctx context.Context, left int) (context.Context, context.CancelFunc) {
	deadline, ok := ctx.Deadline()
	if left <= 1 || !ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, time.Until(deadline)/time.Duration(left))
}

// serverFailed reports whether an answer's status says that the endpoint
// could not answer (it failed, or is overloaded) rather than answered:
// another endpoint may do better.
func serverFailed(status int) bool {
	return status >= http.StatusInternalServerError || status == http.StatusTooManyRequests
}

// failedOver logs and counts a switch of the source's control endpoint.
func (s *statusSource) failedOver(from, to string, cause error) {
	s.logger.Warn("control endpoint failover: statuses now come from another control endpoint",
		zap.String("from", from), zap.String("to", to), zap.NamedError("from_error", cause))
	s.metrics.failoverCounter(s, failoverStatuses).Inc()
}
