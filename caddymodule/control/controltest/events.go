package controltest

import (
	"net/http"
	"testing"
	"time"

	"github.com/conngate/conngate/caddymodule/controlapi"
)

// EventStream reads GET /v1/events.
type EventStream struct {
	Resp   *http.Response
	events chan controlapi.Event
}

// Events opens the change stream with key; query is appended to the URL
// (e.g. "?since=3"), header may set Last-Event-ID. It is closed at test end.
func (s *Server) Events(t testing.TB, key, query string, header http.Header) *EventStream {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.URL+controlapi.PathEvents+query, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	es := &EventStream{Resp: resp, events: make(chan controlapi.Event, 1000)}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		return es
	}
	go func() {
		defer close(es.events)
		r := controlapi.NewEventReader(resp.Body)
		for {
			ev, err := r.Next()
			if err != nil {
				return
			}
			es.events <- ev
		}
	}()
	return es
}

// Next returns the next event (heartbeats skipped unless heartbeats is true),
// failing the test after timeout.
func (es *EventStream) Next(t testing.TB, timeout time.Duration, heartbeats bool) controlapi.Event {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev, ok := <-es.events:
			if !ok {
				t.Fatal("event stream ended")
			}
			if ev.IsHeartbeat() && !heartbeats {
				continue
			}
			return ev
		case <-deadline:
			t.Fatalf("no event within %s", timeout)
		}
	}
}

// Close ends the stream.
func (es *EventStream) Close() { es.Resp.Body.Close() }

// TryNext returns the next event or comment, or false when the stream ended
// or nothing came within timeout.
func (es *EventStream) TryNext(timeout time.Duration) (controlapi.Event, bool) {
	select {
	case ev, ok := <-es.events:
		return ev, ok
	case <-time.After(timeout):
		return controlapi.Event{}, false
	}
}
