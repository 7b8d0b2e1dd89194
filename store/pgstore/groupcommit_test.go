package pgstore

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/conngate/conngate/store"
)

// waitUntil polls cond until it holds, failing t after ten seconds: the
// tests below wait for a writer to reach a known state (queued, or blocked
// on a lock), not for time to pass.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// pending is how many writes wait for the next batch, and whether a batch
// is being run.
func (s *Store) pendingWrites() (n int, leading bool) {
	s.group.mu.Lock()
	defer s.group.mu.Unlock()
	return len(s.group.pending), s.group.leading
}

// holdRevisionCounter locks the revision counter in a transaction of its
// own, on another pool, as a writer of another replica would: no batch can
// begin until release is called.
func holdRevisionCounter(t *testing.T, dsn string) (release func()) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT revision FROM store_revision FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			if err := tx.Commit(ctx); err != nil {
				t.Error(err)
			}
			conn.Close(ctx)
		})
	}
	t.Cleanup(release)
	return release
}

// startBatch has s run a batch of its own (one disable of id) that waits
// for the counter held by the caller, so that the writes started next
// queue up for the batch after it. It returns the lone write's result.
func startBatch(t *testing.T, s *Store, id string) <-chan error {
	t.Helper()
	first := make(chan error, 1)
	go func() {
		_, _, err := s.Apply(context.Background(), id, store.ActionDisable, store.Actor{ID: "test"})
		first <- err
	}()
	waitUntil(t, "the first write leads a batch of its own", func() bool {
		n, leading := s.pendingWrites()
		return leading && n == 0
	})
	return first
}

