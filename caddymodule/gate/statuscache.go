package gate

import (
	"context"
	"fmt"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"golang.org/x/sync/singleflight"

	"github.com/conngate/conngate/store"
)

// unknownTTL is how long "no such connection" is remembered: long enough to
// absorb a burst of requests with a bogus id, short enough not to matter.
const unknownTTL = 5 * time.Second

// statusEntry keeps the id beside the status: ristretto stores hashes of
// keys, not keys, so two ids can collide and every hit is checked.
type statusEntry struct {
	id     string
	status store.Status
}

// statusCache answers "what is this connection's status" from memory, and
// on a miss asks the control endpoint once however many requests are waiting.
type statusCache struct {
	entries *ristretto.Cache[string, statusEntry]
	flights singleflight.Group
	lookup  func(ctx context.Context, id string) (store.Status, error)
	ttl     time.Duration
	timeout time.Duration
	// base is the context lookups run in: it outlives any one request (a
	// request that gives up must not fail the others sharing its lookup) and
	// ends with the module.
	base context.Context
}

func newStatusCache(base context.Context, lookup func(context.Context, string) (store.Status, error), size int, ttl, timeout time.Duration) (*statusCache, error) {
	entries, err := ristretto.NewCache(&ristretto.Config[string, statusEntry]{
		NumCounters:        int64(size) * 10,
		MaxCost:            int64(size),
		BufferItems:        64,
		IgnoreInternalCost: true,
	})
	if err != nil {
		return nil, fmt.Errorf("creating status cache: %w", err)
	}
	return &statusCache{entries: entries, lookup: lookup, ttl: ttl, timeout: timeout, base: base}, nil
}

func (c *statusCache) get(ctx context.Context, id string) (store.Status, error) {
	if e, ok := c.entries.Get(id); ok && e.id == id {
		return e.status, nil
	}
	results := c.flights.DoChan(id, func() (any, error) {
		lctx, cancel := context.WithTimeout(c.base, c.timeout)
		defer cancel()
		st, err := c.lookup(lctx, id)
		if err != nil {
			return nil, err
		}
		ttl := c.ttl
		if st == statusUnknown {
			ttl = min(ttl, unknownTTL)
		}
		c.entries.SetWithTTL(id, statusEntry{id: id, status: st}, 1, ttl)
		// Set is asynchronous: wait, so that requests arriving just after
		// this flight ends find the entry instead of starting another lookup.
		c.entries.Wait()
		return st, nil
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

func (c *statusCache) close() { c.entries.Close() }
