package controlapi

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// The change stream (GET /v1/events) is a stream of Server-Sent Events:
//
//	event: status     id: <position>  data: store.Change
//	event: sync       id: <position>  data: Position   replay done; live from here
//	event: reset      id: <position>  data: Position   cannot replay: drop what you derived
//	event: heartbeat                  data: {}         the stream is idle, and alive
//
// The id of every event but a heartbeat is the position to resume after
// (Last-Event-ID or ?since=): the revision and the fingerprint of the change
// at it (EventID), so that resuming into another history (a store restored
// from a backup reuses revisions for other changes) is detected and answered
// with a reset. The heartbeat is an event, not a comment, and
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

// AckKeyHeader carries, on a gateway's change stream answer, the secret
// that binds acknowledgements to that stream: an ack names it, and counts
// only up to what the stream has delivered.
const AckKeyHeader = "Conngate-Ack-Key"

// Position is the data of sync and reset events.
type Position struct {
	Revision uint64 `json:"revision"`
	// HeartbeatMillis is how often the idle stream carries a heartbeat, so
	// that a subscriber can tell a silent stream from a quiet one within
	// about two intervals, whatever the server's setting.
	HeartbeatMillis int64 `json:"heartbeat_ms,omitempty"`
}

// EventID is the id of an event at revision: "<revision>-<fingerprint>", or
// the bare revision where no change has it (revision 0).
func EventID(revision uint64, fingerprint string) string {
	if fingerprint == "" {
		return strconv.FormatUint(revision, 10)
	}
	return strconv.FormatUint(revision, 10) + "-" + fingerprint
}

// ParseEventID reads an id written by EventID. A bare revision (typed by a
// person as ?since=) parses with an empty fingerprint: the control endpoint
// resumes a person's stream from it if the store has reached it, and resets
// a gateway's.
func ParseEventID(id string) (revision uint64, fingerprint string, err error) {
	rev, fp, _ := strings.Cut(id, "-")
	revision, err = strconv.ParseUint(rev, 10, 64)
	if err != nil || (fp == "" && strings.Contains(id, "-")) || !isHex(fp) {
		return 0, "", fmt.Errorf("%q is not a stream position (a revision, or <revision>-<fingerprint> as in an event id)", id)
	}
	return revision, fp, nil
}

func isHex(s string) bool {
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return len(s) <= 64
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
func (e *EventWriter) Event(id string, name string, data any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return err
	}
	return e.EventJSON(id, name, b)
}

// EventJSON writes one event whose data is already JSON (one line): a
// change encoded once for every stream that sends it.
func (e *EventWriter) EventJSON(id string, name string, data []byte) error {
	_, err := fmt.Fprintf(e.w, "%sid: %s\nevent: %s\ndata: %s\n\n", e.retry(), id, name, data)
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
