package control_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/conngate/conngate/caddymodule/control/controltest"
	"github.com/conngate/conngate/caddymodule/controlapi"
	"github.com/conngate/conngate/store"
)

const wait = 3 * time.Second

func change(t *testing.T, ev controlapi.Event) store.Change {
	t.Helper()
	if ev.Name != "status" {
		t.Fatalf("event %+v, want a status event", ev)
	}
	var c store.Change
	if err := json.Unmarshal([]byte(ev.Data), &c); err != nil {
		t.Fatal(err)
	}
	if ev.ID != strconv.FormatUint(c.Revision, 10) || c.ChangedAt.IsZero() {
		t.Fatalf("event id %s for change %+v", ev.ID, c)
	}
	return c
}

func expectSync(t *testing.T, es *controltest.EventStream, rev uint64) {
	t.Helper()
	ev := es.Next(t, wait, false)
	if ev.Name != "sync" || ev.ID != strconv.FormatUint(rev, 10) {
		t.Fatalf("event %+v, want sync at %d", ev, rev)
	}
}

func TestEventsLive(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	c := s.Create(t, "org-1").Connection
	es := s.Events(t, s.GatewayKey, "", nil)
	if ct := es.Resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	expectSync(t, es, c.Revision) // a fresh stream starts at the current revision

	d := s.Act(t, c.ID, store.ActionDisable)
	got := change(t, es.Next(t, wait, false))
	if got.ID != c.ID || got.Status != store.StatusDisabled || got.Revision != d.Revision {
		t.Fatalf("live event %+v", got)
	}
	s.Act(t, c.ID, store.ActionDisable) // idempotent: no event
	s.Act(t, c.ID, store.ActionDelete)
	if got := change(t, es.Next(t, wait, false)); got.Status != store.StatusDeleted {
		t.Fatalf("after a no-op and a delete: %+v", got)
	}
}

func TestEventsReplay(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	a := s.Create(t, "org-1").Connection // rev 1
	s.Act(t, a.ID, store.ActionDisable)  // rev 2
	b := s.Create(t, "org-1").Connection // rev 3
	s.Act(t, b.ID, store.ActionDelete)   // rev 4
	wantStatus := []store.Status{"", store.StatusActive, store.StatusDisabled, store.StatusActive, store.StatusDeleted}

	tests := []struct {
		name   string
		query  string
		header http.Header
		from   uint64
	}{
		{"since=0 replays everything", "?since=0", nil, 1},
		{"since=2", "?since=2", nil, 3},
		{"Last-Event-ID wins over since", "?since=0", http.Header{"Last-Event-Id": {"3"}}, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			es := s.Events(t, s.AdminKey, tt.query, tt.header)
			for rev := tt.from; rev <= 4; rev++ {
				if got := change(t, es.Next(t, wait, false)); got.Revision != rev || got.Status != wantStatus[rev] {
					t.Fatalf("replayed %+v, want revision %d %s", got, rev, wantStatus[rev])
				}
			}
			expectSync(t, es, 4)
		})
	}
}

func TestEventsReset(t *testing.T) {
	s := controltest.Start(t, controltest.Options{ChangeLogSize: 3})
	c := s.Create(t, "org-1").Connection
	for range 3 {
		s.Act(t, c.ID, store.ActionDisable)
		s.Act(t, c.ID, store.ActionEnable)
	} // revision 7; the log keeps 5..7

	for _, q := range []string{"?since=1", "?since=99"} {
		t.Run(q, func(t *testing.T) {
			es := s.Events(t, s.GatewayKey, q, nil)
			ev := es.Next(t, wait, false)
			if ev.Name != "reset" || ev.ID != "7" {
				t.Fatalf("event %+v, want reset at 7", ev)
			}
			expectSync(t, es, 7)
		})
	}
	// From a revision still in the log, no reset.
	es := s.Events(t, s.GatewayKey, "?since=4", nil)
	if got := change(t, es.Next(t, wait, false)); got.Revision != 5 {
		t.Fatalf("replay from 4 starts at %d", got.Revision)
	}
}

