// Package pgstore is the store on PostgreSQL, for control replicas that
// share one database. The guarantees bolt gets from one process holding the
// file are the database's here: every writing transaction locks the
// revision counter's row first, then what it reads (the connection's row),
// so writers on any number of replicas are applied one after the other, and
// a change is committed (durable) before the call returns. Status changes
// and creates that arrive together share one transaction and its commit
// (groupcommit.go), each under its own savepoint. Watchers on every
// replica are woken through LISTEN/NOTIFY; the change log table, not the
// notification, is what they read.
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/conngate/conngate/store"
)

// DefaultChangeLogSize is how many changes the log keeps by default, as
// bolt's.
const DefaultChangeLogSize = 100_000

// defaultConnectTimeout bounds a connection attempt when the DSN sets no
// connect_timeout: an unreachable database refuses writes within it rather
// than after the operating system's TCP timeout (minutes).
const defaultConnectTimeout = 5 * time.Second

// Options tune a store; the zero value takes the defaults.
type Options struct {
	// ChangeLogSize is how many of the latest changes are kept for replay.
	ChangeLogSize int
	// Logger receives the listener's connection losses; nil logs nothing.
	Logger *zap.Logger
}

// Store is a store.Store on a PostgreSQL database, in the first schema of
// the DSN's search_path.
type Store struct {
	pool          *pgxpool.Pool
	now           func() time.Time
	changeLogSize uint64
	channel       string // the NOTIFY channel of this schema's changes

	watch    watchers
	listener listener
	group    groupCommit

	closeOnce sync.Once
}

var _ store.Store = (*Store)(nil)

// Open connects to the database named by dsn (a postgres:// URL or a
// key=value string; search_path chooses the schema, which must exist) and
// brings its schema up to date. Every replica opens the same DSN.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	if opts.ChangeLogSize <= 0 {
		opts.ChangeLogSize = DefaultChangeLogSize
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's parse errors quote the DSN, password included.
		return nil, errors.New("parsing the PostgreSQL DSN: not a postgres:// URL or key=value connection string")
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	where := fmt.Sprintf("%s@%s:%d/%s", cfg.ConnConfig.User, cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("opening PostgreSQL store %s: %w", where, err)
	}
	schema, err := migrate(ctx, pool)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("opening PostgreSQL store %s: %w", where, err)
	}
	s := &Store{
		pool:          pool,
		now:           func() time.Time { return time.Now().UTC().Truncate(time.Microsecond) },
		changeLogSize: uint64(opts.ChangeLogSize),
		channel:       notifyChannel(schema),
	}
	s.watch.changed = make(chan struct{})
	if err := s.listener.start(ctx, s, cfg.ConnConfig.Copy(), opts.Logger.With(zap.String("schema", schema))); err != nil {
		pool.Close()
		return nil, fmt.Errorf("opening PostgreSQL store %s: %w", where, err)
	}
	return s, nil
}

// Close stops the listener and closes the pool's connections.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.listener.stop()
		s.pool.Close()
	})
	return nil
}

