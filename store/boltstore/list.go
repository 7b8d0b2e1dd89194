package boltstore

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"

	"github.com/conngate/conngate/store"
)

// List implements store.Store. With an organisation it walks that
// organisation's index range only, so a page costs the same however many
// other organisations there are.
func (s *Store) List(_ context.Context, q store.ListQuery) (conns []store.Connection, next string, err error) {
	limit := q.Limit
	if limit <= 0 {
		limit = store.DefaultListLimit
	}
	limit = min(limit, store.MaxListLimit)

	search := strings.ToLower(q.Search)
	var prefilter []byte
	if search != "" && !strings.ContainsAny(search, jsonEscaped) && utf8.ValidString(search) {
		prefilter = []byte(search)
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		// One more than a page tells whether there is a next page.
		records := tx.Bucket(bucketConnections)
		collect := func(id []byte) (bool, error) {
			// Searching decodes only the records whose raw JSON could match:
			// decoding every record of a large organisation costs far more.
			if prefilter != nil && !bytes.HasPrefix(id, prefilter) && !bytes.Contains(bytes.ToLower(records.Get(id)), prefilter) {
				return false, nil
			}
			c, err := getConnection(tx, string(id))
			if err != nil {
				return false, err
			}
			if (len(q.Statuses) == 0 || slices.Contains(q.Statuses, c.Status)) && (q.UserID == "" || c.UserID == q.UserID) &&
				(q.OrgID == "" || c.OrgID == q.OrgID) && matches(c, search) {
				conns = append(conns, c)
			}
			return len(conns) > limit, nil
		}
		switch {
		case q.AppID != "":
			// An app's connections can be in several organisations.
			return walkIndex(tx.Bucket(bucketConnsByApp).Cursor(), orgKey(q.AppID, ""), q.After, collect)
		case q.OrgID != "":
			return walkIndex(tx.Bucket(bucketByOrg).Cursor(), orgKey(q.OrgID, ""), q.After, collect)
		}
		return walkIndex(tx.Bucket(bucketConnections).Cursor(), nil, q.After, collect)
	})
	if err != nil {
		return nil, "", err
	}
	if len(conns) > limit {
		conns = conns[:limit]
		next = conns[limit-1].ID
	}
	return conns, next, nil
}

// jsonEscaped are the characters encoding/json may write escaped (besides
// control characters, which names cannot hold): a search with them cannot be
// looked for in the raw JSON.
const jsonEscaped = "<>&\"\\\u2028\u2029"

// matches applies ListQuery.Search; search is already lower case.
func matches(c store.Connection, search string) bool {
	return search == "" || strings.HasPrefix(c.ID, search) || strings.Contains(strings.ToLower(c.Name), search)
}

// walkIndex visits, in key order, the ids of the keys that start with prefix
// and whose id part comes after the cursor, until visit says stop.
func walkIndex(cur *bolt.Cursor, prefix []byte, after string, visit func(id []byte) (stop bool, err error)) error {
	start := append(append([]byte(nil), prefix...), after...)
	k, _ := cur.Seek(start)
	if after != "" && bytes.Equal(k, start) {
		k, _ = cur.Next()
	}
	for ; k != nil && bytes.HasPrefix(k, prefix); k, _ = cur.Next() {
		stop, err := visit(k[len(prefix):])
		if err != nil || stop {
			return err
		}
	}
	return nil
}
