package control

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/conngate/conngate/store"
)

// shared holds, per store, what every config on that store shares across
// reloads: a reload ends every change stream and the gateways reconnect
// within a second; a registry of the new config's own would know none of
// them meanwhile, and ?wait=applied would wait for nobody. The change feed
// and the stream counts are per store for the same reason.
var shared = caddy.NewUsagePool()

type sharedState struct {
	gateways *gatewayRegistry
	feed     *changeFeed
	streams  *streamLimiter
	// peopleTurns lets only so many people's streams write at once, and
	// peoplePace spaces their turns (see eventStream.turn).
	peopleTurns chan struct{}
	peoplePace  pacer
	// storeOutageLogged is when a store outage was last logged (unix ns).
	storeOutageLogged atomic.Int64
	// approvals makes a consent form submitted twice give one connection.
	approvals approvals
}

// peopleWriting is how many people's streams may write at once, and
// peopleGap the least time between the starts of two of their turns: the
// writes to thousands of open pages after a change take at most a part of
// one core, and never the core a gateway's stream needs. (Measured with
// 2,000 streams on two cores: four at a time without a gap put the p99 of
// disable-to-401 at 64-95 ms, one at a time at 34 ms.)
const (
	peopleWriting = 1
	peopleGap     = 100 * time.Microsecond
)

// pacer spaces events at least gap apart.
type pacer struct {
	mu   sync.Mutex
	next time.Time
}

// wait returns once gap has passed since the previous call returned.
func (p *pacer) wait(gap time.Duration) {
	p.mu.Lock()
	now := time.Now()
	at := p.next
	if at.Before(now) {
		at = now
	}
	p.next = at.Add(gap)
	p.mu.Unlock()
	if d := at.Sub(now); d > 0 {
		time.Sleep(d)
	}
}

func (s *sharedState) Destruct() error {
	s.feed.close()
	s.gateways.close()
	return nil
}

// loadShared returns the state shared under key (the store's config),
// making it for st on first use. The settings given are those of the config
// provisioned last.
func loadShared(ctx context.Context, key string, st store.Store, retention time.Duration, logger *zap.Logger) (*sharedState, error) {
	v, _, err := shared.LoadOrNew(key, func() (caddy.Destructor, error) {
		reg := newGatewayRegistry(st, logger)
		reg.retention.Store(int64(retention))
		if err := reg.remember(ctx); err != nil {
			return nil, err
		}
		feed, err := newChangeFeed(ctx, st, logger)
		if err != nil {
			return nil, err
		}
		go reg.run()
		return &sharedState{gateways: reg, feed: feed, streams: newStreamLimiter(), peopleTurns: make(chan struct{}, peopleWriting)}, nil
	})
	if err != nil {
		return nil, err
	}
	state := v.(*sharedState)
	state.gateways.retention.Store(int64(retention))
	return state, nil
}
