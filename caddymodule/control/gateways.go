package control

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/conngate/conngate/caddymodule/controlapi"
	"github.com/conngate/conngate/store"
)

// reconnectGrace is how long ?wait=applied still waits for a gateway whose
// stream ended (a reload, a network blip, a control restart): it is most
// likely reconnecting. Past that it is reported pending without waiting.
const reconnectGrace = 10 * time.Second

// DefaultGatewayRetention is how long a gateway process that went away is
// remembered (and reported pending by ?wait=applied) unless it left on
// purpose.
const DefaultGatewayRetention = 10 * time.Minute

// gatewayFlushInterval is how often what the registry knows is saved to the
// store, so that a restarted control endpoint, and every other replica on
// the store, knows the gateways connected here. (Acknowledgements and new
// processes are saved at once.)
const gatewayFlushInterval = 2 * time.Second

// gatewayRegistry knows every gateway process subscribed to the change
// stream, or seen on it within the retention, and the revision each has
// applied, so that a change can wait until every gateway has applied it.
//
// A process is a gateway id and an instance (chosen by the process, so that
// several processes may share an id). Acknowledgements are bound to a
// stream: each stream gets a secret ack key, an ack names it, and counts
// only up to the revision that stream has delivered.
type gatewayRegistry struct {
	mu        sync.Mutex
	instances map[instanceKey]*instanceState
	byAckKey  map[[32]byte]*gatewayStream // sha-256 of each open stream's ack key
	// updated is closed and replaced whenever an applied revision moves or
	// a gateway comes or goes: waiters re-check then.
	updated chan struct{}

	store store.GatewayStore
	// remote, when the store has one, wakes waiters when another replica
	// saved gateways (nil: they poll every remotePoll).
	remote    store.GatewayWatcher
	retention atomic.Int64 // nanoseconds; the config provisioned last sets it
	now       func() time.Time
	logger    *zap.Logger
	stop      chan struct{}
	stopped   chan struct{}
	// flushSoon asks run to save now: a new process is worth saving at
	// once, so that a restart right after it subscribed still knows it.
	flushSoon chan struct{}
}

type instanceKey struct{ gatewayID, instance string }

func (k instanceKey) String() string { return k.gatewayID + "/" + k.instance }

type instanceState struct {
	instanceKey
	streams     int            // a process may briefly hold two while it reconnects
	current     *gatewayStream // the newest open stream
	applied     uint64
	connectedAt time.Time
	lastAckAt   time.Time
	// lastSeen is when it was last connected (saved every flush while it
	// is); goneAt is when this process last saw it go (zero while
	// connected), or when this process started for a gateway remembered
	// from the store.
	lastSeen, goneAt time.Time
	dirty            bool // changed since the last save
	// newest is the sha-256 of the ack key of its newest stream, kept once
	// that stream has ended: a process that moved to another control
	// endpoint can still leave this one, and a leave sent with the key of
	// an older stream cannot forget it after it came back.
	newest [32]byte
}

// gatewayStream is one open change stream of a gateway process.
type gatewayStream struct {
	reg       *gatewayRegistry
	inst      *instanceState
	ackKey    string
	ackHash   [32]byte
	delivered uint64 // under reg.mu
	// superseded is closed when a newer stream of the same process opens:
	// the old one ends, so that one process has one stream.
	superseded chan struct{}
}

func newGatewayRegistry(st store.GatewayStore, logger *zap.Logger) *gatewayRegistry {
	g := &gatewayRegistry{
		instances: map[instanceKey]*instanceState{},
		byAckKey:  map[[32]byte]*gatewayStream{},
		updated:   make(chan struct{}),
		store:     st,
		now:       time.Now,
		logger:    logger,
		stop:      make(chan struct{}),
		stopped:   make(chan struct{}),
		flushSoon: make(chan struct{}, 1),
	}
	g.remote, _ = st.(store.GatewayWatcher)
	g.retention.Store(int64(DefaultGatewayRetention))
	return g
}

