package gate

import (
	"sync"
	"time"

	"github.com/conngate/conngate/store"
)

// recentChanges remembers the changes applied from the stream in the last
// recentWindow. A status lookup that was answered before a change but
// finishes after it would otherwise put the older status back into the
// cache; the lookup consults this first. The window only has to outlast the
// longest lookup (control_timeout is capped well below it).
type recentChanges struct {
	mu     sync.Mutex
	byID   map[string]recentChange
	oldest time.Time
	// peak is the most entries byID has held since it was made: a Go map
	// never gives back the room it grew to, so a burst of changes (100,000
	// connections created in a minute) would otherwise keep about 130 bytes
	// per change of that minute for the life of the process.
	peak    int
	prunes  int // how many times the map was scanned for old changes
	cleared time.Time
}

type recentChange struct {
	status   store.Status
	revision uint64
	at       time.Time
}

const recentWindow = time.Minute

func (r *recentChanges) record(c store.Change, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byID == nil {
		r.byID = map[string]recentChange{}
		r.oldest = now
	}
	if now.Sub(r.oldest) > recentWindow {
		r.prune(now)
	}
	if prev, ok := r.byID[c.ID]; !ok || c.Revision > prev.revision {
		r.byID[c.ID] = recentChange{status: c.Status, revision: c.Revision, at: now}
		r.peak = max(r.peak, len(r.byID))
	}
}

// prune forgets the changes older than the window, and moves what is left
// to a map of its size once it is down to a quarter of the peak.
func (r *recentChanges) prune(now time.Time) {
	r.prunes++
	for id, rc := range r.byID {
		if now.Sub(rc.at) > recentWindow {
			delete(r.byID, id)
		}
	}
	r.oldest = now // what is left is younger than the window: next prune one window on
	if len(r.byID) <= r.peak/4 {
		kept := make(map[string]recentChange, len(r.byID))
		for id, rc := range r.byID {
			kept[id] = rc
		}
		r.byID, r.peak = kept, len(kept)
	}
}

// newer returns the recent change of id if it is newer than revision.
func (r *recentChanges) newer(id string, revision uint64) (recentChange, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rc, ok := r.byID[id]
	return rc, ok && rc.revision > revision
}

// clearAll forgets everything, on a stream reset.
func (r *recentChanges) clearAll(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.byID, r.peak = nil, 0
	r.cleared = now
}

// startedBefore reports whether a lookup that started at t began before the
// last reset, and so may carry a status from before it.
func (r *recentChanges) startedBefore(t time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return t.Before(r.cleared)
}
