package gate

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// While the control endpoint is down every lookup fails, but the log says
// so once, and once again when lookups work again; not once per request
// (the lookup metrics count them).
func TestOutageIsLoggedOnce(t *testing.T) {
	control := roundTripFunc(func(*http.Request) (*http.Response, error) {
		return nil, errors.New("connection refused")
	})
	client := &controlClient{endpoints: endpoints{urls: []string{"http://control.test"}}, authorization: "Bearer k",
		http: &http.Client{Transport: control}, streams: &http.Client{Transport: control}}
	core, logs := observer.New(zapcore.InfoLevel)
	src, err := newStatusSource(sourceConfig{gatewayID: "g", cacheSize: 10, idleTimeout: time.Minute},
		client, zap.New(core), newMetrics())
	if err != nil {
		t.Fatal(err)
	}
	defer src.Destruct()
	policy := &freshnessPolicy{ttl: time.Hour, disconnectedTTL: time.Hour, timeout: time.Second}
	for i := range 5 {
		if _, err := src.lookup(context.Background(), fmt.Sprintf("conn_outage%d", i), policy); err == nil {
			t.Fatalf("lookup %d during the outage succeeded", i+1)
		}
	}
	if n := logs.FilterMessageSnippet("status lookups failing").Len(); n != 1 {
		t.Errorf("%d outage lines for 5 failed lookups, want 1", n)
	}
	src.noteLookup(nil) // a lookup that worked
	src.noteLookup(nil)
	if n := logs.FilterMessageSnippet("work again").Len(); n != 1 {
		t.Errorf("%d recovery lines, want 1", n)
	}
}
