package gate

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/conngate/conngate/caddymodule/control/controltest"
	"github.com/conngate/conngate/caddymodule/controlapi"
	"github.com/conngate/conngate/store"
	"github.com/conngate/conngate/store/boltstore"
)

const within = 3 * time.Second

func expectStatus(t *testing.T, g *Gate, token string, status int, reason string) {
	t.Helper()
	res := send(t, g, bearer(token))
	if res.status != status || (reason != "" && res.body.Reason != reason) {
		t.Fatalf("gateway %s: %d %q, want %d %q", g.GatewayID, res.status, res.body.Reason, status, reason)
	}
}

// eventuallyStatus waits for a pushed change to show, sending one request
// per millisecond or so as a client would.
func eventuallyStatus(t *testing.T, g *Gate, token string, status int) {
	t.Helper()
	eventually(t, within, fmt.Sprintf("gateway %s answers %d", g.GatewayID, status), func() bool {
		return send(t, g, bearer(token)).status == status
	})
}

// Three gateways, one control endpoint: a change reaches every gateway
// without waiting for ttl (an hour here).
func TestChangesReachEveryGateway(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	var gates []*Gate
	for i := range 3 {
		gates = append(gates, newGate(t, s, func(g *Gate) { g.GatewayID = fmt.Sprintf("gw-%d", i) }))
	}
	c := s.Create(t, "org-1")
	for _, g := range gates {
		expectStatus(t, g, c.AccessToken, 200, "")
	}
	s.Act(t, c.Connection.ID, store.ActionDisable)
	for _, g := range gates {
		eventuallyStatus(t, g, c.AccessToken, 401)
		expectStatus(t, g, c.AccessToken, 401, "connection_disabled")
	}
	s.Act(t, c.Connection.ID, store.ActionEnable)
	for _, g := range gates {
		eventuallyStatus(t, g, c.AccessToken, 200)
	}
	del := s.Act(t, c.Connection.ID, store.ActionDelete)
	for _, g := range gates {
		eventuallyStatus(t, g, c.AccessToken, 401)
		expectStatus(t, g, c.AccessToken, 401, "connection_deleted")
		// Cached at the deletion's revision, which nothing older can
		// replace: the answer stays.
		if e, ok := g.source.cache.Get(c.Connection.ID); !ok || e.status != store.StatusDeleted || e.revision != del.Revision {
			t.Fatalf("gateway %s cached %+v (%v), want deleted at revision %d", g.GatewayID, e, ok, del.Revision)
		}
	}
}

// wait=applied returns once all three gateways have applied the change, and
// with one gateway's stream stalled, at the timeout, naming that gateway.
func TestWaitAppliedWithRealGateways(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	stall := newControlProxy(t, s.URL)
	var gates []*Gate
	for i := range 3 {
		gates = append(gates, newGate(t, s, func(g *Gate) {
			g.GatewayID = fmt.Sprintf("gw-%d", i)
			if i == 2 {
				g.ControlURL = stall.URL
			}
		}))
	}
	c := s.Create(t, "org-1")
	for _, g := range gates {
		expectStatus(t, g, c.AccessToken, 200, "")
	}

	type applied struct {
		Gateways     int      `json:"gateways"`
		Acknowledged int      `json:"acknowledged"`
		Pending      []string `json:"pending"`
	}
	var got applied
	s.Do(t, s.AdminKey, "POST", "/v1/connections/"+c.Connection.ID+"/disable?wait=applied&timeout=2s", nil, &got)
	if got.Gateways != 3 || got.Acknowledged != 3 || len(got.Pending) != 0 {
		t.Fatalf("all three: %+v", got)
	}
	// When the call returns, every gateway refuses the token: no polling.
	for _, g := range gates {
		expectStatus(t, g, c.AccessToken, 401, "connection_disabled")
	}

	stall.stall.engage()
	start := time.Now()
	s.Do(t, s.AdminKey, "POST", "/v1/connections/"+c.Connection.ID+"/enable?wait=applied&timeout=500ms", nil, &got)
	if took := time.Since(start); took < 500*time.Millisecond || took > 2*time.Second {
		t.Errorf("returned after %s, want at the 500ms timeout", took)
	}
	if got.Gateways != 3 || got.Acknowledged != 2 || len(got.Pending) != 1 || got.Pending[0] != "gw-2/"+gates[2].source.stream.instance {
		t.Fatalf("one stalled: %+v", got)
	}
	stall.stall.release()
	eventuallyStatus(t, gates[2], c.AccessToken, 200)
}

