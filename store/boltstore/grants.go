package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/conngate/conngate/store"
)

// Buckets of grants. Codes and tokens are found by their hash; the indexes
// let a code be pruned after its expiry, and an app's grants be dropped with
// it.
var (
	bucketCodes         = []byte("codes")           // sha-256 -> JSON codeRecord
	bucketCodesByExpiry = []byte("codes_by_expiry") // expires_at (unix ms, uint64 big-endian) sha-256 -> empty
	bucketRefreshTokens = []byte("refresh_tokens")  // sha-256 -> JSON store.RefreshToken
	bucketGrantsByApp   = []byte("grants_by_app")   // app id 0x00 kind sha-256 -> empty; kind is kindCode or kindRefresh
	bucketRefreshByConn = []byte("refresh_by_conn") // connection id 0x00 sha-256 -> empty; created on first use
)

const (
	kindCode    byte = 'c'
	kindRefresh byte = 'r'
)

// codeRetention is how long a code is kept after it expires, used or not,
// so that a replay is still recognised as one (and what the first exchange
// issued can be ended) rather than answered as an unknown code.
const codeRetention = time.Hour

// refreshRetention is how long a rotated refresh token is kept. Until then
// its reuse is recognised and ends the grant; after it, it is an unknown
// token (invalid_grant, the grant goes on). It bounds what a connection
// keeps to the refreshes of a day, however often its app refreshes.
const refreshRetention = 24 * time.Hour

// errGrantExists: a grant with this hash is stored already. Hashes are of
// 256 random bits, so this is a caller's bug, never a collision.
var errGrantExists = errors.New("a grant with this hash exists")

// codeRecord is a stored code: the code and when it was taken.
type codeRecord struct {
	store.AuthCode
	UsedAt time.Time `json:"used_at,omitzero"`
}

// SaveCode implements store.GrantStore. It refuses a code for an app that
// does not exist, so that no code outlives DeleteApp, and prunes the codes
// past their retention: saving is rare, and pruning there keeps the bucket
// to the codes of the last hour or so without a background task.
func (s *Store) SaveCode(_ context.Context, c store.AuthCode) error {
	if len(c.Hash) == 0 {
		return &store.InvalidError{Field: "code", Reason: "hash is required"}
	}
	v, err := json.Marshal(codeRecord{AuthCode: c})
	if err != nil {
		return err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		if err := pruneCodes(tx, s.now().Add(-codeRetention)); err != nil {
			return err
		}
		if err := requireApp(tx, c.AppID); err != nil {
			return err
		}
		codes := tx.Bucket(bucketCodes)
		if codes.Get(c.Hash) != nil {
			return errGrantExists
		}
		if err := codes.Put(c.Hash, v); err != nil {
			return err
		}
		if err := tx.Bucket(bucketCodesByExpiry).Put(expiryKey(c), nil); err != nil {
			return err
		}
		return tx.Bucket(bucketGrantsByApp).Put(grantKey(c.AppID, kindCode, c.Hash), nil)
	})
	if err != nil {
		return fmt.Errorf("saving authorisation code: %w", err)
	}
	return nil
}

// GetCode implements store.GrantStore.
func (s *Store) GetCode(_ context.Context, hash []byte) (c store.AuthCode, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		c, _, err = unusedCode(tx, hash)
		return err
	})
	return c, err
}

// TakeCode implements store.GrantStore.
func (s *Store) TakeCode(_ context.Context, hash []byte) (c store.AuthCode, err error) {
	err = s.db.Update(func(tx *bolt.Tx) error {
		var rec codeRecord
		if c, rec, err = unusedCode(tx, hash); err != nil {
			return err
		}
		rec.UsedAt = s.now()
		v, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		return tx.Bucket(bucketCodes).Put(hash, v)
	})
	return c, err
}

// RedeemCode implements store.GrantStore, in one write transaction that
// may share its commit with others' (group commit), as Create's does.
func (s *Store) RedeemCode(_ context.Context, hash []byte, first store.RefreshToken) (code store.AuthCode, conn store.Connection, err error) {
	now := s.now()
	id := store.NewID(now)
	err = s.update(func(tx *bolt.Tx) error {
		c, rec, err := unusedCode(tx, hash)
		code = c
		if err != nil {
			return err
		}
		n, err := c.Redeemable(first)
		if err != nil {
			return err
		}
		conn, err = s.insert(tx, store.Connection{ID: id, Name: n.Name, OrgID: n.OrgID, UserID: n.UserID, AppID: n.AppID,
			Status: store.StatusActive, CreatedAt: now, UpdatedAt: now}, code.ApprovedBy)
		if err != nil {
			return err
		}
		first.ConnectionID, first.RotatedAt, first.ReplacedBy = conn.ID, time.Time{}, nil
		if err := putNewRefreshToken(tx, first); err != nil {
			return err
		}
		rec.ConnectionID, rec.UsedAt = conn.ID, now
		v, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		code = rec.AuthCode
		return tx.Bucket(bucketCodes).Put(hash, v)
	})
	switch {
	case err == nil:
		return code, conn, nil
	case errors.Is(err, store.ErrCodeUsed) || errors.Is(err, store.ErrGrantNotFound):
		return code, store.Connection{}, err
	}
	return code, store.Connection{}, fmt.Errorf("redeeming authorisation code: %w", err)
}

