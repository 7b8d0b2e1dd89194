package gate

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/conngate/conngate/caddymodule/controlapi"
	"github.com/conngate/conngate/store"
)

// Reconnection backoff of the change stream: exponential with jitter, so
// that gateways restarted together do not reconnect in lockstep.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 10 * time.Second
	// A stream that stayed up this long starts the next backoff afresh.
	healthyStream = 30 * time.Second
	ackTimeout    = 5 * time.Second
)

// errStreamIdle ends a stream that carried nothing, not even a heartbeat,
// for its idle timeout: the connection is presumed dead.
var errStreamIdle = errors.New("change stream silent for too long (no event, no heartbeat)")

// heartbeatsMissed is how many announced heartbeat intervals a stream may
// stay silent, plus heartbeatSlack for the network, before it is presumed
// dead: a partition is noticed within about two intervals.
const (
	heartbeatsMissed = 2
	heartbeatSlack   = time.Second
)

// streamState is the change stream's own state. Only the stream's goroutine
// touches it, but open, which Destruct reads.
type streamState struct {
	// instance tells this process apart from others with the same gateway
	// id; the control endpoint counts acknowledgements per instance.
	instance string
	// position is the id of the last event applied: where to resume. It
	// names the revision and the change at it, so that resuming into
	// another history (a restored store) gets a reset.
	position string
	// heartbeat is the interval the control endpoint announced.
	heartbeat time.Duration
	open      atomic.Pointer[openStream] // the stream open now
	// cleared is set when the stream open now cleared the cache (a reset,
	// or a first sync): it did not continue the history of the one before.
	cleared bool
}

// openStream is where a stream is open and the ack key it gave: its
// acknowledgements and the leave go to the same endpoint.
type openStream struct {
	base, ackKey string
}

// idleLimit is how long the stream may carry nothing before it is dropped.
func (s *statusSource) idleLimit() time.Duration {
	if hb := s.stream.heartbeat; hb > 0 {
		return min(s.idleTimeout, heartbeatsMissed*hb+heartbeatSlack)
	}
	return s.idleTimeout
}

// leave tells the control endpoint that this process stops (so that it is
// not waited for as a gateway that may come back). Best effort: a control
// endpoint that is away forgets the process after its gateway_retention.
func (s *statusSource) leave() {
	open := s.stream.open.Load()
	if open == nil || open.ackKey == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.client.leave(ctx, open.base, s.gatewayID, open.ackKey); err != nil {
		s.logger.Debug("telling the control endpoint this gateway leaves", zap.Error(err))
	}
}

// leaveTimeout bounds the leave posted to an endpoint the stream moved
// away from: it runs beside the new stream, and that endpoint may be the
// one that failed.
const leaveTimeout = 2 * time.Second

// leaveBehind tells the endpoint of an earlier stream, in the background,
// that this process left it for another endpoint, so that it does not
// count the process as pending for its gateway_retention. Best effort: an
// endpoint that is away (the usual reason to fail over) learns nothing,
// and a failure is logged at debug only. It is sent only when the new
// endpoint did not resume the stream (it answered with a reset): an
// endpoint that did is a replica of the same store, where the old one sees
// the process through the store as connected elsewhere, and a leave would
// erase what the new one saved there.
func (s *statusSource) leaveBehind(ctx context.Context, old *openStream) {
	s.leaving.Add(1)
	go func() {
		defer s.leaving.Done()
		lctx, cancel := context.WithTimeout(ctx, leaveTimeout)
		defer cancel()
		if err := s.client.leave(lctx, old.base, s.gatewayID, old.ackKey); err != nil {
			s.logger.Debug("telling a control endpoint the stream left it", zap.String("endpoint", old.base), zap.Error(err))
		}
	}()
}

// subscribe keeps the change stream open until the source is destroyed.
// With several control endpoints, a stream that fails is opened again at
// the next one, at once; the backoff applies once every endpoint has
// failed in turn. The stream resumes from the position last applied,
// whichever endpoint delivered it: a replica of the same store replays what
// was missed, another store answers with a reset.
func (s *statusSource) subscribe(ctx context.Context) {
	defer close(s.stopped)
	urls := s.client.endpoints.urls
	at := s.client.endpoints.inUse()
	backoff := minBackoff
	failures := 0      // since the stream was last healthy
	resumable := false // true once a sync gave a revision to resume from
	everConnected := false
	var cause error // why the last stream or attempt ended
	for {
		began := s.now()
		err := s.streamOnce(ctx, &resumable, at, cause)
		s.markDisconnected()
		if ctx.Err() != nil {
			return
		}
		if s.now().Sub(began) > healthyStream {
			backoff, failures = minBackoff, 0
		}
		cause = err
		failed := urls[at]
		at = (at + 1) % len(urls)
		failures++
		wait := backoff/2 + rand.N(backoff/2+1)
		if failures%len(urls) != 0 {
			wait = minBackoff/2 + rand.N(minBackoff/2+1) // another endpoint may work now
		} else {
			backoff = min(backoff*2, maxBackoff)
		}
		everConnected = everConnected || resumable
		fields := []zap.Field{zap.Error(err), zap.Duration("reconnect_in", wait)}
		if len(urls) > 1 {
			fields = append(fields, zap.String("failed_endpoint", failed), zap.String("next_endpoint", urls[at]))
		}
		if everConnected {
			s.logger.Warn("change stream down; cached statuses now expire after disconnected_ttl",
				append(fields, zap.Uint64("applied_revision", s.applied.Load()))...)
		} else {
			// Expected at start-up when the control endpoint is served by
			// this same Caddy and is not listening yet.
			s.logger.Info("change stream not connected yet; retrying", fields...)
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return
		}
	}
}

