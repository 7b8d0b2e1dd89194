package pgstore

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/conngate/conngate/store"
)

// SaveGateways implements store.Store, in one transaction. SeenAt is kept
// to the microsecond.
func (s *Store) SaveGateways(ctx context.Context, seen []store.GatewaySeen, forgetBefore time.Time) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		for _, g := range seen {
			b.Queue(`INSERT INTO gateways (gateway_id, instance, applied_revision, seen_at) VALUES ($1, $2, $3, $4)
				ON CONFLICT (gateway_id, instance) DO UPDATE SET applied_revision = excluded.applied_revision, seen_at = excluded.seen_at`,
				g.GatewayID, g.Instance, g.AppliedRevision, g.SeenAt)
		}
		b.Queue("DELETE FROM gateways WHERE seen_at < $1", forgetBefore)
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return fmt.Errorf("saving gateways: %w", unreachable(err))
	}
	return nil
}

// ForgetGateway implements store.Store.
func (s *Store) ForgetGateway(ctx context.Context, gatewayID, instance string) error {
	if _, err := s.pool.Exec(ctx, "DELETE FROM gateways WHERE gateway_id = $1 AND instance = $2", gatewayID, instance); err != nil {
		return fmt.Errorf("forgetting gateway %s: %w", gatewayID, unreachable(err))
	}
	return nil
}

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
