package gate

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/conngate/conngate/caddymodule/control/controltest"
)

// `caddy validate` provisions every module and never starts the config: a
// gate validated against a running control endpoint opens no change stream
// and fetches no key set.
func TestValidationStartsNothing(t *testing.T) {
	var requests atomic.Int32
	control := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		http.Error(w, "not in a validation", http.StatusTeapot)
	}))
	defer control.Close()
	gate, _ := json.Marshal(map[string]any{
		"handler":     "connection_gate",
		"control_url": control.URL,
		"control_key": "some-gateway-key",
		"jwks_urls":   []string{control.URL + "/.well-known/jwks.json"},
		"gateway_id":  "validated",
	})
	app := fmt.Sprintf(`{"servers": {"srv0": {"listen": ["127.0.0.1:0"], "routes": [{"handle": [%s]}]}}}`, gate)
	cfg := &caddy.Config{AppsRaw: caddy.ModuleMap{"http": json.RawMessage(app)}}
	if err := caddy.Validate(cfg); err != nil {
		t.Fatalf("validate: %v", err)
	}
	if n := requests.Load(); n != 0 {
		t.Fatalf("a validation sent %d requests to the control endpoint", n)
	}
	if n, _ := sources.References(sourceConfig{controlURLs: []string{control.URL}, controlKey: "some-gateway-key", gatewayID: "validated"}.poolKey()); n != 0 {
		t.Fatal("a validation left its status source behind")
	}
}

// A gate provisioned in a config that has not started (as in a validation,
// which never starts it) sends nothing until the config starts.
func TestNothingGoesOutBeforeTheConfigStarts(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	var requests atomic.Int32
	counting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		http.Error(w, "no keys here", http.StatusNotFound)
	}))
	defer counting.Close()
	ctx, err := caddy.ProvisionContext(&caddy.Config{})
	if err != nil {
		t.Fatal(err)
	}
	g := provisionGateIn(t, ctx, s, func(g *Gate) { g.JWKSURLs = append(g.JWKSURLs, counting.URL) })
	// Long enough for a stream to connect and a key set to be fetched
	// many times over, had they started.
	time.Sleep(300 * time.Millisecond)
	if n := requests.Load(); n != 0 || g.source.connected.Load() {
		t.Fatalf("before the config started: %d key set fetches, stream connected %v", n, g.source.connected.Load())
	}
	app, err := startupOf(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Start(); err != nil {
		t.Fatal(err)
	}
	waitConnected(t, g)
	eventually(t, 5*time.Second, "key set fetched", func() bool { return requests.Load() > 0 })
}

// A source whose config never started is destroyed without waiting for a
// stream that never ran.
func TestSourceNeverStartedIsDestroyed(t *testing.T) {
	cfg := sourceConfig{controlURLs: []string{"http://127.0.0.1:1"}, controlKey: "k", gatewayID: "g", cacheSize: 10, idleTimeout: time.Minute}
	src, err := newStatusSource(cfg, newControlClient(cfg.controlURLs, cfg.controlKey), zap.NewNop(), newMetrics())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { src.Destruct(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Destruct waits for a stream that was never started")
	}
}

// A reload keeps the change stream running, so the settings it runs with
// cannot change: a gate that wants another value is refused with the
// setting named; a new cache size is applied to the kept cache.
func TestSharedSettingsOnReload(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	old := newGate(t, s, nil)

	tests := []struct {
		name  string
		tweak func(*Gate)
		want  string // in the provisioning error; empty: accepted
		check func(t *testing.T, g *Gate)
	}{
		{"same settings", nil, "", nil},
		{"other stream_idle_timeout", func(g *Gate) { g.StreamIdleTimeout = caddy.Duration(20 * time.Second) },
			"stream_idle_timeout 20s: the change stream to " + s.URL, nil},
		{"other cache_size", func(g *Gate) { g.CacheSize = 2 * testCacheSize }, "", func(t *testing.T, g *Gate) {
			if got := g.source.cache.MaxCost(); got != 2*testCacheSize {
				t.Errorf("cache size %d after the reload, want %d", got, 2*testCacheSize)
			}
		}},
		{"other ttl", func(g *Gate) { g.TTL = caddy.Duration(time.Minute) }, "", func(t *testing.T, g *Gate) {
			if got := time.Duration(g.source.eventTTL.Load()); got != time.Minute {
				t.Errorf("stream events cached with ttl %s, want 1m", got)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := &Gate{ControlURL: s.URL, ControlKey: s.GatewayKey, GatewayID: old.GatewayID, CacheSize: testCacheSize}
			if tt.tweak != nil {
				tt.tweak(g)
			}
			err := g.Provision(runningConfig(t))
			t.Cleanup(func() { g.Cleanup() })
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.want)
				}
				if g.source != nil {
					t.Fatal("a refused gate holds the source")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if g.source != old.source {
				t.Fatal("the reloaded gate has a source of its own: the stream was not kept")
			}
			if tt.check != nil {
				tt.check(t, g)
			}
		})
	}
	// The refusals released what they took: the old gate is the last user.
	if n, _ := sources.References(old.sourceKey); n != 1 {
		t.Fatalf("%d users of the source after the reloads, want the old gate alone", n)
	}
}

// The stream's series are exported while its source lives and removed with
// it: a gate removed by a reload does not stay as a disconnected stream.
func TestStreamSeriesGoWithTheirSource(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	reg := prometheus.NewRegistry()
	if err := gateMetrics.register(reg); err != nil {
		t.Fatal(err)
	}
	series := func(gatewayID string) []string {
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, f := range families {
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "gateway_id" && l.GetValue() == gatewayID {
						names = append(names, f.GetName())
					}
				}
			}
		}
		return names
	}
	first := newGate(t, s, nil)
	second := newGate(t, s, nil) // a reload: the same source, two users
	if got := series(first.GatewayID); len(got) != 2 {
		t.Fatalf("series of a connected stream: %v, want stream_connected and stream_applied_revision", got)
	}
	first.Cleanup()
	if got := series(first.GatewayID); len(got) != 2 {
		t.Fatalf("series after one of two users left: %v, want both still", got)
	}
	second.Cleanup()
	if got := series(first.GatewayID); len(got) != 0 {
		t.Fatalf("series of a source that is gone: %v, want none", got)
	}
}
