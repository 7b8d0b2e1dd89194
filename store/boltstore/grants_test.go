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