func TestEventsHeartbeat(t *testing.T) {
	s := controltest.Start(t, controltest.Options{Heartbeat: 50 * time.Millisecond})
	es := s.Events(t, s.GatewayKey, "", nil)
	expectSync(t, es, 0)
	// A heartbeat is an event with data and no id, so that clients that
	// pass comment-only blocks on as empty messages never see one.
	if ev := es.Next(t, wait, true); ev.Name != controlapi.EventHeartbeat || string(ev.Data) != "{}" || ev.ID != "" {
		t.Fatalf("got %+v, want a heartbeat event", ev)
	}
}

func TestEventsBadInput(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	for _, tt := range []struct {
		key, query string
		header     http.Header
		status     int
	}{
		{s.GatewayKey, "?since=yesterday", nil, 400},
		{s.GatewayKey, "?since=-1", nil, 400},
		{s.GatewayKey, "", http.Header{"Last-Event-Id": {"x"}}, 400},
		{s.GatewayKey, "?gateway_id=a/b", nil, 400},
		{"", "", nil, 401},
	} {
		es := s.Events(t, tt.key, tt.query, tt.header)
		if es.Resp.StatusCode != tt.status {
			t.Errorf("%q %v: status %d, want %d", tt.query, tt.header, es.Resp.StatusCode, tt.status)
		}
	}
}

// fakeGateway subscribes as a gateway and, unless paused, acknowledges
// every event it reads.
type fakeGateway struct {
	id     string
	stream *controltest.EventStream
	mu     sync.Mutex
	paused bool
}

func subscribeGateway(t *testing.T, s *controltest.Server, id string) *fakeGateway {
	g := &fakeGateway{id: id, stream: s.Events(t, s.GatewayKey, "?gateway_id="+id, nil)}
	go func() {
		for ev := range g.streamEvents() {
			g.mu.Lock()
			paused := g.paused
			g.mu.Unlock()
			if ev.ID == "" || paused {
				continue
			}
			rev, _ := strconv.ParseUint(ev.ID, 10, 64)
			body := strings.NewReader(`{"revision": ` + strconv.FormatUint(rev, 10) + `}`)
			req, _ := http.NewRequest(http.MethodPost, s.URL+"/v1/gateways/"+id+"/ack", body)
			req.Header.Set("Authorization", "Bearer "+s.GatewayKey)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}
	}()
	return g
}

func (g *fakeGateway) streamEvents() <-chan controlapi.Event {
	out := make(chan controlapi.Event)
	go func() {
		defer close(out)
		for {
			ev, ok := g.stream.TryNext(5 * time.Second)
			if !ok {
				return
			}
			out <- ev
		}
	}()
	return out
}

