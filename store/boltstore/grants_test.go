package boltstore

import (
	"context"
	"crypto/sha256"
	"errors"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/conngate/conngate/store"
)

// Saving a code prunes the codes past their retention, with their index
// entries, and keeps the others (used or not) so that a replay is still
// recognised. How long codes are kept is this backend's choice, so it is
// tested here rather than in storetest.
func TestSaveCodePrunes(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	clock := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return clock }
	app, err := s.CreateApp(ctx, store.NewApp{Name: "a", RedirectURIs: []string{"https://a.example/cb"}, AuthMethod: store.AuthNone, OrgID: "o"}, store.Actor{})
	if err != nil {
		t.Fatal(err)
	}
	code := func(name string, expires time.Time) store.AuthCode {
		h := sha256.Sum256([]byte(name))
		return store.AuthCode{Hash: h[:], AppID: app.ID, ConnectionID: "conn_x", ExpiresAt: expires}
	}
	stale, usedRecent, recent := code("stale", clock.Add(time.Minute)), code("used", clock.Add(50*time.Minute)), code("recent", clock.Add(55*time.Minute))
	for _, c := range []store.AuthCode{stale, usedRecent, recent} {
		if err := s.SaveCode(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.TakeCode(ctx, usedRecent.Hash); err != nil {
		t.Fatal(err)
	}

	clock = clock.Add(time.Minute + codeRetention + time.Millisecond) // stale is past its retention
	if err := s.SaveCode(ctx, code("new", clock.Add(time.Minute))); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TakeCode(ctx, stale.Hash); !errors.Is(err, store.ErrGrantNotFound) {
		t.Errorf("a code past its retention: %v, want ErrGrantNotFound", err)
	}
	if _, err := s.TakeCode(ctx, usedRecent.Hash); !errors.Is(err, store.ErrCodeUsed) {
		t.Errorf("a used code within its retention: %v, want ErrCodeUsed", err)
	}
	if _, err := s.TakeCode(ctx, recent.Hash); err != nil {
		t.Errorf("an unused code within its retention: %v", err)
	}
	s.db.View(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketCodes, bucketCodesByExpiry, bucketGrantsByApp} {
			if n := tx.Bucket(b).Stats().KeyN; n != 3 {
				t.Errorf("%s holds %d keys, want 3", b, n)
			}
		}
		return nil
	})
}

// Rotating a refresh token prunes the connection's tokens rotated more than
// refreshRetention ago, with their index entries; the newer ones stay, so a
// recent reuse is still recognised.
func TestRotatePrunesOldRefreshTokens(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	app, err := s.CreateApp(ctx, store.NewApp{Name: "a", RedirectURIs: []string{"https://a.example/cb"}, AuthMethod: store.AuthNone, OrgID: "o"}, store.Actor{})
	if err != nil {
		t.Fatal(err)
	}
	token := func(name string) store.RefreshToken {
		h := sha256.Sum256([]byte(name))
		return store.RefreshToken{Hash: h[:], AppID: app.ID, ConnectionID: "conn_x"}
	}
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	a, b, c, d := token("a"), token("b"), token("c"), token("d")
	if err := s.SaveRefreshToken(ctx, a); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		from, to store.RefreshToken
		at       time.Time
	}{{a, b, t0}, {b, c, t0.Add(time.Hour)}, {c, d, t0.Add(refreshRetention + 30*time.Minute)}} {
		if _, err := s.RotateRefreshToken(ctx, step.from.Hash, step.to, step.at, 0); err != nil {
			t.Fatal(err)
		}
	}
	// At the last rotation a (rotated at t0) was past the retention; b
	// (rotated an hour later) was not.
	if _, err := s.GetRefreshToken(ctx, a.Hash); !errors.Is(err, store.ErrGrantNotFound) {
		t.Errorf("a token rotated past the retention: %v, want ErrGrantNotFound", err)
	}
	for _, kept := range []store.RefreshToken{b, c, d} {
		if _, err := s.GetRefreshToken(ctx, kept.Hash); err != nil {
			t.Errorf("a token within the retention was pruned: %v", err)
		}
	}
	s.db.View(func(tx *bolt.Tx) error {
		for _, bucket := range [][]byte{bucketRefreshTokens, bucketRefreshByConn, bucketGrantsByApp} {
			if n := tx.Bucket(bucket).Stats().KeyN; n != 3 {
				t.Errorf("%s holds %d keys, want 3", bucket, n)
			}
		}
		return nil
	})
}