// unusedCode returns the code with hash, and ErrCodeUsed (with the code)
// when it was taken.
func unusedCode(tx *bolt.Tx, hash []byte) (store.AuthCode, codeRecord, error) {
	rec, err := getCode(tx, hash)
	if err != nil {
		return store.AuthCode{}, rec, err
	}
	if !rec.UsedAt.IsZero() {
		return rec.AuthCode, rec, store.ErrCodeUsed
	}
	return rec.AuthCode, rec, nil
}

// SaveRefreshToken implements store.GrantStore. Like SaveCode it refuses a
// token for an app that does not exist.
func (s *Store) SaveRefreshToken(_ context.Context, t store.RefreshToken) error {
	t.RotatedAt, t.ReplacedBy = time.Time{}, nil
	err := s.db.Update(func(tx *bolt.Tx) error {
		if err := requireApp(tx, t.AppID); err != nil {
			return err
		}
		return putNewRefreshToken(tx, t)
	})
	if err != nil {
		return fmt.Errorf("saving refresh token: %w", err)
	}
	return nil
}

// GetRefreshToken implements store.GrantStore.
func (s *Store) GetRefreshToken(_ context.Context, hash []byte) (t store.RefreshToken, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		t, err = getRefreshToken(tx, hash)
		return err
	})
	return t, err
}

