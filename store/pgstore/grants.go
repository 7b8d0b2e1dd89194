package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/conngate/conngate/store"
)

// codeRetention is how long a code is kept after it expires, used or not,
// so that a replay is still recognised as one (and what the first exchange
// issued can be ended) rather than answered as an unknown code.
const codeRetention = time.Hour

// refreshRetention is how long a rotated refresh token is kept. Until then
// its reuse is recognised and ends the grant; after it, it is an unknown
// token (invalid_grant, the grant goes on).
const refreshRetention = 24 * time.Hour

// errGrantExists: a grant with this hash is stored already. Hashes are of
// 256 random bits, so this is a caller's bug, never a collision.
var errGrantExists = errors.New("a grant with this hash exists")

// SaveCode implements store.GrantStore. It refuses a code for an app that
// does not exist (holding the app's row until the commit, so that no code
// outlives DeleteApp), and prunes the codes past their retention.
func (s *Store) SaveCode(ctx context.Context, c store.AuthCode) error {
	if len(c.Hash) == 0 {
		return &store.InvalidError{Field: "code", Reason: "hash is required"}
	}
	v, err := json.Marshal(c)
	if err != nil {
		return err
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "DELETE FROM codes WHERE expires_at < $1", s.now().Add(-codeRetention)); err != nil {
			return err
		}
		if err := lockApp(ctx, tx, c.AppID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "INSERT INTO codes (hash, app_id, expires_at, code) VALUES ($1, $2, $3, $4)", c.Hash, c.AppID, c.ExpiresAt, v)
		return duplicateGrant(err)
	})
	if err != nil {
		return fmt.Errorf("saving authorisation code: %w", unreachable(err))
	}
	return nil
}

// GetCode implements store.GrantStore.
func (s *Store) GetCode(ctx context.Context, hash []byte) (store.AuthCode, error) {
	c, _, err := getCode(ctx, s.pool, hash, "")
	return c, err
}

// TakeCode implements store.GrantStore. The code's row is locked, so of
// concurrent takes on any replicas exactly one finds it unused.
func (s *Store) TakeCode(ctx context.Context, hash []byte) (c store.AuthCode, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var used bool
		if c, used, err = getCode(ctx, tx, hash, " FOR UPDATE"); err != nil {
			return err
		}
		if used {
			return store.ErrCodeUsed
		}
		_, err = tx.Exec(ctx, "UPDATE codes SET used_at = $2 WHERE hash = $1", hash, s.now())
		return err
	})
	if err != nil && !errors.Is(err, store.ErrCodeUsed) && !errors.Is(err, store.ErrGrantNotFound) {
		return c, fmt.Errorf("taking authorisation code: %w", unreachable(err))
	}
	return c, err
}

// RedeemCode implements store.GrantStore, in one transaction that may
// share its commit with others' (group commit), as Create's does. The
// code's row is locked, and its app's (shared, as lockApp does): of
// concurrent redemptions on any replicas exactly one finds the code
// unused, and DeleteApp runs wholly before (the code is gone with the app)
// or wholly after (it deletes the connection).
func (s *Store) RedeemCode(ctx context.Context, hash []byte, first store.RefreshToken) (code store.AuthCode, conn store.Connection, err error) {
	now := s.now()
	id := store.NewID(now)
	err = s.writeGrouped(ctx, func(ctx context.Context, tx *writeTx) error {
		c, _, err := scanCode(tx.QueryRow(ctx, `SELECT codes.code, codes.used_at FROM codes JOIN apps ON apps.id = codes.app_id
			WHERE codes.hash = $1 FOR UPDATE OF codes FOR KEY SHARE OF apps`, hash))
		code = c
		if err != nil {
			return err
		}
		n, err := c.Redeemable(first)
		if err != nil {
			return err
		}
		b := &pgx.Batch{}
		conn = s.queueInsert(b, tx, store.Connection{ID: id, Name: n.Name, OrgID: n.OrgID, UserID: n.UserID, AppID: n.AppID,
			Status: store.StatusActive, CreatedAt: now, UpdatedAt: now}, c.ApprovedBy)
		first.ConnectionID, first.RotatedAt, first.ReplacedBy = conn.ID, time.Time{}, nil
		if err := queueNewRefreshToken(b, first); err != nil {
			return err
		}
		c.ConnectionID = conn.ID
		v, err := json.Marshal(c)
		if err != nil {
			return err
		}
		b.Queue("UPDATE codes SET used_at = $2, code = $3 WHERE hash = $1", hash, now, v)
		if err := duplicateGrant(tx.SendBatch(ctx, b).Close()); err != nil {
			return err
		}
		code = c
		return nil
	})
	switch {
	case err == nil:
		return code, conn, nil
	case errors.Is(err, store.ErrCodeUsed) || errors.Is(err, store.ErrGrantNotFound):
		return code, store.Connection{}, err
	}
	return code, store.Connection{}, fmt.Errorf("redeeming authorisation code: %w", err)
}

// getCode returns the code with hash and whether it was taken, with
// store.ErrCodeUsed (and the code) if it was.
func getCode(ctx context.Context, q querier, hash []byte, lock string) (store.AuthCode, bool, error) {
	return scanCode(q.QueryRow(ctx, "SELECT code, used_at FROM codes WHERE hash = $1"+lock, hash))
}