// Create implements store.Store. With an app, the app's row is locked
// (shared) until the commit: DeleteApp, which locks it exclusively first,
// runs either wholly before (then there is no app) or wholly after (then it
// finds and deletes this connection).
func (s *Store) Create(ctx context.Context, n store.NewConnection, by store.Actor) (store.Connection, error) {
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
	err := s.writeGrouped(ctx, func(ctx context.Context, tx *writeTx) error {
		if c.AppID != "" {
			if err := lockApp(ctx, tx, c.AppID); err != nil {
				return err
			}
		}
		b := &pgx.Batch{}
		c = s.queueInsert(b, tx, c, by)
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return store.Connection{}, fmt.Errorf("creating connection: %w", err)
	}
	return c, nil
}

// queueInsert gives the new connection c the next revision of tx and adds
// to b its insert, change log entry and audit entry by by: every creation
// (Create, RedeemCode) goes through it. The caller has locked c's app.
func (s *Store) queueInsert(b *pgx.Batch, tx *writeTx, c store.Connection, by store.Actor) store.Connection {
	c.Revision = tx.nextRevision()
	b.Queue(`INSERT INTO connections (id, name, org_id, user_id, app_id, status, created_at, updated_at, revision)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		c.ID, c.Name, c.OrgID, c.UserID, c.AppID, string(c.Status), c.CreatedAt, c.UpdatedAt, c.Revision)
	s.queueRecords(b, c, "create", "", by)
	return c
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, id string) (store.Connection, error) {
	c, err := getConnection(ctx, s.pool, id, "")
	return c, readFailed(err)
}

// Apply implements store.Store.
func (s *Store) Apply(ctx context.Context, id string, action store.Action, by store.Actor) (c store.Connection, changed bool, err error) {
	err = s.writeGrouped(ctx, func(ctx context.Context, tx *writeTx) error {
		c, changed, err = s.apply(ctx, tx, id, action, by)
		return err
	})
	if err != nil {
		return c, false, err
	}
	return c, changed, nil
}

// apply is Apply inside the caller's transaction: every status change
// (DeleteApp's too) goes through it. The connection's row is read FOR
// UPDATE, so a concurrent change of the same connection, from any replica,
// waits for this transaction and then decides from the status it left: a
// deleted connection stays deleted.
func (s *Store) apply(ctx context.Context, tx *writeTx, id string, action store.Action, by store.Actor) (c store.Connection, changed bool, err error) {
	c, err = getConnection(ctx, tx, id, " FOR UPDATE")
	if err != nil {
		return c, false, err
	}
	to, ch, err := store.Next(c.Status, action)
	if err != nil || !ch {
		return c, false, err
	}
	from := c.Status
	c.Status, c.UpdatedAt, c.Revision = to, s.now(), tx.nextRevision()
	b := &pgx.Batch{}
	b.Queue("UPDATE connections SET status = $2, updated_at = $3, revision = $4 WHERE id = $1",
		c.ID, string(c.Status), c.UpdatedAt, c.Revision)
	s.queueRecords(b, c, string(action), from, by)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return c, false, err
	}
	return c, true, nil
}

// queueRecords adds to b the other records of the change just made to c:
// its change log entry (dropping the entries beyond the log's size; every
// revision is one change, so the log stays contiguous from its oldest
// entry) and its audit entry. They go in the change's transaction.
func (s *Store) queueRecords(b *pgx.Batch, c store.Connection, action string, from store.Status, by store.Actor) {
	b.Queue(`INSERT INTO changes (revision, connection_id, status, changed_at, org_id, user_id) VALUES ($1, $2, $3, $4, $5, $6)`,
		c.Revision, c.ID, string(c.Status), c.UpdatedAt, c.OrgID, c.UserID)
	if c.Revision >= s.changeLogSize {
		b.Queue("DELETE FROM changes WHERE revision <= $1", c.Revision-s.changeLogSize)
	}
	b.Queue(`INSERT INTO audit (id, time, actor_id, org_id, connection_id, action, from_status, to_status, request_id, reason)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		c.Revision, c.UpdatedAt, by.ID, c.OrgID, c.ID, action, string(from), string(c.Status), by.RequestID, by.Reason)
}

// Secret implements store.Store. Replicas that start at once may each
// create a value; the first insert wins and every replica returns it.
func (s *Store) Secret(ctx context.Context, name string, create func() ([]byte, error)) ([]byte, error) {
	secret, err := s.secret(ctx, name, create)
	if err != nil {
		return nil, fmt.Errorf("loading secret %q: %w", name, err)
	}
	return secret, nil
}

func (s *Store) secret(ctx context.Context, name string, create func() ([]byte, error)) (secret []byte, err error) {
	const get = "SELECT value FROM secrets WHERE name = $1"
	err = s.pool.QueryRow(ctx, get, name).Scan(&secret)
	if !errors.Is(err, pgx.ErrNoRows) {
		return secret, err
	}
	if secret, err = create(); err != nil {
		return nil, err
	}
	tag, err := s.pool.Exec(ctx, "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING", name, secret)
	if err != nil || tag.RowsAffected() == 1 {
		return secret, err
	}
	// Another replica's insert committed first (ON CONFLICT waited for
	// it): this statement's snapshot, taken after, sees it.
	err = s.pool.QueryRow(ctx, get, name).Scan(&secret)
	return secret, err
}

// querier is what reads need of a pool or a transaction.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

const connectionColumns = "id, name, org_id, user_id, app_id, status, created_at, updated_at, revision"

// getConnection reads one connection; lock is empty or a locking clause.
func getConnection(ctx context.Context, q querier, id, lock string) (store.Connection, error) {
	c, err := scanConnection(q.QueryRow(ctx, "SELECT "+connectionColumns+" FROM connections WHERE id = $1"+lock, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return c, store.ErrNotFound
	}
	if err != nil {
		return c, fmt.Errorf("reading connection %s: %w", id, err)
	}
	return c, nil
}

func scanConnection(row pgx.Row) (c store.Connection, err error) {
	var status string
	err = row.Scan(&c.ID, &c.Name, &c.OrgID, &c.UserID, &c.AppID, &status, &c.CreatedAt, &c.UpdatedAt, &c.Revision)
	c.Status, c.CreatedAt, c.UpdatedAt = store.Status(status), c.CreatedAt.UTC(), c.UpdatedAt.UTC()
	return c, err
}

// writeTx is a writing transaction and the revisions it has taken.
type writeTx struct {
	pgx.Tx
	start    uint64 // the revision when the transaction began
	revision uint64 // the last revision taken; start if none
}

// begin starts a writing transaction and locks the revision counter's row
// before anything else, until the transaction ends.
//
// Revisions come from that one row, not from a sequence: a sequence hands
// out numbers in call order, so a reader could see N+1 committed while N is
// still in flight (and skip N for good). With the row locked, the next
// writer gets its numbers only after this one has committed (or rolled
// back, handing the same numbers on): numbers are taken in commit order,
// with no gaps. PostgreSQL makes a transaction visible to new snapshots
// before it releases its locks, so any snapshot that sees N+1 committed
// also sees N: a reader of the change log sees a prefix of the history,
// never a hole it would have to wait for.
//
// The counter comes first in every writer's lock order (then an app's row,
// then connections' rows): a batch that changes several connections locks
// each while it already holds the counter, so a writer that held a
// connection's row while it waited for the counter could deadlock with it.
func (s *Store) begin(ctx context.Context) (*writeTx, error) {
	ptx, err := s.pool.Begin(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", errUnreachable, err)
	}
	tx := &writeTx{Tx: ptx}
	if err := ptx.QueryRow(ctx, "SELECT revision FROM store_revision FOR UPDATE").Scan(&tx.start); err != nil {
		ptx.Rollback(ctx)
		return nil, tx.failed(fmt.Errorf("locking the revision counter: %w", err))
	}
	tx.revision = tx.start
	return tx, nil
}

// nextRevision takes the next store-wide revision, inside tx; commit
// writes the last one taken to the counter's row.
func (tx *writeTx) nextRevision() uint64 {
	tx.revision++
	return tx.revision
}

// failed marks err, which failed tx before its commit, as errUnreachable
// if the connection was lost: the server rolls the transaction back.
func (tx *writeTx) failed(err error) error {
	if tx.Conn().IsClosed() || connectionLost(err) {
		return fmt.Errorf("%w: %w", errUnreachable, err)
	}
	return err
}

// commit stores the last revision tx took and commits it. If it took any,
// a NOTIFY in the transaction wakes the watchers of every replica at the
// commit, and this replica's watchers are woken at once after it.
func (s *Store) commit(ctx context.Context, tx *writeTx) error {
	if tx.revision > tx.start {
		b := &pgx.Batch{}
		b.Queue("UPDATE store_revision SET revision = $1", tx.revision)
		b.Queue("SELECT pg_notify($1, $2)", s.channel, strconv.FormatUint(tx.revision, 10))
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return tx.failed(err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		if tx.Conn().IsClosed() || connectionLost(err) {
			return fmt.Errorf("%w (PostgreSQL), which may or may not have been applied: %w", store.ErrOutcomeUnknown, err)
		}
		return err
	}
	if tx.revision > tx.start {
		s.watch.wake(tx.revision)
	}
	return nil
}

// write runs fn in a transaction of its own and commits it, for the writes
// that are not grouped.
func (s *Store) write(ctx context.Context, fn func(*writeTx) error) error {
	tx, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) // after Commit, a no-op
	if err := fn(tx); err != nil {
		return tx.failed(err)
	}
	return s.commit(ctx, tx)
}

// errUnreachable says why a write was refused when the database cannot be
// reached or the connection was lost before the commit: nothing of the
// write was applied.
var errUnreachable = fmt.Errorf("PostgreSQL is unreachable; nothing was written: %w", store.ErrUnavailable)

// errReadUnreachable is errUnreachable for reads.
var errReadUnreachable = fmt.Errorf("PostgreSQL is unreachable: %w", store.ErrUnavailable)

// readFailed marks a read that failed because PostgreSQL cannot be reached
// (no connection, or one lost on the way) as store.ErrUnavailable, so that
// the API answers 503 rather than 500.
func readFailed(err error) error {
	if connectionLost(err) {
		return fmt.Errorf("%w: %w", errReadUnreachable, err)
	}
	return err
}

// unreachable marks a failure to connect as errUnreachable, keeping the
// cause, for writes outside write.
func unreachable(err error) error {
	if connectionLost(err) {
		return fmt.Errorf("%w: %w", errUnreachable, err)
	}
	return err
}
