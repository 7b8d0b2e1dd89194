package gate

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/conngate/conngate/caddymodule/control/controltest"
)

// A gateway warmed in one burst must not look every status up again in one
// burst a ttl later, on the request path: with the default settings and the
// stream connected, looked-up statuses carry no expiry at all, and however
// much time passes no request causes a second lookup.
func TestNoLookupBurstAtTTLBoundary(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	target, _ := url.Parse(s.URL)
	var lookups atomic.Int64
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.FlushInterval = -1 // the change stream
	counting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/status") {
			lookups.Add(1)
		}
		proxy.ServeHTTP(w, r)
	}))
	// After the gate's cleanup (cleanups run last-registered first), which
	// ends the change stream running through it.
	t.Cleanup(func() {
		counting.CloseClientConnections()
		counting.Close()
	})

	clock := newFakeClock(time.Now())
	g := newGate(t, s, func(g *Gate) {
		g.ControlURL = counting.URL
		g.TTL = 0 // the default
		g.now = clock.Now
	})
	const n = 50
	var tokens, ids []string
	for range n {
		c := s.Create(t, "org-1")
		tokens, ids = append(tokens, c.AccessToken), append(ids, c.Connection.ID)
	}
	for _, tok := range tokens {
		if res := send(t, g, bearer(tok)); res.status != 200 {
			t.Fatalf("warm-up: %d", res.status)
		}
	}
	if got := lookups.Load(); got != n {
		t.Fatalf("%d lookups to warm %d connections, want %d", got, n, n)
	}
	for _, id := range ids {
		if ttl, ok := g.source.cache.GetTTL(id); !ok || ttl != 0 {
			t.Fatalf("status of %s cached with ttl %v (found: %v); want no expiry while the stream is connected", id, ttl, ok)
		}
	}
	// Far past the old 5-minute boundary: every request is still answered
	// from the cache, none waits for a lookup.
	clock.Advance(time.Hour)
	for _, tok := range tokens {
		if res := send(t, g, bearer(tok)); res.status != 200 {
			t.Fatalf("after an hour: %d", res.status)
		}
	}
	if got := lookups.Load(); got != n {
		t.Fatalf("%d lookups after an hour, want still %d: statuses expired by time", got, n)
	}
}
