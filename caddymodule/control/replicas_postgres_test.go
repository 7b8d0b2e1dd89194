package control_test

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/conngate/conngate/store/pgstore/pgtest"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/conngate/conngate/caddymodule/control"
	"github.com/conngate/conngate/caddymodule/control/controltest"
	"github.com/conngate/conngate/caddymodule/controlapi"
	"github.com/conngate/conngate/store"
	"github.com/conngate/conngate/store/pgstore"
)

func init() { caddy.RegisterModule(countingStore{}) }

// countingStore is a conngate.stores module for the tests of replicas in
// one process: each config opens a PostgreSQL store of its own (as separate
// processes would; the postgres module shares one per DSN) that counts the
// reads of the gateways every replica saved.
type countingStore struct {
	DSN string `json:"dsn"`
	// Replica names the store in countedStores; it also tells the
	// replicas' configs, and so their shared state, apart.
	Replica string `json:"replica"`

	st *countedStore
}

type countedStore struct {
	*pgstore.Store
	gatewayReads atomic.Int64
}

func (s *countedStore) Gateways(ctx context.Context, since time.Time) ([]store.GatewaySeen, error) {
	s.gatewayReads.Add(1)
	return s.Store.Gateways(ctx, since)
}

var countedStores sync.Map // replica name → *countedStore

func (countingStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "conngate.stores.test_counting_postgres", New: func() caddy.Module { return new(countingStore) }}
}

func (m *countingStore) Provision(ctx caddy.Context) error {
	s, err := pgstore.Open(ctx, m.DSN, pgstore.Options{})
	if err != nil {
		return err
	}
	m.st = &countedStore{Store: s}
	countedStores.Store(m.Replica, m.st)
	return nil
}

func (m *countingStore) Store() store.Store { return m.st }

func (m *countingStore) Cleanup() error {
	if m.st == nil {
		return nil
	}
	countedStores.Delete(m.Replica)
	return m.st.Close()
}

// postgresSchema creates a schema of its own for t in the test database,
// dropped at the end, and returns a DSN whose search_path is that schema.
func postgresSchema(t testing.TB) string {
	t.Helper()
	return pgtest.Schema(t, pgtest.DSN(t, "go test -run Replicas ./caddymodule/control"))
}

// startReplicaOn starts a control endpoint on the PostgreSQL store of dsn,
// a replica of every other one on it; name must be unique in the process.
func startReplicaOn(t *testing.T, dsn, name string) (*controltest.Server, *countedStore) {
	t.Helper()
	s := controltest.Start(t, controltest.Options{Configure: func(c *control.Control) {
		c.StoreRaw = caddyconfig.JSONModuleObject(countingStore{DSN: dsn, Replica: name}, "backend", "test_counting_postgres", nil)
	}})
	st, ok := countedStores.Load(name)
	if !ok {
		t.Fatalf("replica %s has no store", name)
	}
	return s, st.(*countedStore)
}

// A process connected to replica B acknowledges; a ?wait=applied on
// replica A for it answers as soon as B saved the acknowledgement, woken by
// B (LISTEN/NOTIFY), not by reading the store over and over meanwhile.
// The figures (latency from the ack posted to B to A's answer; A's reads
// of the saved gateways per second while its wait is pending) are logged
// for docs/PERFORMANCE.md:
//
//	CONNGATE_TEST_POSTGRES_DSN=... go test -run WaitAppliedAcrossReplicas -v -count=1 ./caddymodule/control/
func TestWaitAppliedAcrossReplicas(t *testing.T) {
	dsn := postgresSchema(t)
	a, aStore := startReplicaOn(t, dsn, t.Name()+"/a")
	b, _ := startReplicaOn(t, dsn, t.Name()+"/b")
	gw := b.Gateway(t, "gw-b", "p1")
	gw.Pause() // the test acknowledges for it
	conn := a.Create(t, "org-1").Connection

	// ack acknowledges rev on B for the paused gateway, once B's stream has
	// delivered it.
	ack := func(rev uint64) time.Time {
		for deadline := time.Now().Add(wait); ; time.Sleep(5 * time.Millisecond) {
			sent := time.Now()
			code := b.Do(t, b.GatewayKey, "POST", controlapi.AckPath(gw.ID), controlapi.Ack{Revision: rev, Stream: gw.AckKey}, nil)
			if code == 204 {
				return sent
			}
			if code != 409 || time.Now().After(deadline) {
				t.Fatalf("ack of %d on B: %d", rev, code)
			}
		}
	}
	ack(conn.Revision)

	// waitFor changes the connection on A with ?wait=applied, holds the ack
	// on B for hold, and returns the time from the ack to A's answer and
	// A's reads of the saved gateways per second while the wait was pending.
	action := store.ActionDisable
	waitFor := func(hold time.Duration) (latency time.Duration, readsPerSecond float64) {
		rev := conn.Revision + 1
		answered := make(chan time.Time, 1)
		go func() {
			var got controlapi.Applied
			code := a.Do(t, a.AdminKey, "POST", controlapi.ActionPath(conn.ID, string(action))+"?wait=applied&timeout=10s", nil, &got)
			if code != 200 || got.Acknowledged != 1 || got.Connection.Revision != rev {
				t.Errorf("%s with wait=applied on A: %d %+v", action, code, got)
			}
			answered <- time.Now()
		}()
		time.Sleep(hold / 4) // the wait has begun
		before, began := aStore.gatewayReads.Load(), time.Now()
		time.Sleep(hold - hold/4)
		readsPerSecond = float64(aStore.gatewayReads.Load()-before) / time.Since(began).Seconds()
		select {
		case <-answered:
			t.Fatalf("%s on A answered before the gateway on B acknowledged it", action)
		default:
		}
		sent := ack(rev)
		latency = (<-answered).Sub(sent)
		conn.Revision = rev
		action = map[store.Action]store.Action{store.ActionDisable: store.ActionEnable, store.ActionEnable: store.ActionDisable}[action]
		return latency, readsPerSecond
	}

	_, reads := waitFor(3 * time.Second)
	var latencies []time.Duration
	for range 20 {
		l, _ := waitFor(200 * time.Millisecond)
		latencies = append(latencies, l)
	}
	slices.Sort(latencies)
	t.Logf("ack on B to ?wait=applied answered on A: median %s, p90 %s, max %s (20 rounds); A read the saved gateways %.1f times/s while waiting",
		latencies[len(latencies)/2], latencies[len(latencies)*9/10], latencies[len(latencies)-1], reads)
	if reads > 5 {
		t.Errorf("replica A read the saved gateways %.1f times a second while its wait was pending, want a wake-up from B instead of polling", reads)
	}
	if median := latencies[len(latencies)/2]; median > 100*time.Millisecond {
		t.Errorf("median latency from the ack on B to the answer on A %s", median)
	}
}