// Writes queued while a batch runs share the next transaction; each one
// that fails (on its own status, a missing connection, an error of the
// database, an error after it had changed something) rolls back only itself
// and gets its own error, and the others commit, with consecutive revisions
// and their change log and audit entries.
func TestGroupCommitFailuresStayWithTheirWrite(t *testing.T) {
	dsn := newSchema(t, testDSN(t))
	s := open(t, dsn, Options{})
	ctx := context.Background()
	by := store.Actor{ID: "test"}
	newConn := func() store.Connection {
		c, err := s.Create(ctx, store.NewConnection{Name: "n", OrgID: "org-1", UserID: "u"}, by)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	lone, ok1, ok2, untouched, deleted := newConn(), newConn(), newConn(), newConn(), newConn()
	if _, _, err := s.Apply(ctx, deleted.ID, store.ActionDelete, by); err != nil {
		t.Fatal(err)
	}
	errBoom := errors.New("boom")
	type result struct {
		c   store.Connection
		err error
	}
	apply := func(id string, action store.Action) func() result {
		return func() result {
			c, _, err := s.Apply(ctx, id, action, by)
			return result{c, err}
		}
	}
	writes := []struct {
		name    string
		write   func() result
		wantErr error // nil: committed
	}{
		{"disable", apply(ok1.ID, store.ActionDisable), nil},
		{"unknown connection", apply("no-such-id", store.ActionDisable), store.ErrNotFound},
		{"enable a deleted connection", apply(deleted.ID, store.ActionEnable), store.ErrDeleted},
		{"create", func() result {
			c, err := s.Create(ctx, store.NewConnection{Name: "new", OrgID: "org-1", UserID: "u"}, by)
			return result{c, err}
		}, nil},
		{"statement fails after a change", func() result {
			err := s.writeGrouped(ctx, func(ctx context.Context, tx *writeTx) error {
				if _, _, err := s.apply(ctx, tx, untouched.ID, store.ActionDisable, by); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, "SELECT 1/0")
				return err
			})
			return result{err: err}
		}, nil}, // wantErr set below: a database error, not a sentinel
		{"fails after a change", func() result {
			err := s.writeGrouped(ctx, func(ctx context.Context, tx *writeTx) error {
				if _, _, err := s.apply(ctx, tx, untouched.ID, store.ActionDelete, by); err != nil {
					return err
				}
				return errBoom
			})
			return result{err: err}
		}, errBoom},
		{"disable another", apply(ok2.ID, store.ActionDisable), nil},
	}
	before, _ := s.Revision(ctx)
	batchesBefore, writesBefore := s.group.batches.Load(), s.group.writes.Load()
	changed := s.Changed()

	release := holdRevisionCounter(t, dsn)
	first := startBatch(t, s, lone.ID)
	results := make([]chan result, len(writes))
	for i, w := range writes {
		results[i] = make(chan result, 1)
		go func() { results[i] <- w.write() }()
		// One at a time, so that the batch runs them in this order.
		waitUntil(t, fmt.Sprintf("%q is queued", w.name), func() bool {
			n, _ := s.pendingWrites()
			return n == i+1
		})
	}
	release()
	if err := <-first; err != nil {
		t.Fatalf("the lone write: %v", err)
	}

	var committed []store.Connection
	for i, w := range writes {
		r := <-results[i]
		switch {
		case w.name == "statement fails after a change":
			var pgErr *pgconn.PgError
			if !errors.As(r.err, &pgErr) || pgErr.Code != "22012" {
				t.Errorf("%s: %v, want the database's division_by_zero", w.name, r.err)
			}
		case w.wantErr != nil:
			if !errors.Is(r.err, w.wantErr) {
				t.Errorf("%s: %v, want %v", w.name, r.err, w.wantErr)
			}
		case r.err != nil:
			t.Errorf("%s: %v, want it committed", w.name, r.err)
		default:
			committed = append(committed, r.c)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	// The lone write took before+1; the batch's committed writes the next
	// ones, in the batch's order, with no gap where failed writes were.
	for i, c := range committed {
		if want := before + 2 + uint64(i); c.Revision != want {
			t.Errorf("committed write %d has revision %d, want %d", i, c.Revision, want)
		}
	}
	last := before + 1 + uint64(len(committed))
	if rev, _ := s.Revision(ctx); rev != last {
		t.Errorf("revision %d after the batch, want %d", rev, last)
	}
	changes, err := s.Changes(ctx, before, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 1+len(committed) {
		t.Fatalf("change log after the batch: %+v, want %d changes", changes, 1+len(committed))
	}
	for i, c := range committed {
		if ch := changes[i+1]; ch.Revision != c.Revision || ch.ID != c.ID || ch.Status != c.Status {
			t.Errorf("change %d: %+v, want the change of %+v", i+1, ch, c)
		}
	}
	if got, err := s.Get(ctx, untouched.ID); err != nil || got.Status != store.StatusActive || got.Revision != untouched.Revision {
		t.Errorf("connection changed by failed writes: %+v, %v; want it unchanged", got, err)
	}
	audit, _, err := s.Audit(ctx, store.AuditQuery{OrgID: "org-1", ConnectionID: untouched.ID})
	if err != nil {
		t.Fatal(err)
	}
	if len(audit) != 1 {
		t.Errorf("audit of the connection the failed writes changed: %+v, want its create only", audit)
	}
	if b, w := s.group.batches.Load()-batchesBefore, s.group.writes.Load()-writesBefore; b != 2 || w != uint64(1+len(writes)) {
		t.Errorf("%d batches ran %d writes, want 2 batches (the lone write's and the queued writes') running %d", b, w, 1+len(writes))
	}
	select {
	case <-changed:
	default:
		t.Error("watchers not woken by the batch")
	}
	if s.watch.woken != last {
		t.Errorf("watchers woken for revision %d, want %d", s.watch.woken, last)
	}
}

// Many writers on two replicas flip the same few connections at once: the
// writes of each replica share transactions (batches of more than one),
// nothing deadlocks (every writer locks the revision counter before any
// connection), and every change made takes one revision.
func TestGroupCommitManyWritersAcrossReplicas(t *testing.T) {
	dsn := newSchema(t, testDSN(t))
	replicas := []*Store{open(t, dsn, Options{}), open(t, dsn, Options{})}
	ctx := context.Background()
	by := store.Actor{ID: "test"}
	ids := make([]string, 4)
	for i := range ids {
		c, err := replicas[0].Create(ctx, store.NewConnection{Name: "n", OrgID: "org-1", UserID: "u"}, by)
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = c.ID
	}
	start, _ := replicas[0].Revision(ctx)
	const writers, each = 8, 25
	var (
		mu      sync.Mutex
		changes uint64
		wg      sync.WaitGroup
	)
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := replicas[w%len(replicas)]
			for i := range each {
				action := store.ActionDisable
				if (w+i)%2 == 1 {
					action = store.ActionEnable
				}
				_, changed, err := s.Apply(ctx, ids[(w+i)%len(ids)], action, by)
				if err != nil {
					errs <- err
					return
				}
				if changed {
					mu.Lock()
					changes++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if rev, _ := replicas[0].Revision(ctx); rev != start+changes {
		t.Errorf("revision %d after %d changes from %d, want %d", rev, changes, start, start+changes)
	}
	log, err := replicas[1].Changes(ctx, start, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if uint64(len(log)) != changes {
		t.Errorf("%d changes in the log, want %d", len(log), changes)
	}
	for i, c := range log {
		if c.Revision != start+1+uint64(i) {
			t.Fatalf("change %d has revision %d, want %d: the log must be contiguous", i, c.Revision, start+1+uint64(i))
		}
	}
	for i, s := range replicas {
		if b, w := s.group.batches.Load(), s.group.writes.Load(); b >= w {
			t.Errorf("replica %d: %d writes in %d batches, want batches of more than one", i, w, b)
		}
	}
}

// A batch whose connection is lost before its commit answers every one of
// its writes as refused (nothing was written), the one that had already
// succeeded in the batch included.
func TestGroupCommitBatchLost(t *testing.T) {
	dsn := newSchema(t, testDSN(t))
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	r := newRelay(t, u.Host)
	u.Host = r.ln.Addr().String()
	q := u.Query()
	q.Set("connect_timeout", "2")
	u.RawQuery = q.Encode()
	relayed := open(t, u.String(), Options{})
	direct := open(t, dsn, Options{})
	ctx := context.Background()
	by := store.Actor{ID: "test"}
	var conns []store.Connection
	for range 3 {
		c, err := relayed.Create(ctx, store.NewConnection{Name: "n", OrgID: "org-1", UserID: "u"}, by)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	lone, done, blocked := conns[0], conns[1], conns[2]

	release := holdRevisionCounter(t, dsn)
	first := startBatch(t, relayed, lone.ID)
	results := make([]chan error, 2)
	for i, id := range []string{done.ID, blocked.ID} {
		results[i] = make(chan error, 1)
		go func() {
			_, _, err := relayed.Apply(ctx, id, store.ActionDisable, by)
			results[i] <- err
		}()
		waitUntil(t, "the write is queued", func() bool {
			n, _ := relayed.pendingWrites()
			return n == i+1
		})
	}
	// Another transaction holds the second write's connection, so the
	// batch stops there, after its first write has succeeded.
	holder, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(ctx)
	hold, err := holder.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Rollback(ctx)
	if _, err := hold.Exec(ctx, "SELECT 1 FROM connections WHERE id = $1 FOR UPDATE", blocked.ID); err != nil {
		t.Fatal(err)
	}
	var holderPID uint32
	if err := hold.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&holderPID); err != nil {
		t.Fatal(err)
	}
	release()
	if err := <-first; err != nil {
		t.Fatalf("the lone write: %v", err)
	}
	waitUntil(t, "the batch waits for the held connection", func() bool {
		var n int
		err := direct.pool.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE $1::int = ANY(pg_blocking_pids(pid))", holderPID).Scan(&n)
		return err == nil && n > 0
	})
	r.cut()
	for i, res := range results {
		if err := <-res; !errors.Is(err, errUnreachable) {
			t.Errorf("write %d of the lost batch: %v, want errUnreachable", i, err)
		}
	}
	for _, c := range []store.Connection{done, blocked} {
		if got, err := direct.Get(ctx, c.ID); err != nil || got.Status != store.StatusActive {
			t.Errorf("connection %s after the lost batch: %+v, %v; want it active", c.ID, got, err)
		}
	}
	if rev, _ := direct.Revision(ctx); rev != lone.Revision+3 {
		t.Errorf("revision %d after the lost batch, want %d (the creates and the lone write)", rev, lone.Revision+3)
	}
}
