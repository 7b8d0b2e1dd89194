package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"

	bolt "go.etcd.io/bbolt"

	"github.com/conngate/conngate/store"
)

// writeAudit records the change just made to c, inside its transaction.
func writeAudit(tx *bolt.Tx, c store.Connection, action string, from store.Status, by store.Actor) error {
	v, err := json.Marshal(store.AuditEntry{
		ID: c.Revision, Time: c.UpdatedAt, ActorID: by.ID, OrgID: c.OrgID, ConnectionID: c.ID,
		Action: action, FromStatus: from, ToStatus: c.Status, RequestID: by.RequestID, Reason: by.Reason,
	})
	if err != nil {
		return err
	}
	rev := revisionKey(c.Revision)
	if err := tx.Bucket(bucketAudit).Put(rev, v); err != nil {
		return err
	}
	if err := tx.Bucket(bucketAuditByOrg).Put(append(orgKey(c.OrgID, ""), rev...), nil); err != nil {
		return err
	}
	return tx.Bucket(bucketAuditByConn).Put(append(orgKey(c.ID, ""), rev...), nil)
}

// Audit implements store.Store: newest first, walking the narrowest index.
func (s *Store) Audit(_ context.Context, q store.AuditQuery) (entries []store.AuditEntry, next uint64, err error) {
	limit := q.Limit
	if limit <= 0 {
		limit = store.DefaultListLimit
	}
	limit = min(limit, store.MaxListLimit)
	err = s.db.View(func(tx *bolt.Tx) error {
		log := tx.Bucket(bucketAudit)
		var cur *bolt.Cursor
		var prefix []byte
		switch {
		case q.ConnectionID != "":
			cur, prefix = tx.Bucket(bucketAuditByConn).Cursor(), orgKey(q.ConnectionID, "")
		case q.OrgID != "":
			cur, prefix = tx.Bucket(bucketAuditByOrg).Cursor(), orgKey(q.OrgID, "")
		default:
			cur = log.Cursor()
		}
		// Start just below the cursor (or at the end of the prefix range).
		upper := uint64(1<<64 - 1)
		if q.Before > 0 {
			upper = q.Before - 1
		}
		k, _ := cur.Seek(append(append([]byte(nil), prefix...), revisionKey(upper)...))
		switch {
		case k == nil:
			k, _ = cur.Last()
		case !bytes.HasPrefix(k, prefix) || binary.BigEndian.Uint64(k[len(prefix):]) > upper:
			k, _ = cur.Prev()
		}
		for ; k != nil && bytes.HasPrefix(k, prefix); k, _ = cur.Prev() {
			rev := k[len(prefix):]
			var e store.AuditEntry
			if err := json.Unmarshal(log.Get(rev), &e); err != nil {
				return err
			}
			if q.OrgID != "" && e.OrgID != q.OrgID {
				continue // filtered by connection, and it is another organisation's
			}
			if len(entries) == limit {
				next = entries[limit-1].ID
				return nil
			}
			entries = append(entries, e)
		}
		return nil
	})
	return entries, next, err
}
