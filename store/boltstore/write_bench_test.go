package boltstore

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/conngate/conngate/store"
)

// BenchmarkWrites is the control endpoint's write path without HTTP: creates
// and status changes (disable, enable) from 8 concurrent writers, each
// durable (committed and fsynced) before it returns.
//
//	go test -run '^$' -bench Writes -benchtime 2000x -count 3 ./store/boltstore/
func BenchmarkWrites(b *testing.B) {
	for _, writers := range []int{1, 8} {
		b.Run(fmt.Sprintf("creates-%d", writers), func(b *testing.B) {
			s := openBench(b)
			var i atomic.Int64
			parallelWriters(b, writers, func() error {
				n := i.Add(1)
				_, err := s.Create(context.Background(), store.NewConnection{Name: "bench", OrgID: fmt.Sprintf("org-%d", n%10), UserID: "u"}, store.Actor{ID: "admin"})
				return err
			})
		})
		b.Run(fmt.Sprintf("status-changes-%d", writers), func(b *testing.B) {
			s := openBench(b)
			ids := make([]string, 256)
			for k := range ids {
				c, err := s.Create(context.Background(), store.NewConnection{Name: "bench", OrgID: "org-1", UserID: "u"}, store.Actor{ID: "admin"})
				if err != nil {
					b.Fatal(err)
				}
				ids[k] = c.ID
			}
			var i atomic.Int64
			parallelWriters(b, writers, func() error {
				n := i.Add(1) - 1
				// Each id disabled, then enabled, in turn: every call changes something.
				action := store.ActionDisable
				if (n/int64(len(ids)))%2 == 1 {
					action = store.ActionEnable
				}
				_, _, err := s.Apply(context.Background(), ids[n%int64(len(ids))], action, store.Actor{ID: "admin"})
				return err
			})
		})
	}
}

func openBench(b *testing.B) *Store {
	s, err := Open(filepath.Join(b.TempDir(), "bench.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// parallelWriters calls write b.N times in all from writers goroutines and
// reports writes per second and the process's CPU time per write.
func parallelWriters(b *testing.B, writers int, write func() error) {
	cpu0 := processCPU()
	b.ResetTimer()
	var left atomic.Int64
	left.Store(int64(b.N))
	errs := make(chan error, writers)
	for range writers {
		go func() {
			for left.Add(-1) >= 0 {
				if err := write(); err != nil {
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
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-us/write")
}

// processCPU is the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
