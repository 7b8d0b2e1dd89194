package control

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"sync"
	"time"
	"weak"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/conngate/conngate/caddymodule/controlapi"
	"github.com/conngate/conngate/store"
)

// replayBatch is how many changes one store read returns while replaying.
const replayBatch = 500

// serverShutdowns ends event streams when their HTTP server begins to shut
// down. net/http waits for in-flight requests, and a stream never finishes
// on its own: without this, stopping Caddy would wait for ever.
//
// A server's entry stays after its shutdown (closed): a request that was
// already being read when the shutdown began must still find it closed, as
// a hook registered then would never run. The map holds servers weakly, so
// an old config's server is not kept alive by it.
type serverShutdowns struct {
	mu      sync.Mutex
	closing map[weak.Pointer[http.Server]]chan struct{}
}

// processExiting is closed once Caddy is exiting (caddy.Exiting). It backs
// up the shutdown hooks: a hook registered after its server began to shut
// down is never called (net/http), and a stream that opens in that moment
// would hold up the exit for ever. Polled by one goroutine per process.
var processExiting = sync.OnceValue(func() <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		for !caddy.Exiting() {
			time.Sleep(200 * time.Millisecond)
		}
		close(ch)
	}()
	return ch
})

// of returns a channel closed when the server that serves r shuts down.
// ServeHTTP calls it for every request, so that the hook is in place
// before the first stream, which may come just as the server stops.
func (s *serverShutdowns) of(r *http.Request) <-chan struct{} {
	srv, _ := r.Context().Value(http.ServerContextKey).(*http.Server)
	if srv == nil {
		return nil // not served by net/http (a unit test's recorder): never
	}
	key := weak.Make(srv)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing == nil {
		s.closing = map[weak.Pointer[http.Server]]chan struct{}{}
	}
	ch, ok := s.closing[key]
	if !ok {
		for k := range s.closing {
			if k.Value() == nil {
				delete(s.closing, k) // its server is gone (an old config's)
			}
		}
		ch = make(chan struct{})
		s.closing[key] = ch
		srv.RegisterOnShutdown(func() { close(ch) })
	}
	return ch
}

// streamEvents is GET /v1/events: every status change as a Server-Sent
// Event, replayed from Last-Event-ID or ?since=, then live, in the format of
// controlapi/events.go.
//
// A person's stream carries only the changes of connections they may view.
// Its ids are still store-wide positions (so resuming works alike for all),
// which tells a person how many changes happened elsewhere, not which.
func (c *Control) streamEvents(w http.ResponseWriter, r *http.Request) error {
	from, err := resumePoint(r)
	if err != nil {
		return err
	}
	who := principalOf(r)
	q := r.URL.Query()
	gatewayID := subscriberID(who, q.Get("gateway_id"))
	if err := optionalID("gateway_id", gatewayID); err != nil {
		return err
	}
	instance := q.Get("instance")
	if instance != "" {
		if gatewayID == "" {
			return invalid("instance names a process of a gateway: it needs gateway_id.")
		}
		if err := validID("instance", instance); err != nil {
			return err
		}
	}
	if err := authorize(who, access{want: rightEvents, gatewayID: gatewayID}); err != nil {
		return err
	}
	release, err := c.shared.streams.open(c.streamLimits(), who.id, gatewayID != "")
	if err != nil {
		return err
	}
	defer release()

	ctx := r.Context()
	pos, err := c.startingPosition(ctx, from, gatewayID != "")
	if err != nil {
		return err
	}

	var sub *gatewayStream
	if gatewayID != "" {
		if instance == "" {
			instance = randomInstance() // a client that does not name its process is one per stream
		}
		sub = c.gateways.subscribe(gatewayID, instance)
		defer sub.end()
		w.Header().Set(controlapi.AckKeyHeader, sub.ackKey)
		c.logger.Info("gateway subscribed", zap.String("gateway_id", gatewayID), zap.String("instance", instance), zap.Uint64("since", pos.revision))
		defer c.logger.Info("gateway unsubscribed", zap.String("gateway_id", gatewayID), zap.String("instance", instance))
	}
	controlapi.SetStreamHeaders(w.Header())
	w.WriteHeader(http.StatusOK)
	// From here on the answer has begun: a failure can only end the
	// stream, and the client reconnects and resumes.
	rc := http.NewResponseController(w)
	s := &eventStream{c: c, who: who, sub: sub, out: controlapi.NewEventWriter(w), flush: rc.Flush, writeDeadline: rc.SetWriteDeadline, pos: pos.position}
	if pos.diverged != "" {
		c.logger.Warn("change stream cannot resume from the position given; sending reset",
			zap.String("from", from.id()), zap.String("because", pos.diverged), zap.String("gateway_id", gatewayID))
		if s.reset(ctx) != nil {
			return nil
		}
	}
	s.run(ctx, c.shutdowns.of(r))
	return nil
}

