package gate

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/conngate/conngate/store"
)

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
	src, err := newStatusSource(sourceConfig{controlURL: control.URL, controlKey: "k", gatewayID: "g", cacheSize: 10, idleTimeout: time.Minute},
		zap.NewNop(), newMetrics())
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
