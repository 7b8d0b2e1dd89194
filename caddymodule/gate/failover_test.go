package gate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/conngate/conngate/caddymodule/control/controltest"
	"github.com/conngate/conngate/caddymodule/controlapi"
	"github.com/conngate/conngate/store"
)

// refusedURL is the URL of a port nothing listens on: connections to it are
// refused.
func refusedURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

func failovers(g *Gate, kind string) float64 {
	return counterValue(gateMetrics.failoverCounter(g.source, kind))
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// Two endpoints of one store (replicas): when the one the stream is open at
// stops, the stream moves to the other and resumes there (no reset: the
// cache stays), and a change made meanwhile reaches the gateway through it.
// disconnected_ttl is long: only the stream can turn the answer to 401.
func TestStreamFailsOverAndResumes(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	replica := httptest.NewServer(s.HTTP.Config.Handler) // a second endpoint of the same store
	t.Cleanup(replica.Close)
	g := newGate(t, s, func(g *Gate) {
		g.ControlURL = ""
		g.ControlURLs = []string{replica.URL, s.URL}
		g.DisconnectedTTL = new(caddy.Duration(MaxDisconnectedTTL))
	})
	c := s.Create(t, "org-1")
	expectStatus(t, g, c.AccessToken, 200, "")
	if open := g.source.stream.open.Load(); open.base != replica.URL {
		t.Fatalf("stream open at %s, want the first endpoint %s", open.base, replica.URL)
	}
	if n := failovers(g, failoverStatuses); n != 0 {
		t.Fatalf("%v failovers before any failure", n)
	}

	replica.CloseClientConnections()
	replica.Close()
	s.Act(t, c.Connection.ID, store.ActionDisable)
	eventually(t, within, "stream open at the second endpoint", func() bool {
		open := g.source.stream.open.Load()
		return g.source.connected.Load() && open.base == s.URL
	})
	eventuallyStatus(t, g, c.AccessToken, 401)
	expectStatus(t, g, c.AccessToken, 401, "connection_disabled")
	if e, ok := g.source.cache.Get(c.Connection.ID); !ok || e.status != store.StatusDisabled {
		t.Fatalf("cached %+v (%v): want the disable applied to the kept entry (a resume, not a reset)", e, ok)
	}
	if n := failovers(g, failoverStatuses); n != 1 {
		t.Errorf("%v failovers counted, want 1", n)
	}
	if i := g.source.client.endpoints.inUse(); i != 1 {
		t.Errorf("lookups use endpoint %d, want the second (1)", i)
	}
}

// Lookups move to the next endpoint when the one in use refuses
// connections, stay there while it works (even when the first is back), and
// move back when it fails: one log line and one count per switch, none per
// request, and none while every endpoint is down.
func TestLookupsFailOver(t *testing.T) {
	var aDown, bDown atomic.Bool
	var aHits, bHits atomic.Int32
	control := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		down, hits := &aDown, &aHits
		if r.URL.Host == "b.test" {
			down, hits = &bDown, &bHits
		}
		hits.Add(1)
		if down.Load() {
			return nil, errors.New("dial tcp: connection refused")
		}
		id := strings.Split(r.URL.Path, "/")[3]
		return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Request: r,
			Body: io.NopCloser(strings.NewReader(fmt.Sprintf(`{"id":%q,"status":"active","revision":1}`, id)))}, nil
	})
	client := &controlClient{endpoints: endpoints{urls: []string{"http://a.test", "http://b.test"}}, authorization: "Bearer k",
		http: &http.Client{Transport: control}, streams: &http.Client{Transport: control}}
	core, logs := observer.New(zapcore.InfoLevel)
	m := newMetrics()
	src, err := newStatusSource(sourceConfig{gatewayID: "g", cacheSize: 100, idleTimeout: time.Minute}, client, zap.New(core), m)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Destruct()
	policy := &freshnessPolicy{ttl: time.Hour, disconnectedTTL: time.Hour, timeout: time.Second}
	n := 0
	lookups := func(count int, wantOK bool) {
		t.Helper()
		for range count {
			n++
			st, err := src.lookup(context.Background(), fmt.Sprintf("conn_f%d", n), policy)
			if ok := err == nil && st == store.StatusActive; ok != wantOK {
				t.Fatalf("lookup %d: %s, %v; want answered %v", n, st, err, wantOK)
			}
		}
	}
	switches := func() int { return logs.FilterMessageSnippet("control endpoint failover").Len() }
	counted := func() float64 { return counterValue(m.failoverCounter(src, failoverStatuses)) }

	aDown.Store(true)
	lookups(5, true)
	if switches() != 1 || counted() != 1 || aHits.Load() != 1 || bHits.Load() != 5 {
		t.Fatalf("first endpoint refusing: %d log lines, %v counted, %d tries at a, %d at b; want 1, 1, 1, 5",
			switches(), counted(), aHits.Load(), bHits.Load())
	}
	line := logs.FilterMessageSnippet("control endpoint failover").All()[0].ContextMap()
	if line["from"] != "http://a.test" || line["to"] != "http://b.test" || !strings.Contains(fmt.Sprint(line["from_error"]), "refused") {
		t.Errorf("failover line %v: want from a, to b and a's error", line)
	}

	aDown.Store(false)
	lookups(3, true)
	if aHits.Load() != 1 || switches() != 1 {
		t.Fatalf("first endpoint back: %d tries at a, %d log lines; want the lookups to stay at b", aHits.Load(), switches())
	}

	bDown.Store(true)
	lookups(3, true)
	if switches() != 2 || counted() != 2 || src.client.endpoints.inUse() != 0 {
		t.Fatalf("second endpoint refusing: %d log lines, %v counted, endpoint %d in use; want 2, 2, 0",
			switches(), counted(), src.client.endpoints.inUse())
	}

	aDown.Store(true)
	lookups(3, false)
	if switches() != 2 || counted() != 2 {
		t.Fatalf("every endpoint down: %d log lines, %v counted; want no switch", switches(), counted())
	}
	if n := logs.FilterMessageSnippet("status lookups failing").Len(); n != 1 {
		t.Errorf("%d outage lines, want 1", n)
	}
}

