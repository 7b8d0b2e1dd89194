// Package boltstore is the embedded store: one bbolt file, no server to run.
// bbolt serialises writers and fsyncs every commit, which gives the store's
// guarantees (every change in one transaction with its log and audit
// entries, durable before the call returns) directly. Creates and status
// changes that arrive while a commit is under way share the next commit
// (group commit): one fsync for many changes.
package boltstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/conngate/conngate/store"
)

// Bucket layout. Keys are chosen so that bbolt's byte order is the listing
// order: connection ids sort by creation time. Apps and grants have their
// buckets in apps.go and grants.go.
var (
	bucketConnections = []byte("connections")   // id -> JSON store.Connection
	bucketByOrg       = []byte("by_org")        // org_id 0x00 id -> empty
	bucketMeta        = []byte("meta")          // "revision" -> uint64 big-endian
	bucketSecrets     = []byte("secrets")       // name -> bytes
	bucketChanges     = []byte("changes")       // revision (uint64 big-endian) -> JSON store.Change
	bucketAudit       = []byte("audit")         // revision -> JSON store.AuditEntry; never dropped
	bucketAuditByOrg  = []byte("audit_by_org")  // org_id 0x00 revision -> empty
	bucketAuditByConn = []byte("audit_by_conn") // connection id 0x00 revision -> empty
	keyRevision       = []byte("revision")
)

// lockTimeout bounds the wait for bbolt's file lock, held by any other
// process that has the file open: better a clear error than a hang.
const lockTimeout = 2 * time.Second

// DefaultChangeLogSize is how many changes the log keeps by default: enough
// for a gateway to catch up after an outage of hours at a busy rate.
const DefaultChangeLogSize = 100_000

// Options tune a store; the zero value takes the defaults.
type Options struct {
	// ChangeLogSize is how many of the latest changes are kept for replay.
	ChangeLogSize int
}

// Store is a store.Store on one bbolt file.
type Store struct {
	db            *bolt.DB
	now           func() time.Time
	changeLogSize uint64

	// changed is closed and replaced after every committed change.
	mu      sync.Mutex
	changed chan struct{}

	group groupCommit
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the store file at path. A bbolt file can be
// open only once per process; callers that may open it twice (Caddy reloads)
// must share the *Store.
func Open(path string, opts Options) (*Store, error) {
	if opts.ChangeLogSize <= 0 {
		opts.ChangeLogSize = DefaultChangeLogSize
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating directory for store %s: %w", path, err)
	}
	// NoFreelistSync: a commit does not write the free-page list (one or
	// more pages per commit, growing with the file); Open rebuilds it by
	// walking the file instead. The data and its fsync are unchanged.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout, NoFreelistSync: true})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("opening store %s: the file is locked by another process (is another conngate running on it?)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("opening store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketConnections, bucketByOrg, bucketMeta, bucketSecrets, bucketChanges, bucketAudit, bucketAuditByOrg, bucketAuditByConn,
			bucketApps, bucketAppsByOrg, bucketConnsByApp, bucketCodes, bucketCodesByExpiry, bucketRefreshTokens, bucketGrantsByApp} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("initialising store %s: %w", path, err)
	}
	return &Store{
		db:            db,
		now:           func() time.Time { return time.Now().UTC().Truncate(time.Microsecond) },
		changeLogSize: uint64(opts.ChangeLogSize),
		changed:       make(chan struct{}),
	}, nil
}

// Close releases the file.
func (s *Store) Close() error { return s.db.Close() }

// Create implements store.Store.
func (s *Store) Create(_ context.Context, n store.NewConnection, by store.Actor) (store.Connection, error) {
	if err := n.Validate(); err != nil {
		return store.Connection{}, err
	}
	now := s.now()
	c := store.Connection{
		ID:        store.NewID(now),
		Name:      n.Name,
		OrgID:     n.OrgID,
		UserID:    n.UserID,
		AppID:     n.AppID,
		Status:    store.StatusActive,
		CreatedAt: now,
		UpdatedAt: now,
	}
	err := s.update(func(tx *bolt.Tx) (err error) {
		c, err = s.insert(tx, c, by)
		return err
	})
	if err != nil {
		return store.Connection{}, fmt.Errorf("creating connection: %w", err)
	}
	return c, nil
}

// insert stores the new connection c inside the caller's write transaction
// and returns it with its revision: every creation (Create, RedeemCode)
// goes through it. It links c to its app (which must exist), and writes
// its change log entry and its audit entry by by.
func (s *Store) insert(tx *bolt.Tx, c store.Connection, by store.Actor) (store.Connection, error) {
	if err := linkToApp(tx, c); err != nil {
		return c, err
	}
	rev, err := nextRevision(tx)
	if err != nil {
		return c, err
	}
	c.Revision = rev
	if err := putConnection(tx, c); err != nil {
		return c, err
	}
	if err := s.logChange(tx, c); err != nil {
		return c, err
	}
	if err := writeAudit(tx, c, "create", "", by); err != nil {
		return c, err
	}
	return c, tx.Bucket(bucketByOrg).Put(orgKey(c.OrgID, c.ID), nil)
}

// Get implements store.Store.
func (s *Store) Get(_ context.Context, id string) (c store.Connection, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		c, err = getConnection(tx, id)
		return err
	})
	return c, err
}

// Apply implements store.Store. Reading the status, deciding with store.Next
// and writing happen in one bbolt write transaction, and bbolt allows one
// writer at a time, so concurrent changes are applied one after the other.
func (s *Store) Apply(_ context.Context, id string, action store.Action, by store.Actor) (c store.Connection, changed bool, err error) {
	err = s.update(func(tx *bolt.Tx) error {
		c, changed, err = s.apply(tx, id, action, by)
		return err
	})
	if err != nil {
		return c, false, err
	}
	return c, changed, nil
}