func TestWaitApplied(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	c := s.Create(t, "org-1").Connection
	gws := []*fakeGateway{subscribeGateway(t, s, "gw-a"), subscribeGateway(t, s, "gw-b"), subscribeGateway(t, s, "gw-c")}

	var list struct {
		Revision uint64
		Gateways []struct {
			ID              string `json:"id"`
			AppliedRevision uint64 `json:"applied_revision"`
			LagRevisions    uint64 `json:"lag_revisions"`
		}
	}
	deadline := time.Now().Add(wait)
	for {
		s.Do(t, s.AdminKey, "GET", "/v1/gateways", nil, &list)
		allApplied := len(list.Gateways) == 3
		for _, g := range list.Gateways {
			allApplied = allApplied && g.AppliedRevision == c.Revision
		}
		if allApplied || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(list.Gateways) != 3 || list.Gateways[0].ID != "gw-a" || list.Gateways[0].LagRevisions != 0 {
		t.Fatalf("GET /v1/gateways = %+v", list)
	}

	type applied struct {
		Connection   store.Connection `json:"connection"`
		Gateways     int              `json:"gateways"`
		Acknowledged int              `json:"acknowledged"`
		Pending      []string         `json:"pending"`
	}
	var got applied
	start := time.Now()
	if code := s.Do(t, s.AdminKey, "POST", "/v1/connections/"+c.ID+"/disable?wait=applied&timeout=2s", nil, &got); code != 200 {
		t.Fatalf("disable: %d", code)
	}
	if got.Gateways != 3 || got.Acknowledged != 3 || len(got.Pending) != 0 || got.Connection.Status != store.StatusDisabled {
		t.Fatalf("all acknowledging: %+v", got)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("waiting for three prompt acks took %s", took)
	}

	gws[1].mu.Lock()
	gws[1].paused = true
	gws[1].mu.Unlock()
	start = time.Now()
	s.Do(t, s.AdminKey, "POST", "/v1/connections/"+c.ID+"/enable?wait=applied&timeout=300ms", nil, &got)
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Errorf("returned after %s, before the timeout", took)
	}
	if got.Gateways != 3 || got.Acknowledged != 2 || len(got.Pending) != 1 || got.Pending[0] != "gw-b" {
		t.Fatalf("one gateway blocked: %+v", got)
	}

	var e errorBody
	for _, q := range []string{"?wait=soon", "?wait=applied&timeout=1h", "?wait=applied&timeout=x", "?timeout=1s"} {
		if code := s.Do(t, s.AdminKey, "POST", "/v1/connections/"+c.ID+"/disable"+q, nil, &e); code != 400 {
			t.Errorf("%s: %d, want 400", q, code)
		}
	}
	var now struct{ Connection store.Connection }
	s.Do(t, s.AdminKey, "GET", "/v1/connections/"+c.ID, nil, &now)
	if now.Connection.Status != store.StatusActive {
		t.Errorf("a refused wait parameter still changed the status to %s", now.Connection.Status)
	}

	if code := s.Do(t, s.GatewayKey, "POST", "/v1/gateways/gw-unknown/ack", map[string]int{"revision": 1}, &e); code != 404 || e.Error != "gateway_not_subscribed" {
		t.Errorf("ack from an unsubscribed gateway: %d %+v", code, e)
	}
	if code := s.Do(t, s.GatewayKey, "GET", "/v1/gateways", nil, &e); code != 403 {
		t.Errorf("gateway key listing gateways: %d", code)
	}

	gws[0].stream.Close()
	deadline = time.Now().Add(wait)
	for {
		s.Do(t, s.AdminKey, "GET", "/v1/gateways", nil, &list)
		if len(list.Gateways) == 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(list.Gateways) != 2 {
		t.Errorf("closed stream still listed: %+v", list.Gateways)
	}
}

// A gateway whose stream just ended (a config reload ends them all, or a
// network blip) is still waited for: it stays pending until it reconnects
// and applies the change. GET /v1/gateways lists only open streams.
func TestWaitAppliedCountsAReconnectingGateway(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	c := s.Create(t, "org-1").Connection
	listed := func() int {
		var list controlapi.GatewayList
		s.Do(t, s.AdminKey, "GET", "/v1/gateways", nil, &list)
		return len(list.Gateways)
	}
	gw := subscribeGateway(t, s, "gw-blip")
	for deadline := time.Now().Add(wait); listed() != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the gateway never subscribed")
		}
	}
	gw.stream.Close()
	for deadline := time.Now().Add(wait); listed() != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the closed stream is still listed")
		}
	}
	var out controlapi.Applied
	if code := s.Do(t, s.AdminKey, "POST", "/v1/connections/"+c.ID+"/disable?wait=applied&timeout=200ms", nil, &out); code != 200 {
		t.Fatalf("disable: %d", code)
	}
	if out.Gateways != 1 || out.Acknowledged != 0 || len(out.Pending) != 1 || out.Pending[0] != "gw-blip" {
		t.Errorf("while it reconnects: %+v, want it pending", out)
	}
	subscribeGateway(t, s, "gw-blip") // back, and acknowledging
	if code := s.Do(t, s.AdminKey, "POST", "/v1/connections/"+c.ID+"/enable?wait=applied&timeout=5s", nil, &out); code != 200 {
		t.Fatalf("enable: %d", code)
	}
	if out.Gateways != 1 || out.Acknowledged != 1 {
		t.Errorf("after it reconnected: %+v, want it acknowledged", out)
	}
}
