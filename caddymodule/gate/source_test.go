package gate

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/zap"

	"github.com/conngate/conngate/store"
)

// The freshness rule, at the exact edges of disconnected_ttl and
// stale_if_error. Times are offsets from the disconnection.
func TestJudge(t *testing.T) {
	const (
		ttl   = time.Second      // disconnected_ttl
		grace = 30 * time.Second // stale_if_error
		ns    = time.Nanosecond
	)
	policy := freshnessPolicy{ttl: time.Hour, disconnectedTTL: ttl, staleIfError: grace}
	noGrace := freshnessPolicy{ttl: time.Hour, disconnectedTTL: ttl}
	noTTL := freshnessPolicy{ttl: time.Hour, staleIfError: grace}
	neither := freshnessPolicy{ttl: time.Hour}
	tests := []struct {
		name      string
		policy    freshnessPolicy
		connected bool
		storedAt  time.Duration
		now       time.Duration
		want      freshness
	}{
		{"connected: fresh however old", policy, true, -24 * time.Hour, time.Hour, fresh},
		{"just disconnected", policy, false, -time.Minute, 0, fresh},
		{"at disconnected_ttl", policy, false, -time.Minute, ttl, fresh},
		{"just past disconnected_ttl", policy, false, -time.Minute, ttl + ns, stale},
		{"at disconnected_ttl+stale_if_error", policy, false, -time.Minute, ttl + grace, stale},
		{"just past disconnected_ttl+stale_if_error", policy, false, -time.Minute, ttl + grace + ns, expired},
		{"no stale_if_error: expired right after disconnected_ttl", noGrace, false, -time.Minute, ttl + ns, expired},
		{"stored after the disconnection: counted from storing", policy, false, 10 * time.Second, 10*time.Second + ttl, fresh},
		{"stored after the disconnection, just past its ttl", policy, false, 10 * time.Second, 10*time.Second + ttl + ns, stale},
		{"stored after the disconnection, just past its grace", policy, false, 10 * time.Second, 10*time.Second + ttl + grace + ns, expired},
		{"stored before the disconnection: counted from it", policy, false, -10 * time.Second, ttl, fresh},
		{"stored before the disconnection, just past the ttl", policy, false, -10 * time.Second, ttl + ns, stale},
		{"stored at the disconnection", policy, false, 0, ttl + grace, stale},
		{"no disconnected_ttl: connected, still fresh", noTTL, true, -time.Minute, time.Hour, fresh},
		{"no disconnected_ttl: stale at the disconnection", noTTL, false, -time.Minute, 0, stale},
		{"no disconnected_ttl: stale when stored that instant", noTTL, false, 10 * time.Second, 10 * time.Second, stale},
		{"no disconnected_ttl: at stale_if_error", noTTL, false, -time.Minute, grace, stale},
		{"no disconnected_ttl: just past stale_if_error", noTTL, false, -time.Minute, grace + ns, expired},
		{"neither: expired at the disconnection", neither, false, -time.Minute, 0, expired},
		{"neither: expired when stored that instant", neither, false, 10 * time.Second, 10 * time.Second, expired},
		{"neither: connected, still fresh", neither, true, -time.Minute, time.Hour, fresh},
	}
	names := map[freshness]string{fresh: "fresh", stale: "stale", expired: "expired"}
	down := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := func() time.Time { return down.Add(tt.now) }
			got := tt.policy.judge(down.Add(tt.storedAt).UnixNano(), tt.connected, down.UnixNano(), now)
			if got != tt.want {
				t.Fatalf("judge = %s, want %s", names[got], names[tt.want])
			}
		})
	}
	// The hot path: a connected stream costs no clock read.
	policy.judge(0, true, 0, func() time.Time { t.Fatal("clock read while connected"); return time.Time{} })
}

// A change seen on the stream whose cache insert did not land (ristretto may
// drop or refuse inserts) still wins over an older lookup answer.
func TestLookupDefersToRecentChange(t *testing.T) {
	control := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/connections/conn_a/status" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, `{"id":"conn_a","status":"active","revision":1}`)
	}))
	defer control.Close()
	cfg := sourceConfig{controlURLs: []string{control.URL}, controlKey: "k", gatewayID: "g", cacheSize: 10, idleTimeout: time.Minute}
	src, err := newStatusSource(cfg, newControlClient(cfg.controlURLs, cfg.controlKey), zap.NewNop(), newMetrics())
	if err != nil {
		t.Fatal(err)
	}
	defer src.Destruct()

	policy := &freshnessPolicy{ttl: time.Hour, disconnectedTTL: time.Hour, timeout: time.Second}
	src.recent.record(store.Change{ID: "conn_a", Status: store.StatusDisabled, Revision: 2}, time.Now())
	st, err := src.lookup(context.Background(), "conn_a", policy)
	if err != nil || st != store.StatusDisabled {
		t.Fatalf("lookup = %s, %v; want the newer disabled", st, err)
	}
	if e, ok := src.cache.Get("conn_a"); !ok || e.status != store.StatusDisabled || e.revision != 2 {
		t.Fatalf("cached %+v, %v", e, ok)
	}
	// An older answer never replaces a newer entry.
	src.recent.clearAll(time.Now().Add(-time.Hour))
	src.cache.Set("conn_a", statusEntry{id: "conn_a", status: store.StatusDeleted, revision: 3}, 1)
	src.cache.Wait()
	src.cache.SetWithTTL("conn_a", statusEntry{id: "conn_a", status: store.StatusActive, revision: 1}, 1, time.Hour)
	src.cache.Wait()
	if e, _ := src.cache.Get("conn_a"); e.status != store.StatusDeleted {
		t.Fatalf("an older status replaced a newer one: %+v", e)
	}
}

