package control

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/conngate/conngate/caddymodule/controlapi"
	"github.com/conngate/conngate/store"
)

// replayBatch is how many changes one store read returns while replaying.
const replayBatch = 500

// serverShutdowns ends event streams when their HTTP server begins to shut
// down. net/http waits for in-flight requests, and a stream never finishes
// on its own: without this, stopping Caddy would wait for ever.
type serverShutdowns struct {
	mu      sync.Mutex
	closing map[*http.Server]chan struct{}
}

// of returns a channel closed when the server that serves r shuts down.
func (s *serverShutdowns) of(r *http.Request) <-chan struct{} {
	srv, _ := r.Context().Value(http.ServerContextKey).(*http.Server)
	if srv == nil {
		return nil // not served by net/http (a unit test's recorder): never
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing == nil {
		s.closing = map[*http.Server]chan struct{}{}
	}
	ch, ok := s.closing[srv]
	if !ok {
		ch = make(chan struct{})
		s.closing[srv] = ch
		srv.RegisterOnShutdown(func() {
			close(ch)
			s.mu.Lock()
			delete(s.closing, srv) // servers come and go with reloads
			s.mu.Unlock()
		})
	}
	return ch
}

// streamEvents is GET /v1/events: every status change as a Server-Sent
// Event, replayed from Last-Event-ID or ?since=, then live, in the format of
// controlapi/events.go.
//
// A person's stream carries only the changes of connections they may view.
// Its ids are still store-wide revisions (so resuming works alike for all),
// which tells a person how many changes happened elsewhere, not which.
func (c *Control) streamEvents(w http.ResponseWriter, r *http.Request) error {
	since, resume, err := resumePoint(r)
	if err != nil {
		return err
	}
	who := principalOf(r)
	gatewayID := subscriberID(who, r.URL.Query().Get("gateway_id"))
	if err := optionalID("gateway_id", gatewayID); err != nil {
		return err
	}
	if err := authorize(who, access{want: rightEvents, gatewayID: gatewayID}); err != nil {
		return err
	}
	ctx := r.Context()
	if !resume {
		if since, err = c.store.Revision(ctx); err != nil {
			return err
		}
	}

	controlapi.SetStreamHeaders(w.Header())
	w.WriteHeader(http.StatusOK)
	out := controlapi.NewEventWriter(w)
	flush := http.NewResponseController(w).Flush
	// From here on the answer has begun: a failure can only end the
	// stream, and the client reconnects and resumes.
	if gatewayID != "" {
		defer c.gateways.subscribe(gatewayID)()
		c.logger.Info("gateway subscribed", zap.String("gateway_id", gatewayID), zap.Uint64("since", since))
		defer c.logger.Info("gateway unsubscribed", zap.String("gateway_id", gatewayID))
	}

	shutdown := c.shutdowns.of(r)
	heartbeat := time.NewTicker(time.Duration(c.HeartbeatInterval))
	defer heartbeat.Stop()
	synced := false
	for {
		// Take the signal before reading, so that a change committed between
		// the read and the wait still wakes this loop.
		changed := c.store.Changed()
		changes, err := c.store.Changes(ctx, since, replayBatch)
		switch {
		case errors.Is(err, store.ErrReplayUnavailable):
			latest, rerr := c.store.Revision(ctx)
			if rerr != nil {
				return nil
			}
			c.logger.Warn("change stream cannot replay; sending reset", zap.Uint64("since", since), zap.Uint64("latest", latest), zap.String("gateway_id", gatewayID))
			if out.Event(latest, controlapi.EventReset, controlapi.Position{Revision: latest}) != nil {
				return nil
			}
			since, synced = latest, false
			continue
		case err != nil:
			c.logger.Error("reading change log", zap.Error(err))
			return nil
		}
		for _, ch := range changes {
			since = ch.Revision
			if !sees(who, ch) {
				continue
			}
			if out.Event(ch.Revision, controlapi.EventStatus, ch) != nil {
				return nil
			}
		}
		if len(changes) == replayBatch {
			continue // more to replay before going live
		}
		if !synced {
			if out.Event(since, controlapi.EventSync, controlapi.Position{Revision: since}) != nil {
				return nil
			}
			synced = true
		}
		if flush() != nil {
			return nil
		}
		select {
		case <-changed:
		case <-heartbeat.C:
			if out.Heartbeat() != nil || flush() != nil {
				return nil
			}
		case <-ctx.Done():
			return nil
		case <-c.done:
			return nil
		case <-shutdown:
			return nil
		}
	}
}

// resumePoint reads where a client wants the stream to start. Last-Event-ID
// (sent by reconnecting EventSource clients) wins over ?since=.
func resumePoint(r *http.Request) (since uint64, resume bool, err error) {
	v, name := r.Header.Get("Last-Event-ID"), "Last-Event-ID"
	if v == "" {
		v, name = r.URL.Query().Get("since"), "since"
	}
	if v == "" {
		return 0, false, nil
	}
	since, err = strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, false, invalid(fmt.Sprintf("%s must be a revision number, got %q.", name, v))
	}
	return since, true, nil
}