func (s *statusSource) markDisconnected() {
	if s.connected.Swap(false) {
		s.downSince.Store(s.now().UnixNano())
		s.metrics.streamConnected(s, false)
	}
}

// streamOnce reads one connection of the change stream, to endpoint at,
// until it fails. Once it is in sync, at becomes the endpoint in use (a
// failover when it was another, which cause made fail).
func (s *statusSource) streamOnce(ctx context.Context, resumable *bool, at int, cause error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			s.logger.Error("panic in change stream reader", zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var from string
	if *resumable {
		from = s.stream.position
	}
	base := s.client.endpoints.urls[at]
	resp, ackKey, err := s.client.events(sctx, base, s.gatewayID, s.stream.instance, from)
	if err != nil {
		return fmt.Errorf("opening change stream: %w", err)
	}
	defer resp.Body.Close()
	before := s.stream.open.Swap(&openStream{base: base, ackKey: ackKey})
	s.stream.cleared = false
	idle := time.AfterFunc(s.idleLimit(), func() { cancel(errStreamIdle) })
	defer idle.Stop()
	acks := s.startAcker(sctx, base, ackKey)
	inSync := func() {
		s.client.endpoints.answered(s.client.endpoints.inUse(), at, cause)
		if before != nil && before.base != base && before.ackKey != "" && s.stream.cleared {
			s.leaveBehind(ctx, before)
			before = nil // once
		}
	}

	events := controlapi.NewEventReader(resp.Body)
	for {
		ev, err := events.Next()
		if err != nil {
			if cause := context.Cause(sctx); cause != nil {
				err = cause
			}
			return fmt.Errorf("reading change stream: %w", err)
		}
		idle.Reset(s.idleLimit())
		if ev.IsHeartbeat() {
			continue // it only proves the stream alive
		}
		if err := s.dispatch(ev, resumable, inSync); err != nil {
			return err
		}
		// Acknowledge once what has arrived is applied, not per event: a
		// replay of thousands of changes makes one ack.
		if !events.Buffered() {
			acks.offer(s.applied.Load()) // apply's writes are already visible
		}
	}
}

// dispatch applies one event; inSync is called at each sync.
func (s *statusSource) dispatch(ev controlapi.Event, resumable *bool, inSync func()) error {
	switch ev.Name {
	case controlapi.EventStatus:
		var c store.Change
		if err := json.Unmarshal(ev.Data, &c); err != nil || c.ID == "" || !c.Status.Valid() || c.Revision == 0 {
			return fmt.Errorf("malformed status event %q", ev.Data)
		}
		s.apply(c)
		s.applied.Store(c.Revision)
		s.stream.position = ev.ID
		s.metrics.eventApplied(s, c)
	case controlapi.EventSync, controlapi.EventReset:
		rev, _, err := controlapi.ParseEventID(ev.ID)
		if err != nil {
			return fmt.Errorf("malformed %s event id %q", ev.Name, ev.ID)
		}
		var pos controlapi.Position
		if json.Unmarshal(ev.Data, &pos) == nil && pos.HeartbeatMillis > 0 {
			s.stream.heartbeat = time.Duration(pos.HeartbeatMillis) * time.Millisecond
		}
		// A reset means the changes since our revision cannot be replayed;
		// a first sync means we never had a revision, and what was looked
		// up before it may predate changes the stream will not send. Either
		// way the cache cannot be trusted.
		if ev.Name == controlapi.EventReset || !*resumable {
			s.reset()
			s.stream.cleared = true
			s.logger.Info("status cache cleared", zap.String("because", map[bool]string{true: "reset by the control endpoint", false: "first connection"}[ev.Name == controlapi.EventReset]))
		}
		s.applied.Store(rev)
		s.stream.position = ev.ID
		s.metrics.eventApplied(s, store.Change{Revision: rev})
		if ev.Name == controlapi.EventSync {
			*resumable = true
			inSync()
			if !s.connected.Swap(true) {
				s.metrics.streamConnected(s, true)
				s.logger.Info("change stream connected", zap.Uint64("revision", rev))
			}
		}
	}
	return nil
}

// acker sends the latest applied revision to the control endpoint, one
// request at a time, skipping revisions overtaken while one is in flight.
type acker struct {
	latest atomic.Uint64
	wake   chan struct{}
}

func (s *statusSource) startAcker(ctx context.Context, base, ackKey string) *acker {
	a := &acker{wake: make(chan struct{}, 1)}
	go func() {
		var sent uint64
		for {
			select {
			case <-a.wake:
			case <-ctx.Done():
				return
			}
			rev := a.latest.Load()
			if rev <= sent {
				continue
			}
			actx, cancel := context.WithTimeout(ctx, ackTimeout)
			err := s.client.ack(actx, base, s.gatewayID, ackKey, rev)
			cancel()
			if err != nil {
				if ctx.Err() == nil {
					s.logger.Warn("acknowledging applied revision", zap.Uint64("revision", rev), zap.Error(err))
				}
				continue
			}
			sent = rev
			// Acknowledgements are spaced ackGap apart: at a high change
			// rate one per change would cost the gateway and the control
			// endpoint more than the changes; revisions that arrive
			// meanwhile are acknowledged together by the next one.
			select {
			case <-time.After(ackGap):
			case <-ctx.Done():
				return
			}
		}
	}()
	return a
}

// ackGap is the least time between two acknowledgements of one stream: it
// adds at most this to a ?wait=applied answer.
const ackGap = 5 * time.Millisecond

func (a *acker) offer(rev uint64) {
	a.latest.Store(rev)
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

func newInstanceID() string {
	b := make([]byte, 8)
	crand.Read(b) // never fails
	return hex.EncodeToString(b)
}