// remember loads the gateways the store saw within the retention: after a
// restart they count as reconnecting, and are waited for reconnectGrace.
func (g *gatewayRegistry) remember(ctx context.Context) error {
	now := g.now()
	seen, err := g.store.Gateways(ctx, now.Add(-g.retentionPeriod()))
	if err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, s := range seen {
		k := instanceKey{s.GatewayID, s.Instance}
		if g.instances[k] == nil {
			g.instances[k] = &instanceState{instanceKey: k, applied: s.AppliedRevision, lastSeen: s.SeenAt, goneAt: now}
		}
	}
	return nil
}

func (g *gatewayRegistry) retentionPeriod() time.Duration { return time.Duration(g.retention.Load()) }

// broadcast must be called with mu held.
func (g *gatewayRegistry) broadcast() {
	close(g.updated)
	g.updated = make(chan struct{})
}

// subscribe records a new stream of one gateway process and ends the
// process's older stream, if any.
func (g *gatewayRegistry) subscribe(gatewayID, instance string) *gatewayStream {
	key := make([]byte, 32)
	rand.Read(key) // never fails
	s := &gatewayStream{reg: g, ackKey: hex.EncodeToString(key), superseded: make(chan struct{})}
	s.ackHash = sha256.Sum256([]byte(s.ackKey))

	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	k := instanceKey{gatewayID, instance}
	st := g.instances[k]
	if st == nil {
		st = &instanceState{instanceKey: k}
		g.instances[k] = st
		g.saveSoon()
	}
	if st.streams == 0 {
		st.connectedAt = now.UTC()
	}
	if st.current != nil {
		close(st.current.superseded)
	}
	st.streams++
	st.current, st.goneAt, st.lastSeen, st.dirty = s, time.Time{}, now, true
	st.newest = s.ackHash
	s.inst = st
	g.byAckKey[s.ackHash] = s
	g.broadcast()
	return s
}

// deliver records that the stream has written (and flushed) every change
// up to revision.
func (s *gatewayStream) deliver(revision uint64) {
	s.reg.mu.Lock()
	s.delivered = max(s.delivered, revision)
	s.reg.mu.Unlock()
}

// end records that the stream is closed.
func (s *gatewayStream) end() {
	g := s.reg
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.byAckKey, s.ackHash)
	st := s.inst
	if st.current == s {
		st.current = nil
	}
	if st.streams--; st.streams == 0 {
		st.goneAt, st.lastSeen, st.dirty = g.now(), g.now(), true
	}
	g.broadcast()
}

// streamOf returns the open stream of gatewayID whose ack key this is.
func (g *gatewayRegistry) streamOf(gatewayID, ackKey string) (*gatewayStream, error) {
	s := g.byAckKey[sha256.Sum256([]byte(ackKey))]
	if s == nil || s.inst.gatewayID != gatewayID {
		return nil, controlapi.Errorf(http.StatusNotFound, controlapi.CodeGatewayNotSubscribed,
			"Gateway %s has no open change stream with this ack key; acknowledgements count only for the stream whose %s they name, while it is open.", gatewayID, controlapi.AckKeyHeader)
	}
	return s, nil
}

// ack records that the process behind the stream has applied every change
// up to revision.
func (g *gatewayRegistry) ack(gatewayID, ackKey string, revision uint64) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	s, err := g.streamOf(gatewayID, ackKey)
	if err != nil {
		return err
	}
	if revision > s.delivered {
		return controlapi.Errorf(http.StatusConflict, controlapi.CodeAckAhead,
			"Revision %d is above what this stream has delivered (%d); a gateway acknowledges only what it was sent.", revision, s.delivered)
	}
	st := s.inst
	st.lastAckAt = g.now().UTC()
	if revision > st.applied {
		st.applied = revision
		st.dirty = true
		g.broadcast()
		g.saveSoon() // other replicas' ?wait=applied read it from the store
	}
	return nil
}

