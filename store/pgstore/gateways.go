package pgstore

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/conngate/conngate/store"
)

var _ store.GatewayWatcher = (*Store)(nil)

// SaveGateways implements store.Store, in one transaction. SeenAt is kept
// to the microsecond. A save of some gateways wakes the other replicas'
// GatewaysSaved at its commit.
func (s *Store) SaveGateways(ctx context.Context, seen []store.GatewaySeen, forgetBefore time.Time) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		// What is saved here is soft: re-saved every couple of seconds
		// while a process is connected, and an acknowledgement lost in a
		// crash of the database only makes its process count as behind
		// until it acknowledges again. Not waiting for the WAL flush takes
		// a disk write off the path of every cross-replica ?wait=applied.
		b.Queue("SET LOCAL synchronous_commit TO off")
		for _, g := range seen {
			b.Queue(`INSERT INTO gateways (gateway_id, instance, applied_revision, seen_at) VALUES ($1, $2, $3, $4)
				ON CONFLICT (gateway_id, instance) DO UPDATE SET applied_revision = excluded.applied_revision, seen_at = excluded.seen_at`,
				g.GatewayID, g.Instance, g.AppliedRevision, g.SeenAt)
		}
		b.Queue("DELETE FROM gateways WHERE seen_at < $1", forgetBefore)
		if len(seen) > 0 {
			s.queueGatewaysSaved(b)
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return fmt.Errorf("saving gateways: %w", unreachable(err))
	}
	return nil
}

// ForgetGateway implements store.Store. It wakes the other replicas'
// GatewaysSaved: one may be waiting for the process that left.
func (s *Store) ForgetGateway(ctx context.Context, gatewayID, instance string) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		b.Queue("DELETE FROM gateways WHERE gateway_id = $1 AND instance = $2", gatewayID, instance)
		s.queueGatewaysSaved(b)
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return fmt.Errorf("forgetting gateway %s: %w", gatewayID, unreachable(err))
	}
	return nil
}

// queueGatewaysSaved adds to b the notification that this store saved
// gateways; in a transaction, it is sent at the commit.
func (s *Store) queueGatewaysSaved(b *pgx.Batch) {
	b.Queue("SELECT pg_notify($1, $2)", s.channel, gatewaysSavedPrefix+s.listener.self)
}

// GatewaysSaved implements store.GatewayWatcher: other replicas' saves
// arrive on the store's LISTEN connection, as changes do.
func (s *Store) GatewaysSaved() <-chan struct{} { return s.listener.gatewaysSaved.wait() }

// Gateways implements store.Store.
func (s *Store) Gateways(ctx context.Context, since time.Time) ([]store.GatewaySeen, error) {
	rows, err := s.pool.Query(ctx, `SELECT gateway_id, instance, applied_revision, seen_at FROM gateways
		WHERE seen_at >= $1 ORDER BY gateway_id, instance`, since)
	if err != nil {
		return nil, fmt.Errorf("reading gateways: %w", err)
	}
	seen, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (g store.GatewaySeen, err error) {
		err = row.Scan(&g.GatewayID, &g.Instance, &g.AppliedRevision, &g.SeenAt)
		g.SeenAt = g.SeenAt.UTC()
		return g, err
	})
	if err != nil {
		return nil, fmt.Errorf("reading gateways: %w", err)
	}
	return seen, nil
}
