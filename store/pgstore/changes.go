package pgstore

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/conngate/conngate/store"
)

// Changes implements store.Store. The latest revision and the log are read
// in one statement, so from one snapshot.
func (s *Store) Changes(ctx context.Context, after uint64, limit int) ([]store.Change, error) {
	// One row more than asked is never needed, but at least one is: it
	// tells whether after+1 is still in the log.
	rows, err := s.pool.Query(ctx, `
SELECT r.revision, c.revision, c.connection_id, c.status, c.changed_at, c.org_id, c.user_id
FROM store_revision r
LEFT JOIN LATERAL (
	SELECT * FROM changes WHERE revision > $1 ORDER BY revision LIMIT $2
) c ON true`, after, max(limit, 1))
	if err != nil {
		return nil, fmt.Errorf("reading the change log: %w", readFailed(err))
	}
	defer rows.Close()
	var (
		changes []store.Change
		latest  uint64
	)
	for rows.Next() {
		var (
			rev                   *uint64
			id, status, org, user *string
			at                    *time.Time
		)
		if err := rows.Scan(&latest, &rev, &id, &status, &at, &org, &user); err != nil {
			return nil, fmt.Errorf("reading the change log: %w", readFailed(err))
		}
		if rev != nil {
			changes = append(changes, store.Change{Revision: *rev, ID: *id, Status: store.Status(*status), ChangedAt: at.UTC(), OrgID: *org, UserID: *user})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading the change log: %w", readFailed(err))
	}
	switch {
	case after > latest:
		return nil, store.ErrReplayUnavailable
	case after == latest:
		return nil, nil
	case len(changes) == 0 || changes[0].Revision != after+1:
		return nil, store.ErrReplayUnavailable // after+1 has been dropped
	}
	return changes[:min(len(changes), max(limit, 0))], nil
}

// Revision implements store.Store.
func (s *Store) Revision(ctx context.Context) (rev uint64, err error) {
	if err := s.pool.QueryRow(ctx, "SELECT revision FROM store_revision").Scan(&rev); err != nil {
		return 0, fmt.Errorf("reading the revision: %w", readFailed(err))
	}
	return rev, nil
}

// Changed implements store.Store.
func (s *Store) Changed() <-chan struct{} { return s.watch.current() }

// watchers is the channel Changed hands out, closed and replaced at each
// wake-up.
type watchers struct {
	mu      sync.Mutex
	changed chan struct{}
	woken   uint64 // the highest revision watchers were woken for
}

func (w *watchers) current() chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.changed
}

// wake wakes the watchers for a change committed at rev, unless they were
// woken already for rev or a later revision: revisions are taken in commit
// order, so whoever reads the log after a wake-up for a later revision reads
// rev too. This replica's own commits wake its watchers before the write
// returns, and their notification, arriving a moment later, wakes no one
// again (a watcher that came after the write is not woken for it).
func (w *watchers) wake(rev uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if rev <= w.woken {
		return
	}
	w.woken = rev
	close(w.changed)
	w.changed = make(chan struct{})
}

// resync wakes every watcher, whatever it has seen, and takes rev (read
// after LISTEN took effect) as the revision they were woken for: what was
// notified while nobody listened is read by the woken watchers, and a
// store whose revision went back (restored from a backup) wakes them again
// from there.
func (w *watchers) resync(rev uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.woken = rev
	close(w.changed)
	w.changed = make(chan struct{})
}

// signal is a wake-up for whoever waits on it: a channel closed and
// replaced at each wake.
type signal struct {
	mu sync.Mutex
	ch chan struct{} // nil until someone waits
}

func (s *signal) wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

func (s *signal) wake() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
}

// gatewaysSavedPrefix begins the payload of a notification that a replica
// saved gateways (SaveGateways, ForgetGateway); the saving store's id
// follows, so that it does not wake its own waiters. A change's payload is
// its revision: the two never mix up, and a store that knows only changes
// ignores the gateways'.
const gatewaysSavedPrefix = "gateways:"