// RotateRefreshToken implements store.GrantStore. It returns the presented
// token as it is after the call (rotated), read in the rotating transaction.
// The new token must be of the presented token's app and connection (else
// an *store.InvalidError). An overlap of zero or less allows no retry.
//
// The token rotated last is the one whose replacement is current: a chain
// has one current token, and only the token whose replacement it is can
// satisfy the overlap rule, so a token two rotations back is always a
// reuse. A retry through the overlap points the presented token at the new
// current one, so it may be retried again until its overlap ends.
func (s *Store) RotateRefreshToken(_ context.Context, hash []byte, next store.RefreshToken, now time.Time, overlap time.Duration) (t store.RefreshToken, err error) {
	err = s.db.Update(func(tx *bolt.Tx) error {
		t, err = getRefreshToken(tx, hash)
		if err != nil {
			return err
		}
		if err := pruneRotated(tx, t.ConnectionID, now.Add(-refreshRetention)); err != nil {
			return err
		}
		plan, err := store.PlanRotation(t, next, now, overlap, func(h []byte) (store.RefreshToken, error) { return getRefreshToken(tx, h) })
		if err != nil {
			return err
		}
		t = plan.Presented
		if err := putNewRefreshToken(tx, plan.New); err != nil {
			return err
		}
		for _, u := range plan.Updated {
			if err := putRefreshToken(tx, u); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, store.ErrRefreshReused) && !errors.Is(err, store.ErrGrantNotFound) {
		return t, fmt.Errorf("rotating refresh token: %w", err)
	}
	return t, err
}

// dropGrants removes every code and refresh token of the app, inside
// DeleteApp's transaction.
func dropGrants(tx *bolt.Tx, appID string) error {
	prefix := orgKey(appID, "")
	var keys [][]byte
	cur := tx.Bucket(bucketGrantsByApp).Cursor()
	for k, _ := cur.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = cur.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range keys {
		kind, hash := k[len(prefix)], k[len(prefix)+1:]
		switch kind {
		case kindCode:
			if err := deleteCode(tx, hash); err != nil {
				return err
			}
		case kindRefresh:
			if err := deleteRefreshToken(tx, hash); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketGrantsByApp).Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// pruneCodes removes the codes that expired before cutoff, oldest first.
func pruneCodes(tx *bolt.Tx, cutoff time.Time) error {
	end := uint64(max(cutoff.UnixMilli(), 0))
	cur := tx.Bucket(bucketCodesByExpiry).Cursor()
	for k, _ := cur.First(); k != nil && binary.BigEndian.Uint64(k) < end; k, _ = cur.First() {
		k = bytes.Clone(k)
		hash := k[8:]
		rec, err := getCode(tx, hash)
		if err != nil {
			return err
		}
		if err := tx.Bucket(bucketGrantsByApp).Delete(grantKey(rec.AppID, kindCode, hash)); err != nil {
			return err
		}
		if err := deleteCode(tx, hash); err != nil {
			return err
		}
		if err := tx.Bucket(bucketCodesByExpiry).Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// deleteCode removes a code and its expiry index entry.
func deleteCode(tx *bolt.Tx, hash []byte) error {
	rec, err := getCode(tx, hash)
	if errors.Is(err, store.ErrGrantNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := tx.Bucket(bucketCodesByExpiry).Delete(expiryKey(rec.AuthCode)); err != nil {
		return err
	}
	return tx.Bucket(bucketCodes).Delete(hash)
}

func getCode(tx *bolt.Tx, hash []byte) (codeRecord, error) {
	v := tx.Bucket(bucketCodes).Get(hash)
	if v == nil {
		return codeRecord{}, store.ErrGrantNotFound
	}
	var rec codeRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return codeRecord{}, fmt.Errorf("decoding authorisation code: %w", err)
	}
	return rec, nil
}

func getRefreshToken(tx *bolt.Tx, hash []byte) (store.RefreshToken, error) {
	v := tx.Bucket(bucketRefreshTokens).Get(hash)
	if v == nil {
		return store.RefreshToken{}, store.ErrGrantNotFound
	}
	var t store.RefreshToken
	if err := json.Unmarshal(v, &t); err != nil {
		return store.RefreshToken{}, fmt.Errorf("decoding refresh token: %w", err)
	}
	return t, nil
}

// putNewRefreshToken stores a token under a hash not used before, and
// indexes it under its app.
func putNewRefreshToken(tx *bolt.Tx, t store.RefreshToken) error {
	if len(t.Hash) == 0 {
		return &store.InvalidError{Field: "refresh token", Reason: "hash is required"}
	}
	if tx.Bucket(bucketRefreshTokens).Get(t.Hash) != nil {
		return errGrantExists
	}
	if err := putRefreshToken(tx, t); err != nil {
		return err
	}
	byConn, err := tx.CreateBucketIfNotExists(bucketRefreshByConn)
	if err != nil {
		return err
	}
	if err := byConn.Put(orgKey(t.ConnectionID, string(t.Hash)), nil); err != nil {
		return err
	}
	return tx.Bucket(bucketGrantsByApp).Put(grantKey(t.AppID, kindRefresh, t.Hash), nil)
}

// pruneRotated removes the connection's refresh tokens rotated before
// cutoff, with their index entries.
func pruneRotated(tx *bolt.Tx, connectionID string, cutoff time.Time) error {
	byConn, err := tx.CreateBucketIfNotExists(bucketRefreshByConn)
	if err != nil {
		return err
	}
	prefix := orgKey(connectionID, "")
	var old [][]byte
	cur := byConn.Cursor()
	for k, _ := cur.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = cur.Next() {
		t, err := getRefreshToken(tx, k[len(prefix):])
		if err == nil && !t.RotatedAt.IsZero() && t.RotatedAt.Before(cutoff) {
			old = append(old, bytes.Clone(k[len(prefix):]))
		}
	}
	for _, hash := range old {
		if err := deleteRefreshToken(tx, hash); err != nil {
			return err
		}
	}
	return nil
}

// deleteRefreshToken removes a refresh token and its index entries.
func deleteRefreshToken(tx *bolt.Tx, hash []byte) error {
	t, err := getRefreshToken(tx, hash)
	if errors.Is(err, store.ErrGrantNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if byConn := tx.Bucket(bucketRefreshByConn); byConn != nil {
		if err := byConn.Delete(orgKey(t.ConnectionID, string(hash))); err != nil {
			return err
		}
	}
	if err := tx.Bucket(bucketGrantsByApp).Delete(grantKey(t.AppID, kindRefresh, hash)); err != nil {
		return err
	}
	return tx.Bucket(bucketRefreshTokens).Delete(hash)
}

func putRefreshToken(tx *bolt.Tx, t store.RefreshToken) error {
	v, err := json.Marshal(t)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketRefreshTokens).Put(t.Hash, v)
}

func grantKey(appID string, kind byte, hash []byte) []byte {
	return append(append(orgKey(appID, ""), kind), hash...)
}

func expiryKey(c store.AuthCode) []byte {
	return append(revisionKey(uint64(max(c.ExpiresAt.UnixMilli(), 0))), c.Hash...)
}