// position is a point of the store's history: a revision and the
// fingerprint of the change at it ("" for revision 0, or not known).
type position struct {
	revision    uint64
	fingerprint string
}

func (p position) id() string { return controlapi.EventID(p.revision, p.fingerprint) }

// startPosition is where a stream starts, and, when the asked position
// cannot be resumed from (the stream sends reset), why.
type startPosition struct {
	position
	diverged string
}

// startingPosition checks the position a client resumes from against the
// store's history: the change at its revision must have its fingerprint;
// no position means "from now".
//
// A bare revision (no fingerprint: typed by a person as ?since=42) names
// no history. A person's stream resumes from it if the store has reached
// it: within this history it is taken on trust, and a page that replays a
// few changes of another history does no harm. One above the store's
// revision is a client of another history (a store restored from a
// backup), and gets a reset, never a resume that would wait for the store
// to reach it and then skip what the client missed. A gateway's stream
// always gets a reset: a gateway resumes only from positions it was sent,
// which carry their fingerprint, and its cache must not be kept on trust.
// (Revision 0, the empty store's, has no fingerprint: it is a whole
// position.)
func (c *Control) startingPosition(ctx context.Context, from resumeFrom, gateway bool) (startPosition, error) {
	if !from.given {
		rev, err := c.store.Revision(ctx)
		if err != nil {
			return startPosition{}, err
		}
		fp, err := c.fingerprintAt(ctx, rev)
		if err != nil && !errors.Is(err, store.ErrReplayUnavailable) {
			return startPosition{}, err
		}
		return startPosition{position: position{rev, fp}}, nil
	}
	if from.fingerprint == "" && from.revision > 0 {
		if gateway {
			return startPosition{position: from.position, diverged: "a gateway's position without a fingerprint"}, nil
		}
		latest, err := c.store.Revision(ctx)
		if err != nil {
			return startPosition{}, err
		}
		if from.revision > latest {
			return startPosition{position: from.position, diverged: "a revision the store has not reached (another history)"}, nil
		}
		return startPosition{position: from.position}, nil
	}
	fp, err := c.fingerprintAt(ctx, from.revision)
	switch {
	case errors.Is(err, store.ErrReplayUnavailable):
		// No longer kept, or from the future: either way the client must
		// start over (the stream resets).
		return startPosition{position: from.position, diverged: "a revision the change log does not hold (dropped, or not reached)"}, nil
	case err != nil:
		return startPosition{}, err
	case fp != from.fingerprint:
		return startPosition{position: from.position, diverged: "the change at its revision has another fingerprint (another history)"}, nil
	}
	return startPosition{position: from.position}, nil
}

// fingerprintAt returns the fingerprint of the change at revision, or
// store.ErrReplayUnavailable when the store does not hold it.
func (c *Control) fingerprintAt(ctx context.Context, revision uint64) (string, error) {
	if revision == 0 {
		return "", nil
	}
	if changes, ok := c.shared.feed.after(revision-1, 1); ok && len(changes) == 1 {
		return changes[0].fingerprint, nil
	}
	changes, err := c.store.Changes(ctx, revision-1, 1)
	if err != nil {
		return "", err
	}
	if len(changes) == 0 || changes[0].Revision != revision {
		return "", store.ErrReplayUnavailable
	}
	return changes[0].Fingerprint(), nil
}

// eventStream is one open change stream.
type eventStream struct {
	c     *Control
	who   *principal
	sub   *gatewayStream // nil for a person's stream
	out   *controlapi.EventWriter
	flush func() error
	// writeDeadline bounds a person's turn (see turn): a client that does
	// not read must not hold the others up.
	writeDeadline func(time.Time) error
	pos           position // the last position sent, or to send the sync at
}

// personWriteTimeout is how long a person's stream may take to write one
// batch before it is ended.
const personWriteTimeout = time.Second

func (s *eventStream) info() controlapi.Position {
	return controlapi.Position{Revision: s.pos.revision, HeartbeatMillis: s.heartbeat().Milliseconds()}
}

// personHeartbeat is the least interval of heartbeats on people's streams:
// a page needs no fast partition detection, only a connection that proxies
// keep open, and thousands of open pages must not cost a write each every
// couple of seconds.
const personHeartbeat = 15 * time.Second

// heartbeat is this stream's heartbeat interval: heartbeat_interval for
// gateways, at least personHeartbeat for people.
func (s *eventStream) heartbeat() time.Duration {
	hb := time.Duration(s.c.HeartbeatInterval)
	if s.sub == nil {
		hb = max(hb, personHeartbeat)
	}
	return hb
}

// reset tells the client to drop what it derived and go on from the
// store's latest position.
func (s *eventStream) reset(ctx context.Context) error {
	latest, err := s.c.store.Revision(ctx)
	if err != nil {
		return err
	}
	fp, err := s.c.fingerprintAt(ctx, latest)
	if err != nil && !errors.Is(err, store.ErrReplayUnavailable) {
		return err
	}
	s.pos = position{latest, fp}
	s.deliver(latest)
	return s.out.Event(s.pos.id(), controlapi.EventReset, s.info())
}

