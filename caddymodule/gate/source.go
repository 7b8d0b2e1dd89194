package gate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/dgraph-io/ristretto/v2"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"

	"github.com/conngate/conngate/store"
)

// sources holds one statusSource per list of control endpoints and gateway
// id, shared by every gate that names them and kept across config reloads,
// so that a reload neither empties the cache nor opens a second change
// stream.
var sources = caddy.NewUsagePool()

// unknownTTL is how long "no such connection" is remembered: long enough to
// absorb a burst of requests with a bogus id, short enough not to matter.
const unknownTTL = 5 * time.Second

// freshnessPolicy is one gate's rules for using and filling the cache.
type freshnessPolicy struct {
	ttl, disconnectedTTL, staleIfError, timeout time.Duration
}

// statusEntry keeps the id beside the status: ristretto stores hashes of
// keys, not keys, so two ids can collide and every hit is checked.
type statusEntry struct {
	id       string
	status   store.Status
	revision uint64
	storedAt int64 // unix nanoseconds
}

// statusSource is one list of control endpoints as this process sees it:
// the status cache, the lookups that fill it and the change stream that
// keeps it current, each failing over between the endpoints.
type statusSource struct {
	cache     *ristretto.Cache[string, statusEntry]
	flights   singleflight.Group
	client    *controlClient
	gatewayID string
	// label names the source in metrics and logs: its control URLs,
	// separated by spaces.
	label   string
	recent  recentChanges
	logger  *zap.Logger
	metrics *metrics

	// Stream state, read on the hot path.
	connected atomic.Bool
	// lookupsFailing is set from a failed lookup to the next that works.
	lookupsFailing atomic.Bool
	downSince      atomic.Int64 // unix nanoseconds; meaningful while !connected
	applied        atomic.Uint64
	stream         streamState // see stream.go

	// writes serialises every write to the cache, and each write waits
	// until ristretto has stored it. ristretto stores new keys in the
	// background and drops the second of two queued inserts for one key,
	// whatever ShouldUpdate says; one write at a time, each visible before
	// the next, keeps an older status from winning. closed (under writes)
	// stops writes once Destruct has begun: writing to a closed ristretto
	// cache panics.
	writes sync.Mutex
	closed bool

	idleTimeout time.Duration
	now         func() time.Time // every decision by time reads this clock
	// eventTTL is the ttl given to entries set from stream events: the ttl
	// of the gate provisioned last.
	eventTTL    atomic.Int64
	stop        context.CancelFunc
	stopped     chan struct{}
	leaving     sync.WaitGroup // leaves posted to endpoints the stream moved from
	startStream func()
	startOnce   sync.Once
	closeOnce   sync.Once
}

type sourceConfig struct {
	controlURLs           []string // in the order of preference
	controlKey, gatewayID string
	cacheSize             int
	idleTimeout           time.Duration
	now                   func() time.Time // not part of the pool key: the first user's clock serves all
}

// poolKey names the source: every control URL, in order (another order
// prefers another endpoint), the gateway id and the key.
func (c sourceConfig) poolKey() string {
	key := sha256.Sum256([]byte(c.controlKey))
	return strings.Join(c.controlURLs, " ") + "\n" + c.gatewayID + "\n" + hex.EncodeToString(key[:8])
}

// loadSource returns the shared source for cfg, starting it on first use.
func loadSource(cfg sourceConfig, logger *zap.Logger, m *metrics) (*statusSource, string, error) {
	key := cfg.poolKey()
	v, loaded, err := sources.LoadOrNew(key, func() (caddy.Destructor, error) {
		return newStatusSource(cfg, newControlClient(cfg.controlURLs, cfg.controlKey), logger, m)
	})
	if err != nil {
		return nil, "", err
	}
	src := v.(*statusSource)
	if loaded && src.idleTimeout != cfg.idleTimeout {
		if _, err := sources.Delete(key); err != nil {
			return nil, "", err
		}
		return nil, "", fmt.Errorf("stream_idle_timeout %s: the change stream to %s as gateway_id %q runs with %s, set by another "+
			"connection_gate or by the config before this reload, and it keeps running across reloads; give every gate on that "+
			"stream the same value, or restart Caddy to change it", cfg.idleTimeout, src.label, cfg.gatewayID, src.idleTimeout)
	}
	if loaded && src.cache.MaxCost() != int64(cfg.cacheSize) {
		src.cache.UpdateMaxCost(int64(cfg.cacheSize))
	}
	return src, key, nil
}

