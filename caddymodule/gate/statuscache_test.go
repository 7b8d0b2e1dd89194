package gate

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/conngate/conngate/store"
)

// Concurrent misses for one connection make one lookup.
func TestStatusCacheCoalescesLookups(t *testing.T) {
	var calls atomic.Int32
	release := make(chan struct{})
	lookup := func(context.Context, string) (store.Status, error) {
		calls.Add(1)
		<-release
		return store.StatusActive, nil
	}
	c, err := newStatusCache(context.Background(), lookup, 100, time.Hour, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()

	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if st, err := c.get(context.Background(), "conn_a"); err != nil || st != store.StatusActive {
				t.Errorf("get = %s, %v", st, err)
			}
		}()
	}
	time.Sleep(50 * time.Millisecond) // let them all queue on the flight
	close(release)
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Errorf("%d lookups for 50 concurrent misses, want 1", n)
	}
	// And the result is cached: no further lookup.
	c.get(context.Background(), "conn_a")
	if n := calls.Load(); n != 1 {
		t.Errorf("cached status looked up again (%d lookups)", n)
	}
}

// A failed lookup is not remembered: the next request tries again.
func TestStatusCacheDoesNotCacheErrors(t *testing.T) {
	var fail atomic.Bool
	fail.Store(true)
	lookup := func(context.Context, string) (store.Status, error) {
		if fail.Load() {
			return "", errors.New("control down")
		}
		return store.StatusDisabled, nil
	}
	c, _ := newStatusCache(context.Background(), lookup, 100, time.Hour, time.Second)
	defer c.close()
	if _, err := c.get(context.Background(), "conn_a"); err == nil {
		t.Fatal("error swallowed")
	}
	fail.Store(false)
	if st, err := c.get(context.Background(), "conn_a"); err != nil || st != store.StatusDisabled {
		t.Fatalf("after recovery: %s, %v", st, err)
	}
}

// A caller that gives up gets its own context error; the lookup it shared
// still completes for the others.
func TestStatusCacheCallerCancel(t *testing.T) {
	release := make(chan struct{})
	lookup := func(ctx context.Context, _ string) (store.Status, error) {
		select {
		case <-release:
			return store.StatusActive, nil
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	c, _ := newStatusCache(context.Background(), lookup, 100, time.Hour, 5*time.Second)
	defer c.close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { _, err := c.get(ctx, "conn_a"); done <- err }()
	other := make(chan store.Status)
	go func() { st, _ := c.get(context.Background(), "conn_a"); other <- st }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled caller got %v", err)
	}
	close(release)
	if st := <-other; st != store.StatusActive {
		t.Errorf("other caller got %q", st)
	}
}
