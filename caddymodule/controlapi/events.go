package controlapi

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// The change stream (GET /v1/events) is a stream of Server-Sent Events:
//
//	event: status     id: <revision>  data: store.Change
//	event: sync       id: <revision>  data: Position   replay done; live from here
//	event: reset      id: <revision>  data: Position   cannot replay: drop what you derived
//	event: heartbeat                  data: {}         the stream is idle, and alive
//
// The id of every event but a heartbeat is the revision to resume after
// (Last-Event-ID or ?since=). The heartbeat is an event, not a comment, and
// the retry: field comes with the first event rather than alone, because
// common clients (@microsoft/fetch-event-source) hand a block with only a
// comment or only retry: to the application as an empty message.
const (
	EventStatus    = "status"
	EventSync      = "sync"
	EventReset     = "reset"
	EventHeartbeat = "heartbeat"

	// RetryMillis is what the stream tells EventSource clients to wait
	// before reconnecting.
	RetryMillis = 1000
)

// Position is the data of sync and reset events.
type Position struct {
	Revision uint64 `json:"revision"`
}

// EventWriter writes the change stream. It does not flush: the caller
// flushes once a batch is written.
type EventWriter struct {
	w       io.Writer
	retried bool // the retry: field has gone out with an event
}

// NewEventWriter writes events to w.
func NewEventWriter(w io.Writer) *EventWriter { return &EventWriter{w: w} }

// Event writes one event with data as JSON; the first one also carries the
// reconnection delay.
func (e *EventWriter) Event(id uint64, name string, data any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(e.w, "%sid: %d\nevent: %s\ndata: %s\n\n", e.retry(), id, name, b)
	return err
}

// Heartbeat writes a heartbeat event: no id, so it moves no client's resume
// point.
func (e *EventWriter) Heartbeat() error {
	_, err := fmt.Fprintf(e.w, "%sevent: %s\ndata: {}\n\n", e.retry(), EventHeartbeat)
	return err
}

func (e *EventWriter) retry() string {
	if e.retried {
		return ""
	}
	e.retried = true
	return fmt.Sprintf("retry: %d\n", RetryMillis)
}

// SetStreamHeaders sets the headers a change stream answer carries.
func SetStreamHeaders(h http.Header) {
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // tell buffering proxies in front not to
}

// Event is one item read from the stream: an event, or a comment (Comment
// set, the rest empty).
type Event struct {
	ID      string
	Name    string
	Data    []byte
	Comment string
	comment bool
}

// IsComment reports whether the item is a comment line rather than an event.
func (ev Event) IsComment() bool { return ev.comment }

// IsHeartbeat reports whether the item only shows the stream is alive: a
// heartbeat event, or a comment (which other servers and proxies send).
func (ev Event) IsHeartbeat() bool { return ev.comment || ev.Name == EventHeartbeat }

// EventReader reads the change stream, following the Server-Sent Events
// parsing rules that the stream uses: fields id, event and data (several
// data lines are joined by newlines), a blank line ends an event, lines
// starting with a colon are comments.
type EventReader struct {
	r       *bufio.Reader
	pending Event
}

// maxLine bounds one line of the stream: a status event is a few hundred
// bytes.
const maxLine = 64 << 10

// NewEventReader reads events from r.
func NewEventReader(r io.Reader) *EventReader {
	return &EventReader{r: bufio.NewReaderSize(r, maxLine)}
}

// Buffered reports whether more of the stream has already arrived, so that a
// reader can act once per burst rather than once per event.
func (er *EventReader) Buffered() bool { return er.r.Buffered() > 0 }

// Next returns the next event or comment. A block without an event name or
// data (such as the retry: block) is skipped. It returns the reader's error
// when the stream ends or fails.
func (er *EventReader) Next() (Event, error) {
	for {
		line, err := er.r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			return Event{}, fmt.Errorf("change stream line longer than %d bytes", maxLine)
		}
		if err != nil {
			return Event{}, err
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) == 0:
			ev := er.pending
			er.pending = Event{}
			if ev.Name != "" || ev.Data != nil {
				return ev, nil
			}
		case line[0] == ':':
			return Event{Comment: string(bytes.TrimPrefix(line[1:], []byte(" "))), comment: true}, nil
		default:
			field, value, _ := bytes.Cut(line, []byte(":"))
			value = bytes.TrimPrefix(value, []byte(" "))
			switch string(field) {
			case "event":
				er.pending.Name = string(value)
			case "id":
				er.pending.ID = string(value)
			case "data":
				if er.pending.Data == nil {
					er.pending.Data = make([]byte, 0, len(value))
				} else {
					er.pending.Data = append(er.pending.Data, '\n')
				}
				er.pending.Data = append(er.pending.Data, value...)
			}
		}
	}
}
