package controltest

import (
	"bufio"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Event is one Server-Sent Event (or, with Comment set, a comment line).
type Event struct {
	ID, Name, Data string
	Comment        string
}

// EventStream reads GET /v1/events.
type EventStream struct {
	Resp   *http.Response
	events chan Event
}

// Events opens the change stream with key; query is appended to the URL
// (e.g. "?since=3"), header may set Last-Event-ID. It is closed at test end.
func (s *Server) Events(t testing.TB, key, query string, header http.Header) *EventStream {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/v1/events"+query, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	es := &EventStream{Resp: resp, events: make(chan Event, 1000)}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		return es
	}
	go func() {
		defer close(es.events)
		sc := bufio.NewScanner(resp.Body)
		var ev Event
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev != (Event{}) {
					es.events <- ev
				}
				ev = Event{}
			case strings.HasPrefix(line, ":"):
				es.events <- Event{Comment: strings.TrimSpace(line[1:])}
			default:
				field, value, _ := strings.Cut(line, ":")
				value = strings.TrimPrefix(value, " ")
				switch field {
				case "id":
					ev.ID = value
				case "event":
					ev.Name = value
				case "data":
					ev.Data = value
				}
			}
		}
	}()
	return es
}

// Next returns the next event (comments skipped unless comments is true),
// failing the test after timeout.
func (es *EventStream) Next(t testing.TB, timeout time.Duration, comments bool) Event {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev, ok := <-es.events:
			if !ok {
				t.Fatal("event stream ended")
			}
			if ev.Comment != "" && !comments {
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
func (es *EventStream) TryNext(timeout time.Duration) (Event, bool) {
	select {
	case ev, ok := <-es.events:
		return ev, ok
	case <-time.After(timeout):
		return Event{}, false
	}
}