// An endpoint that hangs takes only its share of control_timeout: the next
// one answers the same lookup in time.
func TestLookupLeavesTimeForTheNextEndpoint(t *testing.T) {
	control := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.URL.Host == "a.test" {
			<-r.Context().Done()
			return nil, r.Context().Err()
		}
		return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Request: r,
			Body: io.NopCloser(strings.NewReader(`{"id":"conn_a","status":"active","revision":1}`))}, nil
	})
	client := &controlClient{endpoints: endpoints{urls: []string{"http://a.test", "http://b.test"}}, authorization: "Bearer k",
		http: &http.Client{Transport: control}, streams: &http.Client{Transport: control}}
	src, err := newStatusSource(sourceConfig{gatewayID: "g", cacheSize: 10, idleTimeout: time.Minute}, client, zap.NewNop(), newMetrics())
	if err != nil {
		t.Fatal(err)
	}
	defer src.Destruct()
	st, err := src.lookup(context.Background(), "conn_a", &freshnessPolicy{ttl: time.Hour, timeout: 2 * time.Second})
	if err != nil || st != store.StatusActive {
		t.Fatalf("lookup = %s, %v; want active from the second endpoint", st, err)
	}
}

// control_urls in JSON, with the first endpoint refusing connections: the
// statuses and the key set come from the second; trailing slashes go.
func TestControlURLsInJSON(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	refused := refusedURL(t)
	raw := fmt.Sprintf(`{"control_urls": [%q, %q], "control_key": %q, "gateway_id": "json-failover", "issuers": [%q], "audiences": [%q], "cache_size": 10000}`,
		refused, s.URL+"/", s.GatewayKey, s.Issuer, s.Audience)
	g := new(Gate)
	if err := json.Unmarshal([]byte(raw), g); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Cleanup() })
	if err := g.Provision(runningConfig(t)); err != nil {
		t.Fatal(err)
	}
	if want := refused + " " + s.URL; g.source.label != want {
		t.Fatalf("source %q, want %q", g.source.label, want)
	}
	waitConnected(t, g)
	c := s.Create(t, "org-1")
	expectStatus(t, g, c.AccessToken, 200, "")
	if n := failovers(g, failoverStatuses); n != 1 {
		t.Errorf("%v status failovers, want 1", n)
	}
	if n := failovers(g, failoverKeys); n != 1 {
		t.Errorf("%v key set failovers, want 1", n)
	}
}

