package pgstore

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/conngate/conngate/store"
	"github.com/conngate/conngate/store/pgstore/pgtest"
	"github.com/conngate/conngate/store/storetest"
)

// testDSN is the database the tests run against, or a skip that says how
// to run them.
func testDSN(t testing.TB) string {
	t.Helper()
	return pgtest.DSN(t, "go test ./store/pgstore")
}

// newSchema creates an empty schema of its own for t, dropped at the end of
// t, and returns a DSN whose search_path is that schema.
func newSchema(t testing.TB, dsn string) string {
	t.Helper()
	return pgtest.Schema(t, dsn)
}

func createSchema(dsn string) (named string, drop func() error, err error) {
	return pgtest.CreateSchema(dsn)
}

// open opens a store on dsn, closed at the end of t.
func open(t testing.TB, dsn string, opts Options) *Store {
	t.Helper()
	s, err := Open(context.Background(), dsn, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	dsn := testDSN(t)
	var (
		mu      sync.Mutex
		schemas = map[string]string{} // storetest's name -> DSN of its schema
		drops   []func() error
		err     error
	)
	storetest.Run(t, func(st *testing.T, name string) store.Store {
		mu.Lock()
		named, ok := schemas[name]
		if !ok {
			var drop func() error
			named, drop, err = createSchema(dsn)
			if err != nil {
				mu.Unlock()
				st.Fatal(err)
			}
			schemas[name], drops = named, append(drops, drop)
		}
		mu.Unlock()
		return open(st, named, Options{ChangeLogSize: 50})
	}, 50)
	for _, drop := range drops {
		if err := drop(); err != nil {
			t.Error(err)
		}
	}
}

// Two replicas (two stores, two pools) enable and delete one connection at
// once, many times: the row lock orders them, so the connection always
// ends deleted, and its audit holds exactly the changes that were made, in
// the order their revisions say.
func TestConcurrentEnableDeleteAcrossReplicas(t *testing.T) {
	dsn := newSchema(t, testDSN(t))
	a, b := open(t, dsn, Options{}), open(t, dsn, Options{})
	ctx := context.Background()
	by := store.Actor{ID: "test"}
	enabledFirst := 0
	for i := range 40 {
		c, err := a.Create(ctx, store.NewConnection{Name: "race", OrgID: "org-1", UserID: "u"}, by)
		if err != nil {
			t.Fatal(err)
		}
		disabled, _, err := b.Apply(ctx, c.ID, store.ActionDisable, by)
		if err != nil {
			t.Fatal(err)
		}
		var (
			wg                       sync.WaitGroup
			start                    = make(chan struct{})
			enabled, deleted         store.Connection
			enableChanged, delChange bool
			enableErr, deleteErr     error
		)
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-start
			enabled, enableChanged, enableErr = a.Apply(ctx, c.ID, store.ActionEnable, by)
		}()
		go func() {
			defer wg.Done()
			<-start
			deleted, delChange, deleteErr = b.Apply(ctx, c.ID, store.ActionDelete, by)
		}()
		close(start)
		wg.Wait()
		if deleteErr != nil || !delChange {
			t.Fatalf("round %d: delete: changed %v, %v", i, delChange, deleteErr)
		}
		// The audit, oldest first, is what the answers say happened.
		type step struct {
			action   string
			from, to store.Status
			revision uint64
		}
		want := []step{{"create", "", store.StatusActive, c.Revision}, {"disable", store.StatusActive, store.StatusDisabled, disabled.Revision}}
		switch {
		case enableErr == nil && enableChanged:
			enabledFirst++
			if deleted.Revision <= enabled.Revision {
				t.Fatalf("round %d: delete at revision %d, not after the enable at %d it saw", i, deleted.Revision, enabled.Revision)
			}
			want = append(want, step{"enable", store.StatusDisabled, store.StatusActive, enabled.Revision}, step{"delete", store.StatusActive, store.StatusDeleted, deleted.Revision})
		case errors.Is(enableErr, store.ErrDeleted):
			want = append(want, step{"delete", store.StatusDisabled, store.StatusDeleted, deleted.Revision})
		default:
			t.Fatalf("round %d: enable: changed %v, %v; want a change or ErrDeleted", i, enableChanged, enableErr)
		}
		for _, s := range []*Store{a, b} {
			if got, err := s.Get(ctx, c.ID); err != nil || got.Status != store.StatusDeleted {
				t.Fatalf("round %d: connection ended %s (%v), want deleted", i, got.Status, err)
			}
		}
		entries, _, err := a.Audit(ctx, store.AuditQuery{ConnectionID: c.ID})
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != len(want) {
			t.Fatalf("round %d: audit %+v, want %+v", i, entries, want)
		}
		for j, w := range want {
			e := entries[len(entries)-1-j]
			if e.Action != w.action || e.FromStatus != w.from || e.ToStatus != w.to || e.ID != w.revision {
				t.Errorf("round %d: audit entry %d = %+v, want %+v", i, j, e, w)
			}
		}
	}
	t.Logf("the enable came first in %d of 40 rounds", enabledFirst)

	// Every revision is in the log once, in order, with no gap.
	latest, _ := a.Revision(ctx)
	log, err := b.Changes(ctx, 0, int(latest)+1)
	if err != nil || uint64(len(log)) != latest {
		t.Fatalf("change log: %d changes, %v; want %d", len(log), err, latest)
	}
	for i, ch := range log {
		if ch.Revision != uint64(i+1) {
			t.Fatalf("change %d has revision %d", i, ch.Revision)
		}
	}
}