// Two stream events for one id, or a lookup's write and an event, in either
// order and at the same time, never leave the older status in the cache.
func TestLookupAndEventNeverLoseTheNewerStatus(t *testing.T) {
	cfg := sourceConfig{controlURLs: []string{"http://127.0.0.1:1"}, controlKey: "k", gatewayID: "g", cacheSize: 10000, idleTimeout: time.Minute}
	src, err := newStatusSource(cfg, newControlClient(cfg.controlURLs, cfg.controlKey), zap.NewNop(), newMetrics())
	if err != nil {
		t.Fatal(err)
	}
	defer src.Destruct()
	src.eventTTL.Store(int64(time.Hour))
	started := time.Now()
	check := func(id string) {
		t.Helper()
		src.cache.Wait()
		if e, ok := src.cache.Get(id); ok && e.status != store.StatusDisabled {
			t.Fatalf("%s: cached %s at revision %d after a disable at revision 2", id, e.status, e.revision)
		}
	}
	for i := range 300 {
		// A creation and a disable arriving in one read of the stream.
		id := fmt.Sprintf("conn_a%d", i)
		src.apply(store.Change{ID: id, Status: store.StatusActive, Revision: 1})
		src.apply(store.Change{ID: id, Status: store.StatusDisabled, Revision: 2})
		check(id)
		// A lookup answered "active" finishing while the disable arrives.
		id = fmt.Sprintf("conn_b%d", i)
		done := make(chan store.Status)
		go func() {
			done <- src.store(id, statusEntry{id: id, status: store.StatusActive, revision: 1}, time.Hour, started)
		}()
		src.apply(store.Change{ID: id, Status: store.StatusDisabled, Revision: 2})
		<-done
		check(id)
		if st := src.store(id, statusEntry{id: id, status: store.StatusActive, revision: 1}, time.Hour, started); st != store.StatusDisabled {
			t.Fatalf("%s: a late lookup answered %s", id, st)
		}
		check(id)
	}
}

// Recording changes stays cheap however many there are (a replay can bring
// 100,000): pruning must not rescan the whole map on every change.
func TestRecentChangesScale(t *testing.T) {
	var r recentChanges
	t0 := time.Now()
	r.record(store.Change{ID: "first", Revision: 1}, t0)
	for i := range 50_000 {
		r.record(store.Change{ID: fmt.Sprintf("c%d", i), Revision: uint64(i + 2)}, t0.Add(2*recentWindow))
	}
	// One scan for the window that passed, not one per record (which took
	// minutes at 50,000): counted, not timed, so that a loaded machine
	// cannot fail it.
	if r.prunes != 1 {
		t.Fatalf("50,000 records in one window scanned the map %d times, want 1", r.prunes)
	}
	if _, ok := r.newer("first", 0); ok {
		t.Error("a change older than the window was kept")
	}
}

// roundTripFunc is an http.RoundTripper in a function: an in-process
// control endpoint, so that a test can run in a synctest bubble.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// Concurrent misses for one connection make one lookup, and every one of
// them gets its answer.
func TestLookupsAreCoalesced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var lookups atomic.Int32
		release := make(chan struct{})
		control := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if !strings.HasSuffix(r.URL.Path, "/status") {
				<-r.Context().Done() // the change stream: never connects
				return nil, r.Context().Err()
			}
			lookups.Add(1)
			select {
			case <-release:
			case <-r.Context().Done():
				return nil, r.Context().Err()
			}
			return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Request: r,
				Body: io.NopCloser(strings.NewReader(`{"id":"conn_a","status":"active","revision":1}`))}, nil
		})
		client := &controlClient{endpoints: endpoints{urls: []string{"http://control.test"}}, authorization: "Bearer k",
			http: &http.Client{Transport: control}, streams: &http.Client{Transport: control}}
		src, err := newStatusSource(sourceConfig{gatewayID: "g", cacheSize: 10, idleTimeout: time.Minute},
			client, zap.NewNop(), newMetrics())
		if err != nil {
			t.Fatal(err)
		}
		defer src.Destruct()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()

		policy := &freshnessPolicy{ttl: time.Hour, disconnectedTTL: time.Hour, timeout: time.Second}
		answers := make(chan string, 50)
		for range 50 {
			go func() {
				st, err := src.lookup(ctx, "conn_a", policy)
				answers <- fmt.Sprintf("%s %v", st, err)
			}()
		}
		synctest.Wait() // all 50 are waiting for an answer
		if n := lookups.Load(); n != 1 {
			t.Fatalf("%d lookups for 50 concurrent misses, want 1", n)
		}
		close(release)
		for range 50 {
			if got := <-answers; got != "active <nil>" {
				t.Fatalf("answer %q, want active", got)
			}
		}
	})
}
