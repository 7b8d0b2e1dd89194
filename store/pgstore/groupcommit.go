package pgstore

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// groupCommit gathers the status changes and creates that arrive while a
// transaction is committing into the next one, as bolt's does. The first
// writer to find no batch running leads: it runs everything pending (its
// own write included) in one transaction, each write under its own
// savepoint, commits once (one WAL flush for the batch), then hands the
// lead to a writer that arrived meanwhile, if any. A lone writer commits at
// once. The batch holds the revision counter's row lock from its first
// statement to its commit, so its changes take consecutive revisions, in
// commit order, as a transaction of their own would.
type groupCommit struct {
	mu      sync.Mutex
	pending []*pendingWrite
	leading bool

	batches atomic.Uint64 // transactions begun for batches
	writes  atomic.Uint64 // writes run in them
}

type pendingWrite struct {
	ctx  context.Context // the caller's: a write whose caller has gone is not run
	fn   func(context.Context, *writeTx) error
	done chan error    // the write's result, once its batch has committed (or not)
	lead chan struct{} // closed when this writer is to run the next batch
}

// maxBatch bounds how many writes share one transaction. Each write's
// savepoint is a subtransaction with its own transaction id, and PostgreSQL
// caches 64 of them per backend (PGPROC_MAX_CACHED_SUBXIDS): beyond that,
// every snapshot taken on the server while the batch runs overflows to the
// slower pg_subtrans lookups.
const maxBatch = 64

// batchTimeout bounds a batch when the database stops answering. A batch
// runs other callers' writes, so no one caller's context may cancel it.
const batchTimeout = 30 * time.Second

// writeGrouped runs fn in a transaction, possibly shared with other
// writers', and returns once that transaction has committed (fn's change is
// durable) or failed; if the transaction changed anything, this replica's
// watchers have been woken by then, once for the whole batch. fn runs under
// a savepoint: its error rolls back its own statements only and is its
// answer alone. fn must use the context it is given, not its caller's: a
// caller's cancelled context would break the connection the whole batch
// runs on.
func (s *Store) writeGrouped(ctx context.Context, fn func(context.Context, *writeTx) error) error {
	w := &pendingWrite{ctx: ctx, fn: fn, done: make(chan error, 1), lead: make(chan struct{})}
	g := &s.group
	g.mu.Lock()
	g.pending = append(g.pending, w)
	lead := !g.leading
	g.leading = true
	g.mu.Unlock()
	if !lead {
		select {
		case err := <-w.done:
			return err
		case <-w.lead:
		}
	}
	// Let the writers that are already runnable join this batch rather than
	// wait a whole commit for the next one.
	runtime.Gosched()
	g.mu.Lock()
	n := min(len(g.pending), maxBatch)
	batch := g.pending[:n:n]
	g.pending = g.pending[n:]
	g.mu.Unlock()

	s.commitBatch(batch)

	g.mu.Lock()
	if len(g.pending) > 0 {
		close(g.pending[0].lead)
	} else {
		g.leading = false
	}
	g.mu.Unlock()
	return <-w.done
}

// commitBatch runs the writes of batch in one transaction and answers each.
// A write that failed on its own gets its own error; when the transaction
// itself fails (the database unreachable, the commit's outcome unknown),
// every other write gets that error.
func (s *Store) commitBatch(batch []*pendingWrite) {
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	results := make([]error, len(batch))
	err := s.runBatch(ctx, batch, results)
	for i, w := range batch {
		if results[i] == nil {
			results[i] = err
		}
		w.done <- results[i]
	}
}

// runBatch runs the writes of batch, each under a savepoint, and commits.
// It sets results[i] to the error of a write that failed on its own and
// returns the error that fails the whole batch.
func (s *Store) runBatch(ctx context.Context, batch []*pendingWrite, results []error) error {
	s.group.batches.Add(1)
	tx, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) // after Commit, a no-op
	// A lone write needs no savepoint (one round trip fewer): its error
	// rolls the whole transaction back.
	savepoints := len(batch) > 1
	for i, w := range batch {
		if err := w.ctx.Err(); err != nil {
			results[i] = err // the caller has gone: nothing of its write is run
			continue
		}
		s.group.writes.Add(1)
		// Savepoints are not released: each nests in the one before, and a
		// rollback goes to the latest, this write's.
		if savepoints {
			if _, err := tx.Exec(ctx, "SAVEPOINT write"); err != nil {
				return tx.failed(err)
			}
		}
		before := tx.revision
		err := w.call(ctx, tx)
		if err == nil {
			continue
		}
		if !savepoints || tx.Conn().IsClosed() || connectionLost(err) {
			return tx.failed(err)
		}
		results[i] = err
		tx.revision = before
		if _, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT write"); err != nil {
			return fmt.Errorf("rolling back a failed write in a batch: %w", tx.failed(err))
		}
	}
	return s.commit(ctx, tx)
}

// call runs the write's function, turning a panic into its error so that
// one bad write cannot take its batch (and every writer waiting) down.
func (w *pendingWrite) call(ctx context.Context, tx *writeTx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			// The stack goes with the error: the panic ran in the batch
			// leader's goroutine, not the caller's, so it is seen nowhere else.
			err = fmt.Errorf("write panicked: %v\n%s", p, debug.Stack())
		}
	}()
	return w.fn(ctx, tx)
}