// The same endpoints in another order are another source; the pool key
// names every endpoint.
func TestPoolKeyNamesEveryEndpoint(t *testing.T) {
	ab := sourceConfig{controlURLs: []string{"http://a", "http://b"}, controlKey: "k", gatewayID: "g"}
	ba := sourceConfig{controlURLs: []string{"http://b", "http://a"}, controlKey: "k", gatewayID: "g"}
	a := sourceConfig{controlURLs: []string{"http://a"}, controlKey: "k", gatewayID: "g"}
	if ab.poolKey() == ba.poolKey() || ab.poolKey() == a.poolKey() || !strings.Contains(ab.poolKey(), "http://b") {
		t.Fatalf("pool keys %q %q %q", ab.poolKey(), ba.poolKey(), a.poolKey())
	}
}

// The failover series are exported from 0 with several control endpoints
// (none with one) and removed with their source.
func TestFailoverSeriesGoWithTheirSource(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	reg := prometheus.NewRegistry()
	if err := gateMetrics.register(reg); err != nil {
		t.Fatal(err)
	}
	series := func(gatewayID string) int {
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, f := range families {
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					if f.GetName() == "conngate_control_failovers_total" && l.GetName() == "gateway_id" && l.GetValue() == gatewayID {
						n++
					}
				}
			}
		}
		return n
	}
	one := newGate(t, s, func(g *Gate) { g.GatewayID = "failover-series-one" })
	if n := series(one.GatewayID); n != 0 {
		t.Errorf("%d failover series with one control endpoint, want none", n)
	}
	two := newGate(t, s, func(g *Gate) {
		g.GatewayID = "failover-series-two"
		g.ControlURL = ""
		g.ControlURLs = []string{s.URL, refusedURL(t)}
	})
	if n := series(two.GatewayID); n != 2 {
		t.Fatalf("%d failover series with two control endpoints, want statuses and keys", n)
	}
	two.Cleanup()
	if n := series(two.GatewayID); n != 0 {
		t.Fatalf("%d failover series of a source that is gone, want none", n)
	}
}

// front is a control endpoint of its own in front of a controltest server's
// handler, which a test can make drop and refuse change streams, fail status
// lookups, or hold leaves.
type front struct {
	*httptest.Server
	refuseStreams, failLookups atomic.Bool
	lookups, leaves            atomic.Int32
	// holdLeaves, while open, keeps every leave from being answered.
	holdLeaves chan struct{}

	mu      sync.Mutex
	streams []context.CancelFunc
}

