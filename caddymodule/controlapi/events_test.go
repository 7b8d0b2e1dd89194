package controlapi

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// What the writer writes, the reader reads back, and the reader follows the
// SSE rules that other servers' streams (or a proxy in between) may use.
func TestEventReader(t *testing.T) {
	var buf bytes.Buffer
	w := NewEventWriter(&buf)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.Event("7", EventStatus, map[string]string{"id": "c1"}))
	must(w.Heartbeat())
	must(w.Event("7", EventSync, Position{Revision: 7}))
	if !strings.HasPrefix(buf.String(), "retry: 1000\nid: 7\n") || strings.Count(buf.String(), "retry:") != 1 {
		t.Fatalf("retry: must come once, with the first event:\n%s", buf.String())
	}
	buf.WriteString(": a proxy's comment\n\n")
	buf.WriteString("id: 8\r\nevent: status\r\n: a comment inside an event\r\ndata: a\r\ndata: b\r\n\r\n")
	buf.WriteString("data\n\n") // a data field with no value is still an event

	tests := []struct {
		name string
		want Event
	}{
		{"status event", Event{ID: "7", Name: EventStatus, Data: []byte(`{"id":"c1"}`)}},
		{"heartbeat", Event{Name: EventHeartbeat, Data: []byte("{}")}},
		{"sync event", Event{ID: "7", Name: EventSync, Data: []byte(`{"revision":7}`)}},
		{"comment", Event{Comment: "a proxy's comment", comment: true}},
		{"comment between fields", Event{Comment: "a comment inside an event", comment: true}},
		{"CRLF, two data lines", Event{ID: "8", Name: EventStatus, Data: []byte("a\nb")}},
		{"bare data field", Event{Data: []byte{}}},
	}
	r := NewEventReader(&buf)
	for _, tt := range tests {
		got, err := r.Next()
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got.ID != tt.want.ID || got.Name != tt.want.Name || !bytes.Equal(got.Data, tt.want.Data) ||
			got.Comment != tt.want.Comment || got.IsComment() != tt.want.IsComment() || (got.Data == nil) != (tt.want.Data == nil) {
			t.Errorf("%s: got %+v (data %q), want %+v (data %q)", tt.name, got, got.Data, tt.want, tt.want.Data)
		}
	}
	if _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Errorf("after the last event: %v, want EOF", err)
	}
}

func TestEventReaderRefusesHugeLine(t *testing.T) {
	r := NewEventReader(strings.NewReader("data: " + strings.Repeat("x", maxLine+1) + "\n\n"))
	if _, err := r.Next(); err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("a %d-byte line: %v, want an error naming the limit", maxLine+1, err)
	}
}

func TestEventIDRoundTrip(t *testing.T) {
	for _, tt := range []struct {
		rev uint64
		fp  string
		id  string
	}{{0, "", "0"}, {7, "", "7"}, {1632, "a1b2c3d4e5f60718", "1632-a1b2c3d4e5f60718"}} {
		if got := EventID(tt.rev, tt.fp); got != tt.id {
			t.Errorf("EventID(%d, %q) = %q, want %q", tt.rev, tt.fp, got, tt.id)
		}
		rev, fp, err := ParseEventID(tt.id)
		if err != nil || rev != tt.rev || fp != tt.fp {
			t.Errorf("ParseEventID(%q) = %d, %q, %v", tt.id, rev, fp, err)
		}
	}
	for _, bad := range []string{"", "-", "7-", "-ab", "x", "7-XYZ", "7-ab-cd", "18446744073709551616", "7 ", "7-" + strings.Repeat("a", 65)} {
		if _, _, err := ParseEventID(bad); err == nil {
			t.Errorf("ParseEventID(%q) accepted", bad)
		}
	}
}
