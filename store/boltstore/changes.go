package boltstore

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/conngate/conngate/store"
)

func revisionKey(rev uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], rev)
	return k[:]
}

// logChange appends c's new status to the change log inside the writing
// transaction and drops the oldest entries beyond the log's size. Every
// revision is one change, so the log is contiguous from its oldest entry.
func (s *Store) logChange(tx *bolt.Tx, c store.Connection) error {
	v, err := json.Marshal(store.Change{Revision: c.Revision, ID: c.ID, Status: c.Status, ChangedAt: c.UpdatedAt, OrgID: c.OrgID, UserID: c.UserID})
	if err != nil {
		return err
	}
	log := tx.Bucket(bucketChanges)
	if err := log.Put(revisionKey(c.Revision), v); err != nil {
		return err
	}
	cur := log.Cursor()
	for k, _ := cur.First(); k != nil && c.Revision-binary.BigEndian.Uint64(k) >= s.changeLogSize; k, _ = cur.First() {
		if err := cur.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// Changes implements store.Store.
func (s *Store) Changes(_ context.Context, after uint64, limit int) (changes []store.Change, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		latest := currentRevision(tx)
		if after > latest {
			return store.ErrReplayUnavailable
		}
		if after == latest {
			return nil
		}
		cur := tx.Bucket(bucketChanges).Cursor()
		k, v := cur.Seek(revisionKey(after + 1))
		if k == nil || binary.BigEndian.Uint64(k) != after+1 {
			return store.ErrReplayUnavailable // after+1 has been dropped
		}
		for ; k != nil && len(changes) < limit; k, v = cur.Next() {
			var c store.Change
			if err := json.Unmarshal(v, &c); err != nil {
				return fmt.Errorf("decoding change %d: %w", binary.BigEndian.Uint64(k), err)
			}
			changes = append(changes, c)
		}
		return nil
	})
	return changes, err
}

// Revision implements store.Store.
func (s *Store) Revision(context.Context) (rev uint64, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		rev = currentRevision(tx)
		return nil
	})
	return rev, err
}

// Changed implements store.Store.
func (s *Store) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// notify wakes every watcher; called after a change has committed.
func (s *Store) notify() {
	s.mu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

func currentRevision(tx *bolt.Tx) uint64 {
	if v := tx.Bucket(bucketMeta).Get(keyRevision); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}
