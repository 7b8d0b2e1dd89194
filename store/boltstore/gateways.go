package boltstore

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/conngate/conngate/store"
)

// bucketGateways remembers the gateway processes seen on the change stream:
// gateway id 0x00 instance -> JSON store.GatewaySeen. It is created on the
// first save, so stores written before it existed open unchanged.
var bucketGateways = []byte("gateways")

func gatewayKey(gatewayID, instance string) []byte { return orgKey(gatewayID, instance) }

// SaveGateways implements store.Store. Seen gateways are few and saved every
// few seconds: a plain transaction, outside the group commit of changes.
func (s *Store) SaveGateways(_ context.Context, seen []store.GatewaySeen, forgetBefore time.Time) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketGateways)
		if err != nil {
			return err
		}
		for _, g := range seen {
			v, err := json.Marshal(g)
			if err != nil {
				return err
			}
			if err := b.Put(gatewayKey(g.GatewayID, g.Instance), v); err != nil {
				return err
			}
		}
		var old [][]byte
		err = b.ForEach(func(k, v []byte) error {
			var g store.GatewaySeen
			if json.Unmarshal(v, &g) != nil || g.SeenAt.Before(forgetBefore) {
				old = append(old, k)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range old {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}

// ForgetGateway implements store.Store.
func (s *Store) ForgetGateway(_ context.Context, gatewayID, instance string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketGateways)
		if b == nil {
			return nil
		}
		return b.Delete(gatewayKey(gatewayID, instance))
	})
}

// Gateways implements store.Store.
func (s *Store) Gateways(_ context.Context, since time.Time) (seen []store.GatewaySeen, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketGateways)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var g store.GatewaySeen
			if err := json.Unmarshal(v, &g); err != nil {
				return fmt.Errorf("decoding gateway %q: %w", k, err)
			}
			if !g.SeenAt.Before(since) {
				seen = append(seen, g)
			}
			return nil
		})
	})
	return seen, err
}
