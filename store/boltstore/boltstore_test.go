package boltstore

import (
	"maps"
	"path/filepath"
	"runtime"
	"slices"
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
// before it takes the batch does it see the other seven (before, it always
// committed its own write alone). The scheduler may still run the leader
// first now and then (it looks at the global run queue first every 61st
// time), hence the attempts.
func TestGroupCommitTakesRunnableWriters(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	s := openTest(t)
	var sizes [][]int
	for range 5 {
		b := writeConcurrently(t, s, 8)
		if len(b.txs) == 1 {
			return
		}
		sizes = append(sizes, slices.Collect(maps.Values(b.txs)))
	}
	t.Errorf("8 writers ready at once never shared one transaction in 5 attempts (writes per transaction: %v)", sizes)
}

// TestGroupCommitWakesWatchersOnce: watchers are woken by the commit, once
// for a batch that changed something and before any of its writers
// returns, and not for a batch that changed nothing.
func TestGroupCommitWakesWatchersOnce(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	s := openTest(t)
	before := s.Changed()
	if err := s.update(func(*bolt.Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	select {
	case <-before:
		t.Fatal("a write that changed nothing woke watchers")
	default:
	}
	for range 5 {
		b := writeConcurrently(t, s, 8)
		if b.returnedUnwoken > 0 {
			t.Fatalf("%d writers returned before their commit woke watchers", b.returnedUnwoken)
		}
		if len(b.txs) == 1 { // one batch: every writer then waits on the same next channel
			if len(b.next) != 1 {
				t.Errorf("8 writers of one batch woke watchers %d times, want once", len(b.next))
			}
			return
		}
	}
	t.Error("8 writers ready at once never shared one transaction in 5 attempts")
}

func openTest(t *testing.T) *Store {
	s, err := Open(filepath.Join(t.TempDir(), "db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// batchRun is what writeConcurrently saw.
type batchRun struct {
	txs             map[int]int              // transaction id -> writes in it
	next            map[<-chan struct{}]bool // what each writer's watcher would wait on next
	returnedUnwoken int                      // writers whose update returned before watchers were woken
}

// writeConcurrently starts n writers at once, each taking a revision.
func writeConcurrently(t *testing.T, s *Store, n int) batchRun {
	b := batchRun{txs: map[int]int{}, next: map[<-chan struct{}]bool{}}
	before := s.Changed()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.update(func(tx *bolt.Tx) error {
				mu.Lock()
				b.txs[tx.ID()]++
				mu.Unlock()
				_, err := nextRevision(tx)
				return err
			})
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			defer mu.Unlock()
			select {
			case <-before:
			default:
				b.returnedUnwoken++
			}
			b.next[s.Changed()] = true
		}()
	}
	wg.Wait()
	return b
}
