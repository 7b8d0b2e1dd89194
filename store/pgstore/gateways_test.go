package pgstore

import (
	"context"
	"testing"
	"time"

	"github.com/conngate/conngate/store"
)

// notWoken fails t if ch is closed within a moment.
func notWoken(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
		t.Fatalf("woken by %s", what)
	case <-time.After(200 * time.Millisecond):
	}
}

// A replica's save of gateways wakes the GatewaysSaved waiters of the
// others, not its own (they know what they saved); so does a process's
// leave. After the listener's connection is lost, its waiters are woken
// when it is back, for a save they may have missed.
func TestGatewaysSavedAcrossReplicas(t *testing.T) {
	dsn := newSchema(t, testDSN(t))
	a, b := open(t, dsn, Options{}), open(t, dsn, Options{})
	ctx := context.Background()
	now := time.Now().UTC()
	seen := []store.GatewaySeen{{GatewayID: "gw", Instance: "p1", AppliedRevision: 3, SeenAt: now}}

	tests := []struct {
		name   string
		write  func() error
		wakesA bool
	}{
		{"a save through the other replica", func() error { return b.SaveGateways(ctx, seen, now.Add(-time.Hour)) }, true},
		{"its own save", func() error { return a.SaveGateways(ctx, seen, now.Add(-time.Hour)) }, false},
		{"a save of no gateway (only forgetting old ones)", func() error { return b.SaveGateways(ctx, nil, now.Add(-time.Hour)) }, false},
		{"a leave through the other replica", func() error { return b.ForgetGateway(ctx, "gw", "p1") }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch := a.GatewaysSaved()
			if err := tt.write(); err != nil {
				t.Fatal(err)
			}
			if tt.wakesA {
				wait(t, ch, tt.name)
			} else {
				notWoken(t, ch, tt.name)
			}
		})
	}

	pid := a.listener.pid.Load()
	ch := a.GatewaysSaved()
	var killed bool
	if err := b.pool.QueryRow(ctx, "SELECT pg_terminate_backend($1)", int32(pid)).Scan(&killed); err != nil || !killed {
		t.Fatalf("terminating the listener's backend %d: %v, %v", pid, killed, err)
	}
	wait(t, ch, "the listener's reconnection")
}