// scanCode reads a code from a row of its code and used_at columns.
func scanCode(row pgx.Row) (c store.AuthCode, used bool, err error) {
	var (
		v      []byte
		usedAt *time.Time
	)
	err = row.Scan(&v, &usedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, false, store.ErrGrantNotFound
	}
	if err != nil {
		return c, false, fmt.Errorf("reading authorisation code: %w", err)
	}
	if err := json.Unmarshal(v, &c); err != nil {
		return c, false, fmt.Errorf("decoding authorisation code: %w", err)
	}
	if usedAt != nil {
		return c, true, store.ErrCodeUsed
	}
	return c, false, nil
}

// SaveRefreshToken implements store.GrantStore. Like SaveCode it refuses a
// token for an app that does not exist.
func (s *Store) SaveRefreshToken(ctx context.Context, t store.RefreshToken) error {
	t.RotatedAt, t.ReplacedBy = time.Time{}, nil
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := lockApp(ctx, tx, t.AppID); err != nil {
			return err
		}
		return putNewRefreshToken(ctx, tx, t)
	})
	if err != nil {
		return fmt.Errorf("saving refresh token: %w", unreachable(err))
	}
	return nil
}

// GetRefreshToken implements store.GrantStore.
func (s *Store) GetRefreshToken(ctx context.Context, hash []byte) (store.RefreshToken, error) {
	return getRefreshToken(ctx, s.pool, hash, "")
}

// RotateRefreshToken implements store.GrantStore, with bolt's rules (see
// boltstore's). Locks are taken in the order every writer takes them: the
// app's row (shared: DeleteApp waits, or has removed the token already),
// then the presented token's, then its replacement's; a replacement is
// always newer than the token it replaces, so concurrent rotations lock
// along the chain in one direction and one waits for the other: the
// second sees the first's rotation, as if they had run one after the other.
func (s *Store) RotateRefreshToken(ctx context.Context, hash []byte, next store.RefreshToken, now time.Time, overlap time.Duration) (t store.RefreshToken, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if t, err = getRefreshToken(ctx, tx, hash, ""); err != nil {
			return err
		}
		if err := lockApp(ctx, tx, t.AppID); errors.Is(err, store.ErrAppNotFound) {
			return store.ErrGrantNotFound // the app went; its tokens with it
		} else if err != nil {
			return err
		}
		if t, err = getRefreshToken(ctx, tx, hash, " FOR UPDATE"); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "DELETE FROM refresh_tokens WHERE connection_id = $1 AND rotated_at < $2 AND hash <> $3",
			t.ConnectionID, now.Add(-refreshRetention), hash)
		if err != nil {
			return err
		}
		plan, err := store.PlanRotation(t, next, now, overlap, func(h []byte) (store.RefreshToken, error) {
			return getRefreshToken(ctx, tx, h, " FOR UPDATE")
		})
		if err != nil {
			return err
		}
		t = plan.Presented
		if err := putNewRefreshToken(ctx, tx, plan.New); err != nil {
			return err
		}
		for _, u := range plan.Updated {
			if err := putRefreshToken(ctx, tx, u); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, store.ErrRefreshReused) && !errors.Is(err, store.ErrGrantNotFound) {
		return t, fmt.Errorf("rotating refresh token: %w", unreachable(err))
	}
	return t, err
}

// getRefreshToken reads one token; lock is empty or a locking clause.
func getRefreshToken(ctx context.Context, q querier, hash []byte, lock string) (t store.RefreshToken, err error) {
	var v []byte
	err = q.QueryRow(ctx, "SELECT token FROM refresh_tokens WHERE hash = $1"+lock, hash).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return t, store.ErrGrantNotFound
	}
	if err != nil {
		return t, fmt.Errorf("reading refresh token: %w", err)
	}
	if err := json.Unmarshal(v, &t); err != nil {
		return t, fmt.Errorf("decoding refresh token: %w", err)
	}
	return t, nil
}

// putNewRefreshToken stores a token under a hash not used before.
func putNewRefreshToken(ctx context.Context, tx pgx.Tx, t store.RefreshToken) error {
	b := &pgx.Batch{}
	if err := queueNewRefreshToken(b, t); err != nil {
		return err
	}
	return duplicateGrant(tx.SendBatch(ctx, b).Close())
}

// queueNewRefreshToken adds to b the insert of a token under a hash not
// used before; a used one fails the batch with a primary key violation.
func queueNewRefreshToken(b *pgx.Batch, t store.RefreshToken) error {
	if len(t.Hash) == 0 {
		return &store.InvalidError{Field: "refresh token", Reason: "hash is required"}
	}
	v, err := json.Marshal(t)
	if err != nil {
		return err
	}
	b.Queue("INSERT INTO refresh_tokens (hash, app_id, connection_id, token) VALUES ($1, $2, $3, $4)", t.Hash, t.AppID, t.ConnectionID, v)
	return nil
}

// putRefreshToken rewrites a stored token (its rotation).
func putRefreshToken(ctx context.Context, tx pgx.Tx, t store.RefreshToken) error {
	v, err := json.Marshal(t)
	if err != nil {
		return err
	}
	var rotatedAt *time.Time
	if !t.RotatedAt.IsZero() {
		rotatedAt = &t.RotatedAt
	}
	_, err = tx.Exec(ctx, "UPDATE refresh_tokens SET rotated_at = $2, token = $3 WHERE hash = $1", t.Hash, rotatedAt, v)
	return err
}

// duplicateGrant turns a primary key violation into errGrantExists.
func duplicateGrant(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return errGrantExists
	}
	return err
}