func (s *eventStream) deliver(revision uint64) {
	if s.sub != nil {
		// Before the write: an ack may come back before this loop flushes.
		s.sub.deliver(revision)
	}
}

// run sends changes until the client goes, the server stops, or a newer
// stream of the same gateway process replaces this one.
func (s *eventStream) run(ctx context.Context, shutdown <-chan struct{}) {
	c := s.c
	var superseded <-chan struct{}
	if s.sub != nil {
		superseded = s.sub.superseded
	}
	heartbeat := time.NewTicker(s.heartbeat())
	defer heartbeat.Stop()
	synced := false
	for {
		// Take the signal before reading, so that a change that arrives
		// between the read and the wait still wakes this loop.
		wake := c.shared.feed.wake(s.sub != nil)
		if !s.sendNew(ctx, &synced) {
			return
		}
		select {
		case <-wake:
		case <-heartbeat.C:
			if !s.send(func() error { return s.out.Heartbeat() }) {
				return
			}
		case <-ctx.Done():
			return
		case <-c.done:
			return
		case <-shutdown:
			return
		case <-processExiting():
			return
		case <-superseded:
			return
		}
	}
}

// sendNew writes every change after the stream's position (and the sync
// event once the replay is done) and flushes. It reports false when the
// stream must end.
func (s *eventStream) sendNew(ctx context.Context, synced *bool) bool {
	release := s.turn()
	defer release()
	c := s.c
	for {
		changes, ok := c.shared.feed.after(s.pos.revision, replayBatch)
		if !ok {
			read, err := c.store.Changes(ctx, s.pos.revision, replayBatch)
			if err == nil {
				changes, err = encode(read)
			}
			switch {
			case errors.Is(err, store.ErrReplayUnavailable):
				c.logger.Warn("change stream cannot replay; sending reset", zap.Uint64("since", s.pos.revision))
				if s.reset(ctx) != nil {
					return false
				}
				*synced = false
				continue
			case err != nil:
				c.logger.Error("reading change log", zap.Error(err))
				return false
			}
		}
		if len(changes) > 0 {
			s.deliver(changes[len(changes)-1].Revision)
		}
		for _, ch := range changes {
			s.pos = position{ch.Revision, ch.fingerprint}
			if !sees(s.who, ch.Change) {
				continue
			}
			if s.out.EventJSON(ch.id, controlapi.EventStatus, ch.data) != nil {
				return false
			}
		}
		if len(changes) < replayBatch {
			break
		}
		// More to replay before going live.
	}
	if !*synced {
		if s.pos.fingerprint == "" && s.pos.revision > 0 {
			s.pos.fingerprint, _ = c.fingerprintAt(ctx, s.pos.revision) // a bare ?since=
		}
		s.deliver(s.pos.revision)
		if s.out.Event(s.pos.id(), controlapi.EventSync, s.info()) != nil {
			return false
		}
		*synced = true
	}
	return s.flush() == nil
}

// send writes with write and flushes, in the stream's turn.
func (s *eventStream) send(write func() error) bool {
	release := s.turn()
	defer release()
	return write() == nil && s.flush() == nil
}

// turn waits until this stream may write. People's streams take turns, a
// few at a time: thousands of them woken together would otherwise all be
// runnable at once, and a gateway's stream, woken at the same moment, would
// wait behind every one of them for the CPU. Gateways' streams never wait.
func (s *eventStream) turn() (release func()) {
	if s.sub != nil {
		return func() {}
	}
	turns := s.c.shared.peopleTurns
	turns <- struct{}{}
	s.c.shared.peoplePace.wait(peopleGap)
	_ = s.writeDeadline(time.Now().Add(personWriteTimeout)) // not supported: no bound, as before
	return func() {
		_ = s.writeDeadline(time.Time{})
		<-turns
	}
}

// resumeFrom is where a client asked the stream to start.
type resumeFrom struct {
	position
	given bool
}

// resumePoint reads where a client wants the stream to start. Last-Event-ID
// (sent by reconnecting EventSource clients) wins over ?since=.
func resumePoint(r *http.Request) (resumeFrom, error) {
	v, name := r.Header.Get("Last-Event-ID"), "Last-Event-ID"
	if v == "" {
		v, name = r.URL.Query().Get("since"), "since"
	}
	if v == "" {
		return resumeFrom{}, nil
	}
	rev, fp, err := controlapi.ParseEventID(v)
	if err != nil {
		return resumeFrom{}, invalid(name + ": " + err.Error() + ".")
	}
	return resumeFrom{position: position{rev, fp}, given: true}, nil
}

func randomInstance() string {
	b := make([]byte, 8)
	rand.Read(b) // never fails
	return hex.EncodeToString(b)
}
