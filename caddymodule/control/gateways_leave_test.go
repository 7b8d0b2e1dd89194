package control_test

import (
	"net/http"
	"testing"

	"github.com/conngate/conngate/caddymodule/control/controltest"
	"github.com/conngate/conngate/caddymodule/controlapi"
)

// A process leaves with the ack key of its newest stream, open or ended: a
// gateway whose stream moved to another control endpoint leaves this one
// after the stream here ended. The key of an older stream of a process that
// has a newer one forgets nothing.
func TestGatewayLeavesWithItsNewestStream(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	known := func() int {
		var list controlapi.GatewayList
		s.Do(t, s.AdminKey, http.MethodGet, controlapi.PathGateways, nil, &list)
		return len(list.Gateways)
	}
	leave := func(id, key string) int {
		return s.Do(t, s.GatewayKey, http.MethodPost, controlapi.LeavePath(id), controlapi.Leave{Stream: key}, nil)
	}

	moved := subscribeProcess(t, s, "gw-moved", "p1")
	eventually(t, "the process subscribed", func() bool { return len(connected(t, s)) == 1 })
	moved.Stream.Close()
	eventually(t, "its stream ended", func() bool { return len(connected(t, s)) == 0 })
	if n := known(); n != 1 {
		t.Fatalf("%d processes known after the stream ended, want it remembered", n)
	}
	if code := leave("gw-other", moved.AckKey); code != http.StatusNotFound {
		t.Errorf("leaving under another gateway id: %d, want 404", code)
	}
	if code := leave("gw-moved", moved.AckKey); code != http.StatusNoContent {
		t.Fatalf("leaving with the key of its ended stream: %d, want 204", code)
	}
	if n := known(); n != 0 {
		t.Errorf("%d processes known after it left, want none", n)
	}

	older := subscribeProcess(t, s, "gw-back", "p1")
	eventually(t, "the process subscribed", func() bool { return len(connected(t, s)) == 1 })
	older.Stream.Close()
	eventually(t, "its stream ended", func() bool { return len(connected(t, s)) == 0 })
	newer := subscribeProcess(t, s, "gw-back", "p1") // it came back
	eventually(t, "it is back", func() bool { return len(connected(t, s)) == 1 })
	if code := leave("gw-back", older.AckKey); code != http.StatusNotFound {
		t.Errorf("leaving with the key of an older stream: %d, want 404", code)
	}
	if n := len(connected(t, s)); n != 1 {
		t.Fatalf("%d processes connected after a leave with an older key, want it kept", n)
	}
	if code := leave("gw-back", newer.AckKey); code != http.StatusNoContent {
		t.Errorf("leaving with the key of its open stream: %d, want 204", code)
	}
}