// saveSoon asks run to save now. It must be called with mu held or not;
// it never blocks.
func (g *gatewayRegistry) saveSoon() {
	select {
	case g.flushSoon <- struct{}{}:
	default:
	}
}

// leave forgets the process whose newest stream, open or ended, has the ack
// key: it stops on purpose, or its stream moved to another control
// endpoint.
func (g *gatewayRegistry) leave(ctx context.Context, gatewayID, ackKey string) error {
	h := sha256.Sum256([]byte(ackKey))
	g.mu.Lock()
	var st *instanceState
	if s := g.byAckKey[h]; s != nil {
		st = s.inst
	} else {
		for _, ended := range g.instances {
			if ended.newest == h {
				st = ended
				break
			}
		}
	}
	if st == nil || st.gatewayID != gatewayID || st.newest != h {
		g.mu.Unlock()
		return controlapi.Errorf(http.StatusNotFound, controlapi.CodeGatewayNotSubscribed,
			"Gateway %s has no process whose newest change stream has this ack key; a process leaves with the %s of its newest stream.", gatewayID, controlapi.AckKeyHeader)
	}
	k := st.instanceKey
	if g.instances[k] == st {
		delete(g.instances, k)
	}
	g.broadcast()
	g.mu.Unlock()
	return g.store.ForgetGateway(ctx, k.gatewayID, k.instance)
}

// forgetOld drops the processes gone for longer than the retention. It must
// be called with mu held.
func (g *gatewayRegistry) forgetOld(now time.Time) {
	for k, st := range g.instances {
		if st.streams == 0 && now.Sub(st.lastSeen) > g.retentionPeriod() {
			delete(g.instances, k)
		}
	}
}

// memberState is where a gateway process is, as far as this replica can
// tell.
type memberState int

const (
	connectedHere  memberState = iota // a stream of it is open on this replica
	connectedThere                    // another replica saved it as connected a moment ago
	reconnecting                      // gone less than reconnectGrace ago
	away                              // gone longer, but seen within the retention
)

// member is one gateway process counted by ?wait=applied and listed.
type member struct {
	instanceKey
	state       memberState
	applied     uint64
	streams     int
	connectedAt time.Time
	lastAckAt   time.Time
	lastSeen    time.Time
	goneAt      time.Time // as instanceState's; zero for one known only from the store
}

// remoteFresh is how recently another replica must have saved a process as
// connected for it to count as connected there: a few of its saves.
const remoteFresh = 3 * gatewayFlushInterval

// members merges what this replica knows with what every replica saved in
// the store (saved, as read by the caller; nil when the store could not
// be read). It must be called with mu held.
func (g *gatewayRegistry) members(now time.Time, saved []store.GatewaySeen) map[instanceKey]*member {
	g.forgetOld(now)
	out := make(map[instanceKey]*member, len(g.instances))
	for k, st := range g.instances {
		m := &member{instanceKey: k, applied: st.applied, streams: st.streams, connectedAt: st.connectedAt, lastAckAt: st.lastAckAt,
			lastSeen: st.lastSeen, goneAt: st.goneAt}
		switch {
		case st.streams > 0:
			m.state, m.lastSeen = connectedHere, now
		case now.Sub(st.goneAt) < reconnectGrace:
			m.state = reconnecting
		default:
			m.state = away
		}
		out[k] = m
	}
	for _, sv := range saved {
		k := instanceKey{sv.GatewayID, sv.Instance}
		m := out[k]
		if m == nil {
			m = &member{instanceKey: k, state: away}
			out[k] = m
		}
		m.applied = max(m.applied, sv.AppliedRevision)
		if m.state != connectedHere && sv.SeenAt.After(m.lastSeen) {
			m.lastSeen = sv.SeenAt
			if now.Sub(sv.SeenAt) <= remoteFresh {
				m.state = connectedThere
			}
		}
	}
	return out
}

