package boltstore

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/conngate/conngate/store"
)

// fill writes n connections of org in one transaction (what n Creates would
// leave, without n fsyncs), every tenth one deleted.
func fill(b *testing.B, s *Store, org string, n int) {
	b.Helper()
	now := time.Now().UTC()
	err := s.db.Update(func(tx *bolt.Tx) error {
		for i := range n {
			rev, err := nextRevision(tx)
			if err != nil {
				return err
			}
			c := store.Connection{ID: store.NewID(now.Add(time.Duration(i) * time.Millisecond)), Name: fmt.Sprintf("App number %d", i), OrgID: org,
				UserID: fmt.Sprintf("user-%d", i%500), Status: store.StatusActive, CreatedAt: now, UpdatedAt: now, Revision: rev}
			if i%10 == 0 {
				c.Status = store.StatusDeleted
			}
			if err := putConnection(tx, c); err != nil {
				return err
			}
			if err := tx.Bucket(bucketByOrg).Put(orgKey(org, c.ID), nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}

// BenchmarkListLargeOrg: a page of the Connections List in an organisation
// of 100,000 connections, as the page asks for it.
//
//	go test -run '^$' -bench ListLargeOrg ./store/boltstore/
func BenchmarkListLargeOrg(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	fill(b, s, "org-big", 100_000)
	fill(b, s, "org-small", 1_000)
	ctx := context.Background()
	notDeleted := []store.Status{store.StatusActive, store.StatusDisabled}
	middle, _, _ := s.List(ctx, store.ListQuery{OrgID: "org-big", Limit: 500})
	cases := []struct {
		name string
		q    store.ListQuery
	}{
		{"first page", store.ListQuery{OrgID: "org-big", Statuses: notDeleted, Limit: 25}},
		{"a later page", store.ListQuery{OrgID: "org-big", Statuses: notDeleted, Limit: 25, After: middle[499].ID}},
		{"search by id prefix", store.ListQuery{OrgID: "org-big", Statuses: notDeleted, Limit: 25, Search: middle[250].ID}},
		{"search by name, few matches", store.ListQuery{OrgID: "org-big", Statuses: notDeleted, Limit: 25, Search: "number 99999"}},
		{"small organisation, first page", store.ListQuery{OrgID: "org-small", Statuses: notDeleted, Limit: 25}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if _, _, err := s.List(ctx, c.q); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
