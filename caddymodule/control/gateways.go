package control

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/conngate/conngate/caddymodule/controlapi"
)

// registries shares one gateway registry among the configs that use the same
// store: a config reload ends every change stream, and the gateways
// reconnect within a second; a registry of the new config's own would know
// none of them meanwhile, and ?wait=applied would wait for nobody.
var registries = caddy.NewUsagePool()

type pooledRegistry struct{ *gatewayRegistry }

func (pooledRegistry) Destruct() error { return nil }

// loadRegistry returns the registry shared under key (the store's config).
func loadRegistry(key string) (*gatewayRegistry, error) {
	v, _, err := registries.LoadOrNew(key, func() (caddy.Destructor, error) {
		return pooledRegistry{newGatewayRegistry()}, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(pooledRegistry).gatewayRegistry, nil
}

// gatewayGrace is how long a gateway whose streams all ended still counts:
// a reconnecting gateway (after a reload, a network blip) is waited for by
// ?wait=applied rather than forgotten.
const gatewayGrace = 10 * time.Second

// gatewayRegistry knows which gateways are subscribed to the change stream
// and which revision each has applied, so that a change can wait until every
// gateway has applied it.
type gatewayRegistry struct {
	mu       sync.Mutex
	gateways map[string]*gatewayState
	// updated is closed and replaced whenever an applied revision moves or
	// a gateway goes away: waiters re-check then.
	updated chan struct{}
}

type gatewayState struct {
	id          string
	streams     int // a gateway may briefly hold two while it reconnects
	applied     uint64
	connectedAt time.Time
	lastAckAt   time.Time
	// goneAt is when its last stream ended; zero while it has one. It is
	// forgotten gatewayGrace after.
	goneAt time.Time
}

func newGatewayRegistry() *gatewayRegistry {
	return &gatewayRegistry{gateways: map[string]*gatewayState{}, updated: make(chan struct{})}
}

// broadcast must be called with mu held.
func (g *gatewayRegistry) broadcast() {
	close(g.updated)
	g.updated = make(chan struct{})
}

// subscribe records a stream of gateway id; the returned func ends it.
func (g *gatewayRegistry) subscribe(id string) (unsubscribe func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.forgetGone(time.Now())
	st := g.gateways[id]
	if st == nil {
		st = &gatewayState{id: id, connectedAt: time.Now().UTC()}
		g.gateways[id] = st
	}
	st.streams++
	st.goneAt = time.Time{}
	return func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		if st.streams--; st.streams == 0 {
			st.goneAt = time.Now()
			g.broadcast()
		}
	}
}

// forgetGone drops the gateways gone for longer than gatewayGrace. It must
// be called with mu held.
func (g *gatewayRegistry) forgetGone(now time.Time) {
	for id, st := range g.gateways {
		if st.streams == 0 && now.Sub(st.goneAt) > gatewayGrace {
			delete(g.gateways, id)
		}
	}
}

// ack records that gateway id has applied every change up to revision.
func (g *gatewayRegistry) ack(id string, revision uint64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.gateways[id]
	if st == nil || st.streams == 0 {
		return false // acknowledgements count only while subscribed
	}
	st.lastAckAt = time.Now().UTC()
	if revision > st.applied {
		st.applied = revision
		g.broadcast()
	}
	return true
}

// waitApplied waits until every gateway subscribed now has applied revision,
// or until ctx ends. It returns how many gateways were waited for and the
// ids of those that had not applied it.
func (g *gatewayRegistry) waitApplied(ctx context.Context, revision uint64) (total int, pending []string) {
	g.mu.Lock()
	g.forgetGone(time.Now())
	ids := make([]string, 0, len(g.gateways))
	for id := range g.gateways {
		ids = append(ids, id)
	}
	g.mu.Unlock()
	slices.Sort(ids)

	for {
		g.mu.Lock()
		pending = pending[:0]
		for _, id := range ids {
			// A gateway that went away has not applied it, as far as anyone
			// can tell: it stays pending.
			if st := g.gateways[id]; st == nil || st.applied < revision {
				pending = append(pending, id)
			}
		}
		updated := g.updated
		g.mu.Unlock()
		if len(pending) == 0 {
			return len(ids), []string{}
		}
		select {
		case <-updated:
		case <-ctx.Done():
			return len(ids), pending
		}
	}
}

// list is every subscribed gateway, by id, with its lag behind latest.
func (g *gatewayRegistry) list(latest uint64) []controlapi.Gateway {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.forgetGone(time.Now())
	views := make([]controlapi.Gateway, 0, len(g.gateways))
	for _, st := range g.gateways {
		if st.streams == 0 {
			continue // reconnecting, maybe: ?wait=applied still waits for it
		}
		v := controlapi.Gateway{ID: st.id, Streams: st.streams, AppliedRevision: st.applied, ConnectedAt: st.connectedAt}
		if latest > st.applied {
			v.LagRevisions = latest - st.applied
		}
		if !st.lastAckAt.IsZero() {
			t := st.lastAckAt
			v.LastAckAt = &t
		}
		views = append(views, v)
	}
	slices.SortFunc(views, func(a, b controlapi.Gateway) int { return strings.Compare(a.ID, b.ID) })
	return views
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
	if !c.gateways.ack(id, body.Revision) {
		return controlapi.Errorf(http.StatusNotFound, controlapi.CodeGatewayNotSubscribed,
			"Gateway %s has no open change stream; acknowledgements count only while it is subscribed.", id)
	}
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
	writeJSON(w, http.StatusOK, controlapi.GatewayList{Revision: latest, Gateways: c.gateways.list(latest)})
	return nil
}
