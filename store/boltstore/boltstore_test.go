package boltstore

import (
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/conngate/conngate/store"
	"github.com/conngate/conngate/store/storetest"
)

func TestConformance(t *testing.T) {
	dir := t.TempDir()
	storetest.Run(t, func(t *testing.T, name string) store.Store {
		s, err := Open(filepath.Join(dir, name, "conngate.db"), Options{ChangeLogSize: 50})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}, 50)
}

func TestOpenTwiceFailsClearly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = Open(path, Options{})
	if err == nil || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("second open: %v, want a 'locked' error", err)
	}
}

// TestGroupCommitTakesRunnableWriters: writers that are ready to write when
// the leader starts its commit share its transaction. On one P the eight
// goroutines run in turn; the first to write leads, and only by yielding
// before it takes the batch does it see the other seven.
func TestGroupCommitTakesRunnableWriters(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	s, err := Open(filepath.Join(t.TempDir(), "db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var mu sync.Mutex
	txs := map[int]int{} // transaction id -> writes in it
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.update(func(tx *bolt.Tx) error {
				mu.Lock()
				txs[tx.ID()]++
				mu.Unlock()
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if len(txs) != 1 {
		t.Errorf("8 writers ready at once were committed in %d transactions (writes per transaction: %v), want 1", len(txs), txs)
	}
}
