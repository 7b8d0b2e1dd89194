package control

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/conngate/conngate/caddymodule/controlapi"
	"github.com/conngate/conngate/store"
)

// feedSize is how many of the latest changes the feed keeps in memory: a
// stream more than this far behind reads the store itself (a replay).
const feedSize = 4096

// (It keeps between feedSize and twice that.)

// peopleWakeDelay batches the wake-ups of people's streams: a person's page
// needs no millisecond, and thousands of open pages must not take the CPU
// that the gateways' streams need when changes come fast. (With 2,000 open
// streams and changes every few milliseconds, 50 ms let bursts of writes to
// every stream delay gateways by tens of milliseconds on two cores.)
const peopleWakeDelay = 500 * time.Millisecond

// changeFeed reads each change from the store once and shares it with every
// change stream of this process (fan-out): without it, every change woke
// every stream and each read the store on its own. Gateways' streams are
// woken at once, people's streams a moment later and at most once per
// peopleWakeDelay.
type changeFeed struct {
	store  store.Store
	logger *zap.Logger

	mu        sync.Mutex
	recent    []feedChange  // the latest changes, oldest first
	latest    uint64        // the revision read up to
	gateways  chan struct{} // closed when changes arrive
	people    chan struct{} // closed up to peopleWakeDelay after changes arrive
	peopleDue bool          // a wake-up of people's streams is scheduled

	stop    chan struct{}
	stopped chan struct{}
}

func newChangeFeed(ctx context.Context, st store.Store, logger *zap.Logger) (*changeFeed, error) {
	latest, err := st.Revision(ctx)
	if err != nil {
		return nil, err
	}
	f := &changeFeed{store: st, logger: logger, latest: latest, gateways: make(chan struct{}), people: make(chan struct{}),
		stop: make(chan struct{}), stopped: make(chan struct{})}
	go f.run()
	return f, nil
}

// feedChange is a change with what every stream sends of it, computed once:
// its event id (with the fingerprint, a hash) and its JSON.
type feedChange struct {
	store.Change
	fingerprint, id string
	data            []byte
}

func newFeedChange(c store.Change) (feedChange, error) {
	data, err := json.Marshal(c)
	if err != nil {
		return feedChange{}, err
	}
	fp := c.Fingerprint()
	return feedChange{Change: c, fingerprint: fp, id: controlapi.EventID(c.Revision, fp), data: data}, nil
}

// encode makes feed changes of changes read from the store.
func encode(changes []store.Change) ([]feedChange, error) {
	out := make([]feedChange, len(changes))
	for i, c := range changes {
		var err error
		if out[i], err = newFeedChange(c); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// wake returns the channel closed when changes after what after returns
// next arrive. Take it before calling after.
func (f *changeFeed) wake(gateway bool) <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if gateway {
		return f.gateways
	}
	return f.people
}

// after returns up to limit changes above revision from memory; ok is false
// when memory does not hold them all (the caller reads the store).
func (f *changeFeed) after(revision uint64, limit int) (changes []feedChange, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if revision > f.latest {
		return nil, false
	}
	if revision == f.latest {
		return nil, true
	}
	i, _ := slices.BinarySearchFunc(f.recent, revision+1, func(c feedChange, rev uint64) int { return cmpRevision(c.Revision, rev) })
	if i == len(f.recent) || f.recent[i].Revision != revision+1 {
		return nil, false // older than what is kept
	}
	end := min(len(f.recent), i+limit)
	return slices.Clone(f.recent[i:end]), true
}

func cmpRevision(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (f *changeFeed) run() {
	defer close(f.stopped)
	for {
		changed := f.store.Changed() // before reading: a commit meanwhile still wakes us
		f.read()
		select {
		case <-changed:
		case <-f.stop:
			return
		}
	}
}

// read takes every change past latest from the store.
func (f *changeFeed) read() {
	for {
		f.mu.Lock()
		from := f.latest
		f.mu.Unlock()
		changes, err := f.store.Changes(context.Background(), from, replayBatch)
		if errors.Is(err, store.ErrReplayUnavailable) {
			// The log dropped changes before the feed read them (a tiny
			// change_log_size): forget memory, streams read the store and
			// send their subscribers a reset.
			latest, rerr := f.store.Revision(context.Background())
			if rerr != nil {
				f.logger.Error("reading the store's revision", zap.Error(rerr))
				return
			}
			f.mu.Lock()
			f.recent, f.latest = nil, latest
			f.wakeAll()
			f.mu.Unlock()
			return
		}
		if err != nil {
			f.logger.Error("reading change log", zap.Error(err))
			return
		}
		if len(changes) == 0 {
			return
		}
		encoded, err := encode(changes)
		if err != nil {
			f.logger.Error("encoding changes", zap.Error(err))
			return
		}
		f.mu.Lock()
		f.recent = append(f.recent, encoded...)
		if len(f.recent) > 2*feedSize { // trimmed in steps, not per change
			f.recent = slices.Clone(f.recent[len(f.recent)-feedSize:])
		}
		f.latest = changes[len(changes)-1].Revision
		f.wakeAll()
		f.mu.Unlock()
		if len(changes) < replayBatch {
			return
		}
	}
}

// wakeAll must be called with mu held.
func (f *changeFeed) wakeAll() {
	close(f.gateways)
	f.gateways = make(chan struct{})
	if f.peopleDue {
		return
	}
	f.peopleDue = true
	time.AfterFunc(peopleWakeDelay, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		close(f.people)
		f.people = make(chan struct{})
		f.peopleDue = false
	})
}

func (f *changeFeed) close() {
	close(f.stop)
	<-f.stopped
}