// wait fails t unless ch is closed within a few seconds.
func wait(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("watchers not woken: %s", what)
	}
}

// A change written through one replica wakes the watchers of the other,
// also after the other's listening connection was killed: its watchers are
// woken when it is back (to read what was sent meanwhile), and later
// notifications reach them again.
func TestChangedAcrossReplicas(t *testing.T) {
	dsn := newSchema(t, testDSN(t))
	a, b := open(t, dsn, Options{}), open(t, dsn, Options{})
	ctx := context.Background()
	by := store.Actor{ID: "test"}

	ch := a.Changed()
	c, err := b.Create(ctx, store.NewConnection{Name: "n", OrgID: "org-1", UserID: "u"}, by)
	if err != nil {
		t.Fatal(err)
	}
	wait(t, ch, "a creation through the other replica")

	// A's own commit wakes A's watchers before it returns; its notification
	// then wakes no one again.
	ch = a.Changed()
	if _, _, err := a.Apply(ctx, c.ID, store.ActionDisable, by); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	default:
		t.Fatal("a replica's own change had not woken its watchers when the write returned")
	}

	pid := a.listener.pid.Load()
	if pid == 0 {
		t.Fatal("the listener is not listening")
	}
	var killed bool
	if err := b.pool.QueryRow(ctx, "SELECT pg_terminate_backend($1)", int32(pid)).Scan(&killed); err != nil || !killed {
		t.Fatalf("terminating the listener's backend %d: %v, %v", pid, killed, err)
	}
	// Written while A's listener is down or reconnecting: A's watchers
	// learn of it, by the notification or by the wake-up after reconnecting.
	ch = a.Changed()
	if _, _, err := b.Apply(ctx, c.ID, store.ActionEnable, by); err != nil {
		t.Fatal(err)
	}
	wait(t, ch, "a change while the listener was reconnecting")
	changes, err := a.Changes(ctx, c.Revision, 10)
	if err != nil || len(changes) != 2 || changes[1].Status != store.StatusActive {
		t.Fatalf("changes after the creation: %+v, %v; want the disable and the enable", changes, err)
	}

	// Once it listens again (a new backend), notifications alone wake A.
	deadline := time.Now().Add(10 * time.Second)
	for p := a.listener.pid.Load(); p == 0 || p == pid; p = a.listener.pid.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the listener did not reconnect within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	ch = a.Changed()
	if _, _, err := b.Apply(ctx, c.ID, store.ActionDelete, by); err != nil {
		t.Fatal(err)
	}
	wait(t, ch, "a change after the listener reconnected")
}

// Replicas that start at once on a new schema take turns to migrate it:
// both open, and every version is applied once.
func TestMigrationLock(t *testing.T) {
	dsn := newSchema(t, testDSN(t))
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  = make([]error, 4)
	)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			s, err := Open(context.Background(), dsn, Options{})
			if err == nil {
				s.Close()
			}
			errs[i] = err
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("replica %d: %v", i, err)
		}
	}
	s := open(t, dsn, Options{})
	var versions, distinct int
	if err := s.pool.QueryRow(context.Background(), "SELECT count(*), count(DISTINCT version) FROM schema_migrations").Scan(&versions, &distinct); err != nil {
		t.Fatal(err)
	}
	if versions != len(migrations) || distinct != len(migrations) {
		t.Errorf("schema_migrations has %d rows (%d versions), want %d", versions, distinct, len(migrations))
	}
}