// A change made while a gateway's stream is down is applied when the stream
// resumes: replay from the last applied revision, no missed revocation.
// disconnected_ttl is an hour here, so only the replay can change the answer.
func TestChangeWhileStreamDownIsReplayed(t *testing.T) {
	dir := t.TempDir()
	s := controltest.Start(t, controltest.Options{Dir: dir})
	addr := strings.TrimPrefix(s.URL, "http://")
	g := newGate(t, s, func(g *Gate) { g.DisconnectedTTL = new(caddy.Duration(MaxDisconnectedTTL)) })
	c := s.Create(t, "org-1")
	expectStatus(t, g, c.AccessToken, 200, "")

	s.Stop()
	eventually(t, within, "stream noticed the stop", func() bool { return !g.source.connected.Load() })
	disableInStore(t, dir, c.Connection.ID)
	expectStatus(t, g, c.AccessToken, 200, "") // still the cached status: nothing told the gateway yet

	controltest.Start(t, controltest.Options{Dir: dir, Addr: addr, AdminKey: s.AdminKey, GatewayKey: s.GatewayKey})
	waitConnected(t, g)
	expectStatus(t, g, c.AccessToken, 401, "connection_disabled")
}

// disableInStore changes a connection behind the control endpoint's back, as
// another control instance sharing the store would.
func disableInStore(t *testing.T, dir, id string) {
	t.Helper()
	st, err := boltstore.Open(filepath.Join(dir, "conngate.db"), boltstore.Options{ChangeLogSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, a := range []store.Action{store.ActionDisable, store.ActionEnable, store.ActionDisable} {
		if _, _, err := st.Apply(context.Background(), id, a, store.Actor{ID: "another-control"}); err != nil {
			t.Fatal(err)
		}
	}
}

// When the control endpoint can no longer replay from the gateway's revision
// it sends reset, and the gateway drops its whole cache.
func TestResetClearsTheCache(t *testing.T) {
	dir := t.TempDir()
	s := controltest.Start(t, controltest.Options{Dir: dir, ChangeLogSize: 2})
	addr := strings.TrimPrefix(s.URL, "http://")
	g := newGate(t, s, func(g *Gate) { g.DisconnectedTTL = new(caddy.Duration(MaxDisconnectedTTL)) })
	c := s.Create(t, "org-1")
	expectStatus(t, g, c.AccessToken, 200, "")

	s.Stop()
	eventually(t, within, "stream noticed the stop", func() bool { return !g.source.connected.Load() })
	disableInStore(t, dir, c.Connection.ID) // three changes: more than the log keeps

	controltest.Start(t, controltest.Options{Dir: dir, Addr: addr, ChangeLogSize: 2, AdminKey: s.AdminKey, GatewayKey: s.GatewayKey})
	waitConnected(t, g)
	if _, ok := g.source.cache.Get(c.Connection.ID); ok {
		t.Fatal("reset left the cached status in place")
	}
	expectStatus(t, g, c.AccessToken, 401, "connection_disabled")
}

// A reload provisions the new gate before cleaning up the old one: both must
// share one cache and one stream, and the stream must survive the cleanup.
func TestReloadKeepsCacheAndStream(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	p := newControlProxy(t, s.URL)
	tweak := func(g *Gate) { g.ControlURL = p.URL; g.GatewayID = "reloaded" }
	old := newGate(t, s, tweak)
	c := s.Create(t, "org-1")
	expectStatus(t, old, c.AccessToken, 200, "")
	lookups := p.lookups.Load()

	fresh := newGate(t, s, tweak)
	if old.source != fresh.source {
		t.Fatal("the reloaded gate has a source of its own")
	}
	old.Cleanup()
	expectStatus(t, fresh, c.AccessToken, 200, "")
	if n := p.lookups.Load(); n != lookups {
		t.Errorf("the reloaded gate looked the status up again (%d lookups, want %d)", n, lookups)
	}
	var list struct {
		Gateways []struct {
			ID      string `json:"id"`
			Streams int    `json:"streams"`
		} `json:"gateways"`
	}
	s.Do(t, s.AdminKey, "GET", "/v1/gateways", nil, &list)
	if len(list.Gateways) != 1 || list.Gateways[0].Streams != 1 {
		t.Fatalf("streams at the control endpoint after reload: %+v", list.Gateways)
	}
	s.Act(t, c.Connection.ID, store.ActionDisable)
	eventuallyStatus(t, fresh, c.AccessToken, 401)
}

// A lookup answered before a change but finishing after the change's event
// must not put the older status back.
func TestSlowLookupDoesNotUndoAChange(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	p := newControlProxy(t, s.URL)
	c := s.Create(t, "org-1") // before the gate: no event brings it into the cache
	g := newGate(t, s, func(g *Gate) { g.ControlURL = p.URL })
	p.lookupHold.engage()

	first := make(chan int)
	go func() { first <- send(t, g, bearer(c.AccessToken)).status }()
	eventually(t, within, `the lookup has read "active" and is held`, func() bool { return p.answered.Load() == 1 })
	d := s.Act(t, c.Connection.ID, store.ActionDisable)
	eventually(t, within, "the gateway applied the change", func() bool { return g.source.applied.Load() >= d.Revision })
	p.lookupHold.release()
	<-first // answered by the held lookup, which began before the change
	expectStatus(t, g, c.AccessToken, 401, "connection_disabled")
	if n := p.lookups.Load(); n != 1 {
		t.Errorf("%d lookups, want the one held", n)
	}
}

// While the stream is down: cached statuses are served for disconnected_ttl,
// then looked up again; with the control endpoint unreachable they are served
// for stale_if_error more, then 503. Never a 200 without a status. The
// gate's clock moves only when the test moves it.
func TestControlDown(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	uncached := s.Create(t, "org-1") // before the gate: no event brings it into the cache
	clock := newFakeClock(time.Now())
	g := newGate(t, s, func(g *Gate) {
		g.now = clock.Now
		g.DisconnectedTTL = new(caddy.Duration(time.Second))
		g.StaleIfError = new(caddy.Duration(30 * time.Second))
		g.ControlTimeout = caddy.Duration(200 * time.Millisecond)
	})
	cached := s.Create(t, "org-1")
	expectStatus(t, g, cached.AccessToken, 200, "")

	s.Stop()
	eventually(t, within, "stream noticed the stop", func() bool { return !g.source.connected.Load() })
	expectStatus(t, g, cached.AccessToken, 200, "")
	res := send(t, g, bearer(uncached.AccessToken))
	if res.status != 503 || res.upstream != nil || res.body.Reason != "status_unavailable" || res.header.Get("Retry-After") == "" {
		t.Fatalf("uncached with control down: %d %+v Retry-After=%q", res.status, res.body, res.header.Get("Retry-After"))
	}
	clock.Advance(2 * time.Second)
	expectStatus(t, g, cached.AccessToken, 200, "") // stale, within stale_if_error
	clock.Advance(30 * time.Second)
	expectStatus(t, g, cached.AccessToken, 503, "status_unavailable")
}

// disconnected_ttl 0: while the stream is down no status is served from
// memory. Every request looks its status up, so a change the stream can no
// longer bring is seen at once; when the lookup fails, stale_if_error
// decides: 0 answers 503, a grace serves the cached status. The gate's clock
// stands still: with any disconnected_ttl above 0 the cached statuses would
// be served without a lookup.
func TestDisconnectedTTLZeroLooksEveryStatusUp(t *testing.T) {
	tests := []struct {
		name         string
		staleIfError time.Duration
		lookupFailed int
	}{
		{"stale_if_error 0: 503", 0, 503},
		{"stale_if_error 30s: the cached status", 30 * time.Second, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := controltest.Start(t, controltest.Options{})
			f := newFront(t, s)
			clock := newFakeClock(time.Now())
			g := newGate(t, s, func(g *Gate) {
				g.ControlURL = f.URL
				g.now = clock.Now
				g.DisconnectedTTL = new(caddy.Duration(0))
				g.StaleIfError = new(caddy.Duration(tt.staleIfError))
				g.ControlTimeout = caddy.Duration(200 * time.Millisecond)
			})
			kept, changed := s.Create(t, "org-1"), s.Create(t, "org-1")
			expectStatus(t, g, kept.AccessToken, 200, "")
			expectStatus(t, g, changed.AccessToken, 200, "")

			f.dropStreams()
			eventually(t, within, "stream noticed the drop", func() bool { return !g.source.connected.Load() })
			before := f.lookups.Load()
			expectStatus(t, g, kept.AccessToken, 200, "")
			expectStatus(t, g, kept.AccessToken, 200, "")
			if n := f.lookups.Load() - before; n != 2 {
				t.Fatalf("%d lookups for 2 requests with the stream down, want one each", n)
			}
			s.Act(t, changed.Connection.ID, store.ActionDisable) // no stream to bring it
			expectStatus(t, g, changed.AccessToken, 401, "connection_disabled")

			f.failLookups.Store(true)
			res := send(t, g, bearer(kept.AccessToken))
			if res.status != tt.lookupFailed {
				t.Fatalf("cached status, its lookup failing: %d %+v, want %d", res.status, res.body, tt.lookupFailed)
			}
		})
	}
}

// Each control endpoint has a source of its own.
func TestOneSourcePerControlEndpoint(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	g := newGate(t, s, nil)
	if g.source.gatewayID == "" || !strings.Contains(g.sourceKey, s.URL) {
		t.Fatalf("source key %q", g.sourceKey)
	}
	other := controltest.Start(t, controltest.Options{})
	h := newGate(t, other, nil)
	if g.source == h.source {
		t.Fatal("two control endpoints share a source")
	}
}

// A store restored from a backup reuses revisions for other changes. The
// gateway had applied up to R+2; the restored store is at R and, before the
// gateway reconnects, writes a disable as R+1 and another change as R+2.
// Resuming "after R+2" would skip the disable; the position's fingerprint
// tells the control endpoint that the gateway's history is another one, and
// the gateway gets a reset and refuses the token.
func TestResumeIntoARestoredStoreResets(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "conngate.db")
	s := controltest.Start(t, controltest.Options{Dir: dir})
	addr := strings.TrimPrefix(s.URL, "http://")
	restart := func() *controltest.Server {
		return controltest.Start(t, controltest.Options{Dir: dir, Addr: addr, AdminKey: s.AdminKey, GatewayKey: s.GatewayKey})
	}
	g := newGate(t, s, func(g *Gate) { g.DisconnectedTTL = new(caddy.Duration(MaxDisconnectedTTL)) })
	c := s.Create(t, "org-1")
	expectStatus(t, g, c.AccessToken, 200, "")

	s.Stop() // a backup, taken while stopped
	backup, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	s2 := restart()
	waitConnected(t, g)
	s2.Create(t, "org-1") // R+1 and R+2: the gateway applies both
	last := s2.Create(t, "org-1")
	eventually(t, within, "the gateway applied R+2", func() bool { return g.source.applied.Load() == last.Connection.Revision })

	s2.Stop()
	eventually(t, within, "stream noticed the stop", func() bool { return !g.source.connected.Load() })
	if err := os.WriteFile(db, backup, 0o600); err != nil { // the restore
		t.Fatal(err)
	}
	st, err := boltstore.Open(db, boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	d, _, err := st.Apply(context.Background(), c.Connection.ID, store.ActionDisable, store.Actor{ID: "restored"}) // R+1 again
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Create(context.Background(), store.NewConnection{Name: "x", OrgID: "org-1", UserID: "u"}, store.Actor{ID: "restored"}); err != nil { // R+2 again
		t.Fatal(err)
	}
	st.Close()
	if d.Revision != last.Connection.Revision-1 {
		t.Fatalf("the restored store wrote the disable as %d, want %d (the scenario needs reused revisions)", d.Revision, last.Connection.Revision-1)
	}

	restart()
	waitConnected(t, g)
	expectStatus(t, g, c.AccessToken, 401, "connection_disabled")
}

// Acknowledgements are spaced ackGap apart, however fast changes come, and
// the last revision is still acknowledged: a burst of changes costs the
// control endpoint a few acknowledgements, not one per change.
func TestAcknowledgementsAreSpaced(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	proxy := newControlProxy(t, s.URL)
	g := newGate(t, s, func(g *Gate) { g.ControlURL = proxy.URL })
	c := s.Create(t, "org-1").Connection
	before := proxy.acks.Load()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				s.Act(t, c.ID, []store.Action{store.ActionDisable, store.ActionEnable}[(w+i)%2])
			}
		}()
	}
	wg.Wait()
	var list controlapi.GatewayList
	eventually(t, within, "the gateway acknowledged the latest revision", func() bool {
		s.Do(t, s.AdminKey, "GET", "/v1/gateways", nil, &list)
		return len(list.Gateways) == 1 && list.Gateways[0].AppliedRevision == list.Revision
	})
	took := time.Since(start)
	acks := proxy.acks.Load() - before
	const spacing = 5 * time.Millisecond // ackGap, as the test's own figure
	if limit := int32(took/spacing) + 2; acks > limit {
		t.Errorf("%d acknowledgements in %s, more than one per %s (%d)", acks, took, spacing, limit)
	}
	t.Logf("%d changes, %d acknowledgements in %s", list.Revision-c.Revision, acks, took.Round(time.Millisecond))
	_ = g
}
