package pgstore

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/conngate/conngate/store"
	"github.com/conngate/conngate/store/boltstore"
)

// BenchmarkFlips is the control endpoint's write path without HTTP:
// status changes (disable, enable) from concurrent writers, each durable
// before it returns, through bolt, through one PostgreSQL store, and
// through two (two replicas on one database, writers alternating), in one
// run so that the figures compare:
//
//	CONNGATE_TEST_POSTGRES_DSN=postgres://postgres@127.0.0.1:5432/test?sslmode=disable \
//		go test -run '^$' -bench Flips -benchtime 2000x -count 3 ./store/pgstore/
func BenchmarkFlips(b *testing.B) {
	dsn := testDSN(b)
	backends := []struct {
		name string
		open func(b *testing.B) []store.Store
	}{
		{"bolt", func(b *testing.B) []store.Store {
			s, err := boltstore.Open(filepath.Join(b.TempDir(), "bench.db"), boltstore.Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			return []store.Store{s}
		}},
		{"postgres-1-replica", func(b *testing.B) []store.Store {
			return []store.Store{open(b, newSchema(b, dsn), Options{})}
		}},
		{"postgres-2-replicas", func(b *testing.B) []store.Store {
			named := newSchema(b, dsn)
			return []store.Store{open(b, named, Options{}), open(b, named, Options{})}
		}},
	}
	for _, writers := range []int{1, 8} {
		for _, backend := range backends {
			b.Run(fmt.Sprintf("%s/writers-%d", backend.name, writers), func(b *testing.B) {
				replicas := backend.open(b)
				ids := make([]string, 256)
				for k := range ids {
					c, err := replicas[0].Create(context.Background(), store.NewConnection{Name: "bench", OrgID: "org-1", UserID: "u"}, store.Actor{ID: "admin"})
					if err != nil {
						b.Fatal(err)
					}
					ids[k] = c.ID
				}
				var i atomic.Int64
				b.ResetTimer()
				var left atomic.Int64
				left.Store(int64(b.N))
				errs := make(chan error, writers)
				for range writers {
					go func() {
						for left.Add(-1) >= 0 {
							n := i.Add(1) - 1
							// Each id disabled, then enabled, in turn: every call changes something.
							action := store.ActionDisable
							if (n/int64(len(ids)))%2 == 1 {
								action = store.ActionEnable
							}
							s := replicas[n%int64(len(replicas))]
							if _, _, err := s.Apply(context.Background(), ids[n%int64(len(ids))], action, store.Actor{ID: "admin"}); err != nil {
								errs <- err
								return
							}
						}
						errs <- nil
					}()
				}
				for range writers {
					if err := <-errs; err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "flips/s")
			})
		}
	}
}