// A schema migrated by a newer conngate is refused, not used half-known.
func TestNewerSchemaRefused(t *testing.T) {
	dsn := newSchema(t, testDSN(t))
	s := open(t, dsn, Options{})
	if _, err := s.pool.Exec(context.Background(), "INSERT INTO schema_migrations (version) VALUES ($1)", len(migrations)+1); err != nil {
		t.Fatal(err)
	}
	_, err := Open(context.Background(), dsn, Options{})
	if err == nil || !strings.Contains(err.Error(), "newer than this conngate knows") {
		t.Fatalf("Open on a newer schema: %v", err)
	}
}

// Open fails clearly, and never repeats the DSN's password.
func TestOpenErrors(t *testing.T) {
	tests := []struct {
		name, dsn, want string
	}{
		{"unparsable", "postgres://user:s3cret@host:notaport/db", "parsing the PostgreSQL DSN"},
		{"unreachable", "postgres://user:s3cret@127.0.0.1:1/db?connect_timeout=2", "opening PostgreSQL store user@127.0.0.1:1/db"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Open(context.Background(), tt.dsn, Options{})
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("Open = %v; want an error with %q and without the password", err, tt.want)
			}
		})
	}
}

// relay forwards TCP connections to the database until cut, which closes
// its listener and every connection: the database becomes unreachable.
type relay struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func newRelay(t *testing.T, target string) *relay {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{ln: ln}
	t.Cleanup(r.cut)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			r.mu.Lock()
			r.conns = append(r.conns, c, up)
			r.mu.Unlock()
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
	return r
}

func (r *relay) cut() {
	r.ln.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		c.Close()
	}
}

// With the database unreachable, writes are refused with an error that
// says so, and nothing of them is applied.
func TestWritesRefusedWhenUnreachable(t *testing.T) {
	dsn := newSchema(t, testDSN(t))
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	target := u.Host
	r := newRelay(t, target)
	u.Host = r.ln.Addr().String()
	q := u.Query()
	q.Set("connect_timeout", "2")
	u.RawQuery = q.Encode()
	relayed := open(t, u.String(), Options{})
	direct := open(t, dsn, Options{})
	ctx := context.Background()
	by := store.Actor{ID: "test"}
	c, err := relayed.Create(ctx, store.NewConnection{Name: "n", OrgID: "org-1", UserID: "u"}, by)
	if err != nil {
		t.Fatal(err)
	}
	r.cut()
	for i := range 2 { // the first on a pooled connection now dead, the next on a new one
		_, _, err = relayed.Apply(ctx, c.ID, store.ActionDisable, by)
		if !errors.Is(err, errUnreachable) || !strings.Contains(err.Error(), "unreachable; nothing was written") {
			t.Fatalf("write %d with the database unreachable: %v, want errUnreachable", i, err)
		}
	}
	if _, err := relayed.Create(ctx, store.NewConnection{Name: "n", OrgID: "org-1", UserID: "u"}, by); !errors.Is(err, errUnreachable) || !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("create with the database unreachable: %v, want errUnreachable, a store.ErrUnavailable", err)
	}
	// Reads say so too, so that the API answers 503, not 500.
	if _, err := relayed.Get(ctx, c.ID); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Get with the database unreachable: %v, want store.ErrUnavailable", err)
	}
	if _, _, err := relayed.List(ctx, store.ListQuery{OrgID: "org-1"}); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("List with the database unreachable: %v, want store.ErrUnavailable", err)
	}
	if _, err := relayed.Revision(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Revision with the database unreachable: %v, want store.ErrUnavailable", err)
	}
	if _, err := relayed.Changes(ctx, 0, 10); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Changes with the database unreachable: %v, want store.ErrUnavailable", err)
	}
	got, err := direct.Get(ctx, c.ID)
	if err != nil || got.Status != store.StatusActive || got.Revision != c.Revision {
		t.Fatalf("connection after refused writes: %+v, %v; want it unchanged", got, err)
	}
	if rev, _ := direct.Revision(ctx); rev != c.Revision {
		t.Fatalf("revision %d after refused writes, want %d", rev, c.Revision)
	}
}
