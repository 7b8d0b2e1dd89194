package boltstore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/conngate/conngate/store"
)

// Buckets of apps. Connections made through an app stay in its index after
// the app is deleted, as tombstones do: listing by app still finds them.
var (
	bucketApps       = []byte("apps")               // id -> JSON store.App
	bucketAppsByOrg  = []byte("apps_by_org")        // org_id 0x00 id -> empty
	bucketConnsByApp = []byte("connections_by_app") // app id 0x00 connection id -> empty
)

// CreateApp implements store.AppStore. An app is not a connection: it takes
// no revision and no audit entry.
func (s *Store) CreateApp(_ context.Context, n store.NewApp, by store.Actor) (store.App, error) {
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
	err := s.db.Update(func(tx *bolt.Tx) error {
		if err := putApp(tx, a); err != nil {
			return err
		}
		return tx.Bucket(bucketAppsByOrg).Put(orgKey(a.OrgID, a.ID), nil)
	})
	if err != nil {
		return store.App{}, fmt.Errorf("creating app: %w", err)
	}
	return a, nil
}

// GetApp implements store.AppStore.
func (s *Store) GetApp(_ context.Context, id string) (a store.App, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		a, err = getApp(tx, id)
		return err
	})
	return a, err
}

// ListApps implements store.AppStore. Without an organisation it lists
// every app, as List does for connections.
func (s *Store) ListApps(_ context.Context, q store.AppQuery) (apps []store.App, next string, err error) {
	limit := q.Limit
	if limit <= 0 {
		limit = store.DefaultListLimit
	}
	limit = min(limit, store.MaxListLimit)
	err = s.db.View(func(tx *bolt.Tx) error {
		// One more than a page tells whether there is a next page.
		collect := func(id []byte) (bool, error) {
			a, err := getApp(tx, string(id))
			if err != nil {
				return false, err
			}
			apps = append(apps, a)
			return len(apps) > limit, nil
		}
		if q.OrgID != "" {
			return walkIndex(tx.Bucket(bucketAppsByOrg).Cursor(), orgKey(q.OrgID, ""), q.After, collect)
		}
		return walkIndex(tx.Bucket(bucketApps).Cursor(), nil, q.After, collect)
	})
	if err != nil {
		return nil, "", err
	}
	if len(apps) > limit {
		apps = apps[:limit]
		next = apps[limit-1].ID
	}
	return apps, next, nil
}

// SetAppSecret implements store.AppStore.
func (s *Store) SetAppSecret(_ context.Context, id string, secretHash []byte) (a store.App, err error) {
	err = s.db.Update(func(tx *bolt.Tx) error {
		a, err = getApp(tx, id)
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
		return putApp(tx, a)
	})
	if err != nil {
		return store.App{}, fmt.Errorf("setting secret of app %s: %w", id, err)
	}
	return a, nil
}

// DeleteApp implements store.AppStore. Each connection is deleted through
// apply, the path of every status change, in this one transaction: the app
// cannot go while a connection made through it stays usable.
func (s *Store) DeleteApp(_ context.Context, id string, by store.Actor) (deleted []store.Connection, err error) {
	err = s.db.Update(func(tx *bolt.Tx) error {
		deleted = nil
		a, err := getApp(tx, id)
		if err != nil {
			return err
		}
		var conns []string
		err = walkIndex(tx.Bucket(bucketConnsByApp).Cursor(), orgKey(id, ""), "", func(cid []byte) (bool, error) {
			conns = append(conns, string(cid))
			return false, nil
		})
		if err != nil {
			return err
		}
		for _, cid := range conns {
			c, changed, err := s.apply(tx, cid, store.ActionDelete, by)
			if err != nil {
				return fmt.Errorf("deleting connection %s: %w", cid, err)
			}
			if changed {
				deleted = append(deleted, c)
			}
		}
		if err := dropGrants(tx, id); err != nil {
			return err
		}
		if err := tx.Bucket(bucketAppsByOrg).Delete(orgKey(a.OrgID, a.ID)); err != nil {
			return err
		}
		return tx.Bucket(bucketApps).Delete([]byte(a.ID))
	})
	if err != nil {
		return nil, fmt.Errorf("deleting app %s: %w", id, err)
	}
	if len(deleted) > 0 {
		s.notify()
	}
	return deleted, nil
}

// linkToApp indexes a new connection under its app, inside the creating
// transaction, and refuses an app that does not exist (any more): checked
// there, a connection cannot be created after DeleteApp has run.
func linkToApp(tx *bolt.Tx, c store.Connection) error {
	if c.AppID == "" {
		return nil
	}
	if err := requireApp(tx, c.AppID); err != nil {
		return err
	}
	return tx.Bucket(bucketConnsByApp).Put(orgKey(c.AppID, c.ID), nil)
}

// requireApp returns store.ErrAppNotFound unless the app exists.
func requireApp(tx *bolt.Tx, id string) error {
	if id == "" || tx.Bucket(bucketApps).Get([]byte(id)) == nil {
		return store.ErrAppNotFound
	}
	return nil
}

func getApp(tx *bolt.Tx, id string) (store.App, error) {
	v := tx.Bucket(bucketApps).Get([]byte(id))
	if v == nil {
		return store.App{}, store.ErrAppNotFound
	}
	var a store.App
	if err := json.Unmarshal(v, &a); err != nil {
		return store.App{}, fmt.Errorf("decoding app %s: %w", id, err)
	}
	return a, nil
}

func putApp(tx *bolt.Tx, a store.App) error {
	v, err := json.Marshal(a)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketApps).Put([]byte(a.ID), v)
}