func newFront(t *testing.T, s *controltest.Server) *front {
	t.Helper()
	f := &front{holdLeaves: make(chan struct{})}
	close(f.holdLeaves)
	next := s.HTTP.Config.Handler
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == controlapi.PathEvents:
			if f.refuseStreams.Load() {
				http.Error(w, "streams refused", http.StatusServiceUnavailable)
				return
			}
			ctx, cancel := context.WithCancel(r.Context())
			f.mu.Lock()
			f.streams = append(f.streams, cancel)
			f.mu.Unlock()
			r = r.WithContext(ctx)
		case strings.HasSuffix(r.URL.Path, "/status"):
			f.lookups.Add(1)
			if f.failLookups.Load() {
				http.Error(w, "lookups failing", http.StatusServiceUnavailable)
				return
			}
		case strings.HasSuffix(r.URL.Path, "/leave"):
			f.leaves.Add(1)
			f.mu.Lock()
			hold := f.holdLeaves
			f.mu.Unlock()
			<-hold
		}
		next.ServeHTTP(w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

// dropStreams ends the change streams open through f, as the control
// endpoint would, and refuses new ones.
func (f *front) dropStreams() {
	f.refuseStreams.Store(true)
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, cancel := range f.streams {
		cancel()
	}
	f.streams = nil
}

// holdEveryLeave keeps leaves unanswered until the test ends.
func (f *front) holdEveryLeave(t *testing.T) {
	hold := make(chan struct{})
	f.mu.Lock()
	f.holdLeaves = hold
	f.mu.Unlock()
	t.Cleanup(func() { close(hold) }) // before f.Close, which waits for them
}

// processes lists the processes of gatewayID that the control endpoint s
// knows.
func processes(t *testing.T, s *controltest.Server, gatewayID string) []controlapi.Gateway {
	t.Helper()
	var list controlapi.GatewayList
	if code := s.Do(t, s.AdminKey, http.MethodGet, controlapi.PathGateways, nil, &list); code != http.StatusOK {
		t.Fatalf("listing gateways: %d", code)
	}
	var out []controlapi.Gateway
	for _, gw := range list.Gateways {
		if gw.ID == gatewayID {
			out = append(out, gw)
		}
	}
	return out
}

// movedToSecond fails the stream of a gate over from the first of two
// control endpoints of their own stores, A (behind a front) and B: A ends
// the stream and refuses new ones, and the stream moves to B, which
// answers with a reset.
func movedToSecond(t *testing.T) (g *Gate, a *controltest.Server, fa *front, b *controltest.Server) {
	t.Helper()
	a = controltest.Start(t, controltest.Options{})
	b = controltest.Start(t, controltest.Options{GatewayKey: a.GatewayKey})
	fa = newFront(t, a)
	g = newGate(t, a, func(g *Gate) {
		g.ControlURL = ""
		g.ControlURLs = []string{fa.URL, b.URL}
	})
	a.Create(t, "org-1") // a position in A's history, which B does not have
	b.Create(t, "org-1")
	eventually(t, within, "A lists the process, connected", func() bool {
		ps := processes(t, a, g.GatewayID)
		return len(ps) == 1 && ps[0].Connected && ps[0].AppliedRevision == 1
	})
	return g, a, fa, b
}

// A gateway whose stream moves from endpoint A to endpoint B of another
// store tells A it left, with the ack key of its stream there: A forgets the
// process at once, instead of counting it (and ?wait=applied reporting it
// pending) for gateway_retention.
func TestStreamLeavesTheEndpointItMovedFrom(t *testing.T) {
	g, a, fa, b := movedToSecond(t)
	fa.dropStreams()
	eventually(t, within, "stream in sync at B", func() bool {
		open := g.source.stream.open.Load()
		return g.source.connected.Load() && open.base == b.URL
	})
	eventually(t, within, "A forgot the process", func() bool { return len(processes(t, a, g.GatewayID)) == 0 })
	if n := fa.leaves.Load(); n != 1 {
		t.Errorf("%d leaves at A, want 1", n)
	}
	if ps := processes(t, b, g.GatewayID); len(ps) != 1 || !ps[0].Connected {
		t.Errorf("B lists %+v, want the process, connected", ps)
	}
	c := a.Create(t, "org-1")
	var out controlapi.Applied
	a.Do(t, a.AdminKey, http.MethodPost, controlapi.ActionPath(c.Connection.ID, "disable")+"?wait=applied&timeout=2s", nil, &out)
	if out.Gateways != 0 || len(out.Pending) != 0 {
		t.Errorf("?wait=applied at A after the gateway left: %+v, want nobody to wait for", out)
	}
}

// A leave that hangs (A unreachable, the usual reason to fail over) does
// not hold up the stream at B; it is given up after leaveTimeout.
func TestLeaveToAHangingEndpointDoesNotDelayTheNewStream(t *testing.T) {
	g, _, fa, b := movedToSecond(t)
	fa.holdEveryLeave(t)
	dropped := time.Now()
	fa.dropStreams()
	eventually(t, within, "stream in sync at B", func() bool {
		open := g.source.stream.open.Load()
		return g.source.connected.Load() && open.base == b.URL
	})
	if took := time.Since(dropped); took >= leaveTimeout {
		t.Fatalf("stream in sync at B %s after the drop, want it before the held leave times out (%s)", took, leaveTimeout)
	}
	eventually(t, within, "the leave reached A", func() bool { return fa.leaves.Load() == 1 })
}

// A stream that moves between two endpoints of one store resumes there and
// posts no leave: the endpoint it left sees the process through the store,
// connected elsewhere, and a leave would erase what the other saved there.
func TestStreamResumedAtAReplicaLeavesNothing(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	f := newFront(t, s) // a second endpoint of the same store
	g := newGate(t, s, func(g *Gate) {
		g.ControlURL = ""
		g.ControlURLs = []string{f.URL, s.URL}
	})
	s.Create(t, "org-1")
	eventually(t, within, "the change applied", func() bool { return g.source.applied.Load() == 1 })
	f.dropStreams()
	eventually(t, within, "stream in sync at the other endpoint", func() bool {
		open := g.source.stream.open.Load()
		return g.source.connected.Load() && open.base == s.URL
	})
	time.Sleep(100 * time.Millisecond) // time for a leave, were one sent
	if n := f.leaves.Load(); n != 0 {
		t.Errorf("%d leaves, want none", n)
	}
	if ps := processes(t, s, g.GatewayID); len(ps) != 1 || !ps[0].Connected {
		t.Errorf("the store's endpoints list %+v, want the process, connected", ps)
	}
}