// saved reads what every replica saved of the gateways seen within the
// retention; on a failure, nil: this replica's own knowledge serves alone.
func (g *gatewayRegistry) saved(ctx context.Context) []store.GatewaySeen {
	seen, err := g.store.Gateways(ctx, g.now().Add(-g.retentionPeriod()))
	if err != nil {
		g.logger.Debug("reading the gateways other replicas saw", zap.Error(err))
		return nil
	}
	return seen
}

// remotePoll is how often ?wait=applied reads the store while it waits for
// a process connected to another replica (whose acknowledgements reach the
// store, not this replica), besides when the store tells it another replica
// saved (store.GatewayWatcher: PostgreSQL's NOTIFY). The poll only backs up
// the wake-ups, and sees a process connected elsewhere go stale.
const remotePoll = time.Second

// waitApplied waits until every gateway process that is connected (to this
// replica or, as saved in the store, to another), or went away less than
// reconnectGrace ago, has applied revision, or until ctx ends. It returns
// how many processes it counted (every one seen within the retention) and
// those that have not applied it: a gateway that is away stays pending,
// never silently done.
func (g *gatewayRegistry) waitApplied(ctx context.Context, revision uint64) (total int, pending []string) {
	for {
		var savedThere <-chan struct{} // nil (never) without a watcher
		if g.remote != nil {
			savedThere = g.remote.GatewaysSaved() // before reading: a save meanwhile still wakes us
		}
		saved := g.saved(ctx)
		g.mu.Lock()
		now := g.now()
		ms := g.members(now, saved)
		updated := g.updated
		g.mu.Unlock()

		total, pending = len(ms), []string{}
		waitFor, poll := false, false
		var recheck time.Duration // when a reconnecting one stops being waited for
		for _, m := range ms {
			if m.applied >= revision {
				continue
			}
			pending = append(pending, m.String())
			switch m.state {
			case connectedHere:
				waitFor = true
			case connectedThere:
				waitFor, poll = true, true
			case reconnecting:
				waitFor, poll = true, true // it may come back on another replica
				if left := reconnectGrace - now.Sub(m.goneAt); recheck == 0 || left < recheck {
					recheck = left
				}
			}
		}
		slices.Sort(pending)
		if !waitFor || ctx.Err() != nil {
			return total, pending
		}
		if poll && (recheck == 0 || remotePoll < recheck) {
			recheck = remotePoll
		}
		var timeout <-chan time.Time
		var timer *time.Timer
		if recheck > 0 {
			timer = time.NewTimer(recheck)
			timeout = timer.C
		}
		if !poll {
			savedThere = nil // only those connected here are waited for: their acks come here
		}
		select {
		case <-updated:
		case <-savedThere:
		case <-timeout:
		case <-ctx.Done():
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// list is every gateway process known to any replica, with its lag behind
// latest.
func (g *gatewayRegistry) list(ctx context.Context, latest uint64) []controlapi.Gateway {
	saved := g.saved(ctx)
	g.mu.Lock()
	ms := g.members(g.now(), saved)
	g.mu.Unlock()
	views := make([]controlapi.Gateway, 0, len(ms))
	for _, m := range ms {
		v := controlapi.Gateway{ID: m.gatewayID, Instance: m.instance, Connected: m.state == connectedHere || m.state == connectedThere,
			Streams: m.streams, AppliedRevision: m.applied, ConnectedAt: m.connectedAt, LastSeenAt: m.lastSeen.UTC()}
		if latest > m.applied {
			v.LagRevisions = latest - m.applied
		}
		if !m.lastAckAt.IsZero() {
			t := m.lastAckAt
			v.LastAckAt = &t
		}
		views = append(views, v)
	}
	slices.SortFunc(views, func(a, b controlapi.Gateway) int {
		return strings.Compare(a.ID+"\x00"+a.Instance, b.ID+"\x00"+b.Instance)
	})
	return views
}

// run saves what the registry knows every gatewayFlushInterval until stop.
func (g *gatewayRegistry) run() {
	defer close(g.stopped)
	tick := time.NewTicker(gatewayFlushInterval)
	defer tick.Stop()
	var last time.Time
	for {
		select {
		case <-tick.C:
		case <-g.flushSoon:
			// Saves asked for at once are spaced minSaveGap apart: at a
			// high change rate every acknowledgement asks, and each save is
			// a durable write of the store.
			if wait := minSaveGap - time.Since(last); wait > 0 {
				select {
				case <-time.After(wait):
				case <-g.stop:
				}
			}
		case <-g.stop:
			// At shutdown the store may be closed already; a restart then
			// knows what the last save knew.
			if err := g.flush(); err != nil {
				g.logger.Debug("saving the gateway registry at shutdown", zap.Error(err))
			}
			return
		}
		last = time.Now()
		if err := g.flush(); err != nil {
			g.logger.Warn("saving the gateway registry", zap.Error(err))
		}
	}
}

// minSaveGap is the least time between two saves of the registry asked
// for at once (see run): other replicas learn of an acknowledgement within
// about this much.
const minSaveGap = 50 * time.Millisecond

// flush saves the connected processes (seen now) and those changed since
// the last flush, and lets the store forget those past the retention.
func (g *gatewayRegistry) flush() error {
	g.mu.Lock()
	now := g.now()
	var seen []store.GatewaySeen
	for _, st := range g.instances {
		if st.streams > 0 {
			st.lastSeen = now
		} else if !st.dirty {
			continue
		}
		st.dirty = false
		seen = append(seen, store.GatewaySeen{GatewayID: st.gatewayID, Instance: st.instance, AppliedRevision: st.applied, SeenAt: st.lastSeen.UTC()})
	}
	g.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return g.store.SaveGateways(ctx, seen, now.Add(-g.retentionPeriod()))
}

func (g *gatewayRegistry) close() {
	close(g.stop)
	<-g.stopped
}

func (c *Control) ackGateway(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := validID("gateway id", id); err != nil {
		return err
	}
	if err := allow(r, access{want: rightAck, gatewayID: id}); err != nil {
		return err
	}
	var body controlapi.Ack
	if err := decodeBody(w, r, &body); err != nil {
		return err
	}
	if body.Revision == 0 {
		// Revision 0 is the empty store's; no change has it, so an ack of 0
		// (or of a missing revision) acknowledges nothing.
		return invalid("revision must be the revision of an applied change, 1 or more.")
	}
	if body.Stream == "" {
		return invalid("stream must be the ack key the change stream was answered with (" + controlapi.AckKeyHeader + ").")
	}
	if err := c.gateways.ack(id, body.Stream, body.Revision); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (c *Control) leaveGateway(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := validID("gateway id", id); err != nil {
		return err
	}
	if err := allow(r, access{want: rightAck, gatewayID: id}); err != nil {
		return err
	}
	var body controlapi.Leave
	if err := decodeBody(w, r, &body); err != nil {
		return err
	}
	if body.Stream == "" {
		return invalid("stream must be the ack key the change stream was answered with (" + controlapi.AckKeyHeader + ").")
	}
	if err := c.gateways.leave(r.Context(), id, body.Stream); err != nil {
		return err
	}
	c.logger.Info("gateway left", zap.String("gateway_id", id))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (c *Control) listGateways(w http.ResponseWriter, r *http.Request) error {
	if err := allow(r, access{want: rightGateways}); err != nil {
		return err
	}
	latest, err := c.store.Revision(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, controlapi.GatewayList{Revision: latest, Gateways: c.gateways.list(r.Context(), latest)})
	return nil
}
