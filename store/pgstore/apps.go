package pgstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/conngate/conngate/store"
)

// CreateApp implements store.AppStore. An app is not a connection: it takes
// no revision and no audit entry.
func (s *Store) CreateApp(ctx context.Context, n store.NewApp, by store.Actor) (store.App, error) {
	if err := n.Validate(); err != nil {
		return store.App{}, err
	}
	now := s.now()
	a := store.App{
		ID:           store.NewIDWith("app_", now),
		Name:         n.Name,
		RedirectURIs: slices.Clone(n.RedirectURIs),
		AuthMethod:   n.AuthMethod,
		SecretHash:   bytes.Clone(n.SecretHash),
		OrgID:        n.OrgID,
		CreatedBy:    by.ID,
		CreatedAt:    now,
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO apps (id, name, redirect_uris, auth_method, secret_hash, org_id, created_by, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		a.ID, a.Name, a.RedirectURIs, string(a.AuthMethod), a.SecretHash, a.OrgID, a.CreatedBy, a.CreatedAt)
	if err != nil {
		return store.App{}, fmt.Errorf("creating app: %w", unreachable(err))
	}
	return a, nil
}

const appColumns = "id, name, redirect_uris, auth_method, secret_hash, org_id, created_by, created_at"

func scanApp(row pgx.Row) (a store.App, err error) {
	var method string
	err = row.Scan(&a.ID, &a.Name, &a.RedirectURIs, &method, &a.SecretHash, &a.OrgID, &a.CreatedBy, &a.CreatedAt)
	a.AuthMethod, a.CreatedAt = store.AuthMethod(method), a.CreatedAt.UTC()
	return a, err
}

// GetApp implements store.AppStore.
func (s *Store) GetApp(ctx context.Context, id string) (store.App, error) {
	return getApp(ctx, s.pool, id, "")
}

// getApp reads one app; lock is empty or a locking clause.
func getApp(ctx context.Context, q querier, id, lock string) (store.App, error) {
	a, err := scanApp(q.QueryRow(ctx, "SELECT "+appColumns+" FROM apps WHERE id = $1"+lock, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.App{}, store.ErrAppNotFound
	}
	if err != nil {
		return store.App{}, fmt.Errorf("reading app %s: %w", id, err)
	}
	return a, nil
}

// ListApps implements store.AppStore. Without an organisation it lists
// every app, as List does for connections.
func (s *Store) ListApps(ctx context.Context, q store.AppQuery) (apps []store.App, next string, err error) {
	limit := q.Limit
	if limit <= 0 {
		limit = store.DefaultListLimit
	}
	limit = min(limit, store.MaxListLimit)
	// One more than a page tells whether there is a next page.
	rows, err := s.pool.Query(ctx, "SELECT "+appColumns+` FROM apps
		WHERE ($1 = '' OR org_id = $1) AND id > $2 ORDER BY id LIMIT $3`, q.OrgID, q.After, limit+1)
	if err != nil {
		return nil, "", fmt.Errorf("listing apps: %w", err)
	}
	apps, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.App, error) { return scanApp(row) })
	if err != nil {
		return nil, "", fmt.Errorf("listing apps: %w", err)
	}
	if len(apps) > limit {
		apps = apps[:limit]
		next = apps[limit-1].ID
	}
	return apps, next, nil
}

// SetAppSecret implements store.AppStore.
func (s *Store) SetAppSecret(ctx context.Context, id string, secretHash []byte) (a store.App, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		a, err = getApp(ctx, tx, id, " FOR UPDATE")
		if err != nil {
			return err
		}
		if !a.AuthMethod.Confidential() {
			return &store.InvalidError{Field: "client secret", Reason: "cannot be set for a public app"}
		}
		if len(secretHash) == 0 {
			return &store.InvalidError{Field: "client secret", Reason: "is required for a confidential app"}
		}
		a.SecretHash = bytes.Clone(secretHash)
		_, err = tx.Exec(ctx, "UPDATE apps SET secret_hash = $2 WHERE id = $1", a.ID, a.SecretHash)
		return err
	})
	if err != nil {
		return store.App{}, fmt.Errorf("setting secret of app %s: %w", id, unreachable(err))
	}
	return a, nil
}

// DeleteApp implements store.AppStore. It locks the revision counter first
// (as every writer does), then the app's row, then its connections' rows in
// id order: every writer takes its locks in that order (revision counter,
// app, connection), so writers on different replicas wait for each other
// and never deadlock.
// Each connection is deleted through apply, the path of every status
// change, in this one transaction: the app cannot go while a connection
// made through it stays usable.
func (s *Store) DeleteApp(ctx context.Context, id string, by store.Actor) (deleted []store.Connection, err error) {
	err = s.write(ctx, func(tx *writeTx) error {
		deleted = nil
		if _, err := getApp(ctx, tx, id, " FOR UPDATE"); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, "SELECT id FROM connections WHERE app_id = $1 ORDER BY id FOR UPDATE", id)
		if err != nil {
			return err
		}
		conns, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		for _, cid := range conns {
			c, changed, err := s.apply(ctx, tx, cid, store.ActionDelete, by)
			if err != nil {
				return fmt.Errorf("deleting connection %s: %w", cid, err)
			}
			if changed {
				deleted = append(deleted, c)
			}
		}
		b := &pgx.Batch{}
		b.Queue("DELETE FROM codes WHERE app_id = $1", id)
		b.Queue("DELETE FROM refresh_tokens WHERE app_id = $1", id)
		b.Queue("DELETE FROM apps WHERE id = $1", id)
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return nil, fmt.Errorf("deleting app %s: %w", id, err)
	}
	return deleted, nil
}

// lockApp holds the app's row (shared) until tx ends, and returns
// store.ErrAppNotFound unless it exists: what a transaction creates for an
// app then cannot outlive it, since DeleteApp locks the row exclusively
// before it looks for what to delete.
func lockApp(ctx context.Context, tx pgx.Tx, id string) error {
	var one int
	err := tx.QueryRow(ctx, "SELECT 1 FROM apps WHERE id = $1 FOR KEY SHARE", id).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.ErrAppNotFound
	}
	return err
}
