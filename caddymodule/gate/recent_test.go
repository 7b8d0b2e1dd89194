package gate

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/conngate/conngate/store"
)

// A burst of changes is forgotten a window later, and so is the room its
// map grew to: the heap goes back down once the burst has aged out.
func TestRecentChangesGiveBackABurstsMemory(t *testing.T) {
	const burst = 100_000
	var r recentChanges
	start := time.Unix(1_700_000_000, 0)
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	for i := range burst {
		r.record(store.Change{ID: fmt.Sprintf("conn_%026d", i), Status: store.StatusActive, Revision: uint64(i + 1)}, start)
	}
	during := heap()
	later := start.Add(recentWindow + time.Second)
	r.record(store.Change{ID: "conn_after", Status: store.StatusDisabled, Revision: burst + 1}, later)
	after := heap()

	if got := len(r.byID); got != 1 {
		t.Fatalf("%d changes remembered a window after the burst, want the 1 after it", got)
	}
	if _, ok := r.newer("conn_after", burst); !ok {
		t.Fatal("the change after the burst is not remembered")
	}
	grew := during - before
	if grew < 5<<20 {
		t.Fatalf("the burst took only %d bytes of heap: the test measures nothing", grew)
	}
	if kept := int64(after) - int64(before); kept > int64(grew)/10 {
		t.Fatalf("a window after a burst that took %d bytes, %d are still held", grew, kept)
	}
}