// newStatusSource makes a source that asks client, which it names after the
// client's endpoints in logs and metrics. Its change stream opens on start.
func newStatusSource(cfg sourceConfig, client *controlClient, logger *zap.Logger, m *metrics) (*statusSource, error) {
	cache, err := ristretto.NewCache(&ristretto.Config[string, statusEntry]{
		NumCounters:        cacheCounters(int64(cfg.cacheSize)),
		MaxCost:            int64(cfg.cacheSize),
		BufferItems:        64,
		IgnoreInternalCost: true,
		// Never let an older status replace a newer one, whichever of a
		// lookup and a stream event lands last.
		ShouldUpdate: func(next, prev statusEntry) bool { return next.revision >= prev.revision },
	})
	if err != nil {
		return nil, fmt.Errorf("creating status cache: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	label := strings.Join(client.endpoints.urls, " ")
	s := &statusSource{
		cache:       cache,
		client:      client,
		gatewayID:   cfg.gatewayID,
		label:       label,
		logger:      logger.With(zap.String("control_url", label), zap.String("gateway_id", cfg.gatewayID)),
		metrics:     m,
		idleTimeout: cfg.idleTimeout,
		now:         cfg.now,
		stop:        cancel,
		stopped:     make(chan struct{}),
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.downSince.Store(s.now().UnixNano())
	s.stream.instance = newInstanceID()
	client.endpoints.report = s.failedOver
	if len(client.endpoints.urls) > 1 {
		m.failoverCounter(s, failoverStatuses) // exported from 0, so that a rate of it works
	}
	s.startStream = func() { go s.subscribe(ctx) }
	return s, nil
}

// start opens the change stream, once however many gates ask.
func (s *statusSource) start() { s.startOnce.Do(s.startStream) }

// Destruct stops the stream when the last gate using the source goes away.
func (s *statusSource) Destruct() error {
	s.closeOnce.Do(func() {
		s.leave()
		s.stop()
		s.startOnce.Do(func() { close(s.stopped) }) // never started: no stream to wait for
		<-s.stopped
		s.leaving.Wait() // their context has ended with the stream's
		s.writes.Lock()
		s.closed = true
		s.writes.Unlock()
		s.cache.Close()
	})
	return nil
}

// freshness says how an entry may be used at now.
type freshness int

const (
	fresh   freshness = iota // serve it
	stale                    // look it up again; serve it only if that fails
	expired                  // look it up again; never serve it
)

// judge applies the freshness rule to e with the stream as it is now.
func (s *statusSource) judge(e statusEntry, p *freshnessPolicy) freshness {
	return p.judge(e.storedAt, s.connected.Load(), s.downSince.Load(), s.now)
}

// judge is the freshness rule. While the stream is connected every change
// reaches the cache, so an entry is fresh for as long as it is cached (until
// evicted by size, or its ttl if one is configured). While the stream is
// down an entry was last known to be right at the later of its storing and
// the disconnection (downSince); it is fresh for disconnectedTTL after that
// and servable on lookup errors for staleIfError more, both bounds
// included. A bound of 0 is none, not an instant: disconnectedTTL 0 makes
// no entry fresh while the stream is down, staleIfError 0 none stale.
// storedAt and downSince are unix nanoseconds; the clock is read only while
// the stream is down, so that the hot path does not pay for it.
func (p *freshnessPolicy) judge(storedAt int64, connected bool, downSince int64, now func() time.Time) freshness {
	if connected {
		return fresh
	}
	age := time.Duration(now().UnixNano() - max(storedAt, downSince))
	switch {
	case p.disconnectedTTL > 0 && age <= p.disconnectedTTL:
		return fresh
	case p.staleIfError > 0 && age <= p.disconnectedTTL+p.staleIfError:
		return stale
	}
	return expired
}

// lookup asks the control endpoint for id's status, once however many
// requests are waiting, and caches the answer: by default with no time
// limit, so that a gateway warmed in one burst does not look everything up
// again in one burst a ttl later. While the stream is connected the stream
// keeps the entry current; while it is down judge stops serving it after
// disconnectedTTL+staleIfError (then it is looked up again), and a stream
// that resumes replays what it missed, or resets the cache.
func (s *statusSource) lookup(ctx context.Context, id string, p *freshnessPolicy) (store.Status, error) {
	results := s.flights.DoChan(id, func() (any, error) {
		started := s.now()
		// Not the request's context: a client that gives up must not fail
		// the other requests sharing this lookup.
		lctx, cancel := context.WithTimeout(context.Background(), p.timeout)
		defer cancel()
		e, err := s.client.status(lctx, id)
		s.metrics.observeLookup(s.now().Sub(started), err)
		s.noteLookup(err)
		if err != nil {
			return nil, err
		}
		return s.store(id, e, p.ttl, started), nil
	})
	select {
	case res := <-results:
		if res.Err != nil {
			return "", res.Err
		}
		return res.Val.(store.Status), nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// noteLookup logs when lookups start failing and when they work again, once
// each: during an outage every request would otherwise log a line, and the
// lookup metrics already count them.
func (s *statusSource) noteLookup(err error) {
	switch {
	case err != nil && s.lookupsFailing.CompareAndSwap(false, true):
		s.logger.Error("status lookups failing: uncached statuses get 503, cached ones are served within disconnected_ttl and stale_if_error",
			zap.Error(err))
	case err == nil && s.lookupsFailing.CompareAndSwap(true, false):
		s.logger.Info("status lookups work again")
	}
}

// store caches a looked-up status and returns the status to answer with.
// A change seen on the stream since (recent) wins over the lookup's answer;
// an answer from before a reset is used for this request but not cached.
func (s *statusSource) store(id string, e statusEntry, ttl time.Duration, started time.Time) store.Status {
	s.writes.Lock()
	defer s.writes.Unlock()
	if rc, ok := s.recent.newer(id, e.revision); ok {
		e.status, e.revision = rc.status, rc.revision // a change overtook the answer
	}
	if s.closed || s.recent.startedBefore(started) {
		return e.status
	}
	if e.status == statusUnknown && (ttl == 0 || ttl > unknownTTL) {
		ttl = unknownTTL
	}
	e.storedAt = s.now().UnixNano()
	s.cache.SetWithTTL(id, e, 1, ttl)
	// Wait until it is stored: the next write for this id is then an
	// update, which ristretto applies at once and checks with ShouldUpdate,
	// and requests arriving just after this find the entry.
	s.cache.Wait()
	return e.status
}

// apply puts a change from the stream into the cache: no lookup needed. An
// id not in the cache is only remembered in recent, where a lookup under way
// for it will find the change.
func (s *statusSource) apply(c store.Change) {
	now := s.now()
	s.writes.Lock()
	defer s.writes.Unlock()
	s.recent.record(c, now)
	if s.closed {
		return
	}
	if cur, ok := s.cache.Get(c.ID); ok && cur.id == c.ID {
		e := statusEntry{id: c.ID, status: c.Status, revision: c.Revision, storedAt: now.UnixNano()}
		s.cache.SetWithTTL(c.ID, e, 1, time.Duration(s.eventTTL.Load())) // an update: applied at once
	}
}

// reset drops everything derived from the stream before a reset event.
func (s *statusSource) reset() {
	s.writes.Lock()
	defer s.writes.Unlock()
	s.recent.clearAll(s.now())
	if !s.closed {
		s.cache.Clear()
	}
}