// notifyChannel names the NOTIFY channel of a schema's changes (and saves of
// gateways), so that stores in other schemas of the database are not woken
// by them. A channel name is at most 63 bytes; a longer schema name is hashed.
func notifyChannel(schema string) string {
	name := "conngate_changes." + schema
	if len(name) > 63 {
		sum := sha256.Sum256([]byte(schema))
		name = "conngate_changes." + hex.EncodeToString(sum[:16])
	}
	return name
}

// Reconnection delays of the listener: doubling from the first to the
// last, back to the first once a connection has listened for a while.
const (
	listenRetryMin = 50 * time.Millisecond
	listenRetryMax = 5 * time.Second
)

// listener holds one connection (outside the pool) in LISTEN on the
// store's channel, and wakes the watchers at each notification: of changes,
// and of gateways other replicas saved. A notification is only a wake-up:
// one sent while the connection was down is lost, so after every
// reconnection every watcher is woken to read the change log (or the
// gateways), which misses nothing.
type listener struct {
	cancel context.CancelFunc
	done   chan struct{}
	pid    atomic.Uint32 // the listening backend's process id; 0 while not listening

	// self tells this store's notifications of saved gateways from other
	// replicas'; gatewaysSaved wakes at other replicas' (GatewaysSaved).
	self          string
	gatewaysSaved signal
}

// start listens on a first connection before it returns, so that a store
// that opens is woken by every change committed after Open, and an
// unreachable database fails Open.
func (l *listener) start(ctx context.Context, s *Store, cfg *pgx.ConnConfig, logger *zap.Logger) error {
	id := make([]byte, 8)
	rand.Read(id) // never fails
	l.self = hex.EncodeToString(id)
	conn, err := l.connect(ctx, s, cfg)
	if err != nil {
		return fmt.Errorf("listening for changes: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	l.cancel, l.done = cancel, make(chan struct{})
	go func() {
		defer close(l.done)
		defer func() {
			if p := recover(); p != nil {
				logger.Error("change listener panicked; watchers of this replica are no longer woken by other replicas' changes",
					zap.Any("panic", p), zap.ByteString("stack", debug.Stack()))
			}
		}()
		delay := listenRetryMin
		for {
			began := time.Now()
			err := l.listen(runCtx, s, conn)
			if runCtx.Err() != nil {
				return
			}
			if time.Since(began) > listenRetryMax {
				delay = listenRetryMin
			}
			for {
				logger.Warn("change listener lost its database connection; reconnecting",
					zap.Error(err), zap.Duration("retry_in", delay))
				select {
				case <-runCtx.Done():
					return
				case <-time.After(delay):
				}
				delay = min(2*delay, listenRetryMax)
				if conn, err = l.connect(runCtx, s, cfg); err == nil {
					break
				}
				if runCtx.Err() != nil {
					return
				}
			}
		}
	}()
	return nil
}

// connect opens a connection, listens, and resyncs the watchers.
func (l *listener) connect(ctx context.Context, s *Store, cfg *pgx.ConnConfig) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	var rev uint64
	_, err = conn.Exec(ctx, "LISTEN "+pgx.Identifier{s.channel}.Sanitize())
	if err == nil {
		err = conn.QueryRow(ctx, "SELECT revision FROM store_revision").Scan(&rev)
	}
	if err != nil {
		closeConn(conn)
		return nil, err
	}
	s.watch.resync(rev)
	l.gatewaysSaved.wake()
	l.pid.Store(conn.PgConn().PID())
	return conn, nil
}

// listen wakes watchers at each notification until the connection fails
// or ctx ends, and then closes the connection.
func (l *listener) listen(ctx context.Context, s *Store, conn *pgx.Conn) error {
	defer func() {
		l.pid.Store(0)
		closeConn(conn)
	}()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if from, ok := strings.CutPrefix(n.Payload, gatewaysSavedPrefix); ok {
			if from != l.self {
				l.gatewaysSaved.wake()
			}
			continue
		}
		rev, err := strconv.ParseUint(n.Payload, 10, 64)
		if err != nil {
			continue // not sent by a store: every commit's carries its revision
		}
		s.watch.wake(rev)
	}
}

func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	conn.Close(ctx)
}

func (l *listener) stop() {
	l.cancel()
	<-l.done
}
