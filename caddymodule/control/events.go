package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

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

// eventWriter writes Server-Sent Events and flushes them.
type eventWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func (e eventWriter) event(id uint64, name string, data any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(e.w, "id: %d\nevent: %s\ndata: %s\n\n", id, name, b)
	return err
}

func (e eventWriter) comment(text string) error {
	_, err := fmt.Fprintf(e.w, ": %s\n\n", text)
	return err
}

func (e eventWriter) flush() error { return e.rc.Flush() }

// streamEvents is GET /v1/events: every status change as a Server-Sent
// Event, replayed from Last-Event-ID or ?since=, then live.
//
//	event: status  id: <revision>  data: {"id", "status", "revision", "changed_at", "org_id", "user_id"}
//
// A person's stream carries only the changes of connections they may view.
// Its ids are still store-wide revisions (so resuming works alike for all),
// which tells a person how many changes happened elsewhere, not which.
//
//	event: sync    id: <revision>  data: {"revision"}  replay done; live from here
//	event: reset   id: <revision>  data: {"revision"}  cannot replay: drop what you derived
func (c *Control) streamEvents(w http.ResponseWriter, r *http.Request) {
	if !allowed(w, r, rightEvents, "", nil, "") {
		return
	}
	since, resume, err := resumePoint(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	who := principalOf(r)
	gatewayID := r.URL.Query().Get("gateway_id")
	if gatewayID == "" && who.named && who.gateway {
		gatewayID = who.id
	}
	if gatewayID != "" && !validID(w, "gateway_id", gatewayID) {
		return
	}
	if gatewayID != "" && !who.gateway && !who.admin {
		writeError(w, http.StatusForbidden, "forbidden", "Only gateways subscribe with a gateway_id.")
		return
	}
	if gatewayID != "" && !gatewayIDAllowed(who, gatewayID) {
		writeError(w, http.StatusForbidden, "forbidden", "Gateway "+who.id+" may subscribe only as itself, not as "+gatewayID+".")
		return
	}
	ctx := r.Context()
	if !resume {
		if since, err = c.store.Revision(ctx); err != nil {
			c.writeStoreError(w, r, err)
			return
		}
	}

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // tell buffering proxies in front not to
	w.WriteHeader(http.StatusOK)
	out := eventWriter{w: w, rc: http.NewResponseController(w)}
	if _, err := fmt.Fprint(w, "retry: 1000\n\n"); err != nil {
		return
	}
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
				return
			}
			c.logger.Warn("change stream cannot replay; sending reset", zap.Uint64("since", since), zap.Uint64("latest", latest), zap.String("gateway_id", gatewayID))
			if out.event(latest, "reset", map[string]uint64{"revision": latest}) != nil {
				return
			}
			since, synced = latest, false
			continue
		case err != nil:
			c.logger.Error("reading change log", zap.Error(err))
			return // the client reconnects and resumes
		}
		for _, ch := range changes {
			since = ch.Revision
			if !sees(who, ch) {
				continue
			}
			if out.event(ch.Revision, "status", ch) != nil {
				return
			}
		}
		if len(changes) == replayBatch {
			continue // more to replay before going live
		}
		if !synced {
			if out.event(since, "sync", map[string]uint64{"revision": since}) != nil {
				return
			}
			synced = true
		}
		if out.flush() != nil {
			return
		}
		select {
		case <-changed:
		case <-heartbeat.C:
			if out.comment("heartbeat") != nil || out.flush() != nil {
				return
			}
		case <-ctx.Done():
			return
		case <-c.done:
			return
		case <-shutdown:
			return
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
		return 0, false, fmt.Errorf("%s must be a revision number, got %q.", name, v)
	}
	return since, true, nil
}