// apply is Apply inside the caller's write transaction: every status change
// (DeleteApp's too) goes through it. Watchers are notified after the commit:
// by update for Apply, by DeleteApp itself.
func (s *Store) apply(tx *bolt.Tx, id string, action store.Action, by store.Actor) (c store.Connection, changed bool, err error) {
	c, err = getConnection(tx, id)
	if err != nil {
		return c, false, err
	}
	to, ch, err := store.Next(c.Status, action)
	if err != nil || !ch {
		return c, false, err
	}
	rev, err := nextRevision(tx)
	if err != nil {
		return c, false, err
	}
	from := c.Status
	c.Status, c.UpdatedAt, c.Revision = to, s.now(), rev
	if err := putConnection(tx, c); err != nil {
		return c, false, err
	}
	if err := s.logChange(tx, c); err != nil {
		return c, false, err
	}
	return c, true, writeAudit(tx, c, string(action), from, by)
}

// Secret implements store.Store.
func (s *Store) Secret(_ context.Context, name string, create func() ([]byte, error)) (secret []byte, err error) {
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSecrets)
		if v := b.Get([]byte(name)); v != nil {
			secret = append([]byte(nil), v...)
			return nil
		}
		secret, err = create()
		if err != nil {
			return err
		}
		return b.Put([]byte(name), secret)
	})
	if err != nil {
		return nil, fmt.Errorf("loading secret %q: %w", name, err)
	}
	return secret, nil
}

// nextRevision bumps the store-wide revision inside tx, so the revision and
// the change it numbers commit together.
func nextRevision(tx *bolt.Tx) (uint64, error) {
	rev := currentRevision(tx) + 1
	return rev, tx.Bucket(bucketMeta).Put(keyRevision, revisionKey(rev))
}

func getConnection(tx *bolt.Tx, id string) (store.Connection, error) {
	v := tx.Bucket(bucketConnections).Get([]byte(id))
	if v == nil {
		return store.Connection{}, store.ErrNotFound
	}
	var c store.Connection
	if err := json.Unmarshal(v, &c); err != nil {
		return store.Connection{}, fmt.Errorf("decoding connection %s: %w", id, err)
	}
	return c, nil
}

func putConnection(tx *bolt.Tx, c store.Connection) error {
	v, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketConnections).Put([]byte(c.ID), v)
}

func orgKey(orgID, id string) []byte {
	k := make([]byte, 0, len(orgID)+1+len(id))
	k = append(k, orgID...)
	k = append(k, 0)
	return append(k, id...)
}

// groupCommit gathers the writes that arrive while a commit is under way
// into the next one. The first writer to find no commit running leads: it
// commits everything pending (its own write included) in one transaction,
// then hands the lead to a writer that arrived meanwhile, if any. A lone
// writer commits at once, as with db.Update; eight concurrent writers share
// about one fsync per batch instead of one each.
type groupCommit struct {
	mu      sync.Mutex
	pending []*pendingWrite
	leading bool
}

type pendingWrite struct {
	fn   func(*bolt.Tx) error
	done chan error    // the write's result, once its transaction has committed (or not)
	lead chan struct{} // closed when this writer is to commit the next batch
}

// maxBatch bounds how many writes share one transaction.
const maxBatch = 256

// update runs fn in a write transaction, possibly shared with other
// writers', and returns once that transaction is durable; if the transaction
// changed anything, watchers have been woken by then, once for the whole
// batch rather than once per write (each wake-up costs every change stream a
// read of the log, which the first one already made). fn must be safe to
// run more than once and must set every result it hands out on each run: when
// another write in its batch fails, the batch is rolled back and run again
// without it.
func (s *Store) update(fn func(*bolt.Tx) error) error {
	w := &pendingWrite{fn: fn, done: make(chan error, 1), lead: make(chan struct{})}
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
	// Let the writers that are already runnable (requests just decoded)
	// join this batch rather than wait a whole commit for the next one:
	// 8 writers in a loop made batches of about 4.5 without it, 7 with it.
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

// commitBatch runs the writes of batch in one transaction. A write that
// fails rolls the transaction back; it is then run alone (so its error, and
// nothing else, is its answer, exactly as with a transaction of its own) and
// the others are committed without it, as bbolt's DB.Batch does.
func (s *Store) commitBatch(batch []*pendingWrite) {
	for len(batch) > 0 {
		failed := -1
		err := s.commitNotifying(func(tx *bolt.Tx) error {
			for i, w := range batch {
				if err := w.call(tx); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		if failed < 0 {
			for _, w := range batch {
				w.done <- err
			}
			return
		}
		w := batch[failed]
		w.done <- s.commitNotifying(w.call)
		batch = append(batch[:failed:failed], batch[failed+1:]...)
	}
}

// commitNotifying runs fn in a write transaction and, once it has
// committed, wakes the watchers if fn changed anything: every change takes
// a revision.
func (s *Store) commitNotifying(fn func(*bolt.Tx) error) error {
	var before, after uint64
	err := s.db.Update(func(tx *bolt.Tx) error {
		before = currentRevision(tx)
		if err := fn(tx); err != nil {
			return err
		}
		after = currentRevision(tx)
		return nil
	})
	if err == nil && after != before {
		s.notify()
	}
	return err
}

// call runs the write's function, turning a panic into its error so that
// one bad write cannot take its batch (and every writer waiting) down.
func (w *pendingWrite) call(tx *bolt.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			// The stack goes with the error: the panic ran in the batch
			// leader's goroutine, not the caller's, so it is seen nowhere else.
			err = fmt.Errorf("write panicked: %v\n%s", p, debug.Stack())
		}
	}()
	return w.fn(tx)
}
