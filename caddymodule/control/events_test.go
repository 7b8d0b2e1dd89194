package control_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/conngate/conngate/caddymodule/control"
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
	if ev.ID != controlapi.EventID(c.Revision, c.Fingerprint()) || c.ChangedAt.IsZero() {
		t.Fatalf("event id %s for change %+v", ev.ID, c)
	}
	return c
}

func expectSync(t *testing.T, es *controltest.EventStream, rev uint64) controlapi.Event {
	t.Helper()
	return expectEvent(t, es, "sync", rev)
}

// expectEvent reads the next event and checks its name and the revision of
// its id.
func expectEvent(t *testing.T, es *controltest.EventStream, name string, rev uint64) controlapi.Event {
	t.Helper()
	ev := es.Next(t, wait, false)
	got, fp, err := controlapi.ParseEventID(ev.ID)
	if ev.Name != name || err != nil || got != rev || (rev > 0) != (fp != "") {
		t.Fatalf("event %+v (data %s), want %s at %d with a fingerprint", ev, ev.Data, name, rev)
	}
	return ev
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
		{"a position of this history resumes", "", http.Header{"Last-Event-Id": {positionAt(t, s, 2)}}, 3},
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
	dir := t.TempDir()
	s := controltest.Start(t, controltest.Options{Dir: dir, ChangeLogSize: 3})
	c := s.Create(t, "org-1").Connection
	for range 3 {
		s.Act(t, c.ID, store.ActionDisable)
		s.Act(t, c.ID, store.ActionEnable)
	} // revision 7; the log keeps 5..7
	// A new process: its memory of recent changes starts empty, so only the
	// log can replay.
	s.Stop()
	s = controltest.Start(t, controltest.Options{Dir: dir, ChangeLogSize: 3, AdminKey: s.AdminKey, GatewayKey: s.GatewayKey})

	for _, q := range []string{"?since=1", "?since=99"} {
		t.Run(q, func(t *testing.T) {
			es := s.Events(t, s.GatewayKey, q, nil)
			expectEvent(t, es, "reset", 7)
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
	announced := func(sync controlapi.Event) int64 {
		var pos controlapi.Position
		json.Unmarshal(sync.Data, &pos)
		return pos.HeartbeatMillis
	}
	es := s.Events(t, s.GatewayKey, "?gateway_id=gw-1&instance=a", nil)
	if hb := announced(expectSync(t, es, 0)); hb != 50 {
		t.Errorf("a gateway's stream announced heartbeat_ms %d, want 50", hb)
	}
	// A heartbeat is an event with data and no id, so that clients that
	// pass comment-only blocks on as empty messages never see one.
	if ev := es.Next(t, wait, true); ev.Name != controlapi.EventHeartbeat || string(ev.Data) != "{}" || ev.ID != "" {
		t.Fatalf("got %+v, want a heartbeat event", ev)
	}
	// People's streams beat every 15 s at the most often: thousands of open
	// pages must not cost a write each every 50 ms.
	person := s.Events(t, s.AdminKey, "", nil)
	if hb := announced(expectSync(t, person, 0)); hb != 15000 {
		t.Errorf("a person's stream announced heartbeat_ms %d, want 15000", hb)
	}
	if ev, ok := person.TryNext(200 * time.Millisecond); ok {
		t.Errorf("a person's stream sent %+v within 200 ms", ev)
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

// positionAt is the event id of the change at rev, as a stream sends it.
func positionAt(t *testing.T, s *controltest.Server, rev uint64) string {
	t.Helper()
	es := s.Events(t, s.AdminKey, "?since="+strconv.FormatUint(rev-1, 10), nil)
	defer es.Close()
	return expectEvent(t, es, "status", rev).ID
}

// A position names the history as well as the revision: resuming with the
// revision of this store but the fingerprint of another history's change
// (a store restored from a backup reuses revisions for other changes) gets
// a reset, not a replay that would skip what the client missed.
func TestEventsResumeIntoAnotherHistory(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	c := s.Create(t, "org-1").Connection // rev 1
	s.Act(t, c.ID, store.ActionDisable)  // rev 2
	s.Act(t, c.ID, store.ActionEnable)   // rev 3
	good := positionAt(t, s, 2)
	rev, fp, _ := controlapi.ParseEventID(good)
	other := controlapi.EventID(rev, strings.Repeat("0", len(fp)))

	es := s.Events(t, s.GatewayKey, "", http.Header{"Last-Event-Id": {good}})
	if got := change(t, es.Next(t, wait, false)); got.Revision != 3 {
		t.Fatalf("resuming from this history's position replays from %d, want 3", got.Revision)
	}
	for _, from := range []string{other, controlapi.EventID(9, fp)} {
		es := s.Events(t, s.GatewayKey, "", http.Header{"Last-Event-Id": {from}})
		reset := expectEvent(t, es, "reset", 3)
		var pos controlapi.Position
		if err := json.Unmarshal(reset.Data, &pos); err != nil || pos.Revision != 3 || pos.HeartbeatMillis <= 0 {
			t.Errorf("reset data %s: want the revision and the heartbeat interval", reset.Data)
		}
		if sync := expectSync(t, es, 3); sync.ID != positionAt(t, s, 3) {
			t.Errorf("sync id %s is not the position of revision 3", sync.ID)
		}
	}
	// A bare revision (typed by a person) is resumed from on trust.
	es = s.Events(t, s.GatewayKey, "?since=2", nil)
	if got := change(t, es.Next(t, wait, false)); got.Revision != 3 {
		t.Fatalf("?since=2 replays from %d, want 3", got.Revision)
	}
}

// A bare revision names no history. A person's stream resumes from one the
// store has reached; a gateway's stream never does (a gateway resumes only
// from positions it was sent, with their fingerprint), and no stream
// resumes from one the store has not reached (a client of another history).
func TestEventsBarePosition(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	c := s.Create(t, "org-1").Connection // rev 1
	s.Act(t, c.ID, store.ActionDisable)  // rev 2
	s.Act(t, c.ID, store.ActionEnable)   // rev 3
	const gateway = "?gateway_id=gw-1&instance=a"

	tests := []struct {
		name   string
		query  string
		header http.Header
		reset  bool   // the stream starts with a reset (at 3)
		from   uint64 // else: the first change replayed (0: none, the sync at 3)
	}{
		{"a person's bare revision of this history resumes", "?since=2", nil, false, 3},
		{"a person's bare latest revision resumes", "?since=3", nil, false, 0},
		{"a person's bare revision ahead of the store resets", "?since=4", nil, true, 0},
		{"a person's bare Last-Event-ID ahead of the store resets", "", http.Header{"Last-Event-Id": {"9"}}, true, 0},
		{"a gateway's bare revision resets", gateway + "&since=2", nil, true, 0},
		{"a gateway's bare latest revision resets", gateway + "&since=3", nil, true, 0},
		{"a gateway's bare Last-Event-ID resets", gateway, http.Header{"Last-Event-Id": {"2"}}, true, 0},
		{"a gateway's full position resumes", gateway, http.Header{"Last-Event-Id": {positionAt(t, s, 2)}}, false, 3},
		{"a gateway resumes from revision 0, the empty store's whole position", gateway + "&since=0", nil, false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			es := s.Events(t, s.GatewayKey, tt.query, tt.header)
			if tt.reset {
				expectEvent(t, es, "reset", 3)
			}
			for rev := tt.from; rev > 0 && rev <= 3; rev++ {
				if got := change(t, es.Next(t, wait, false)); got.Revision != rev {
					t.Fatalf("replayed %d, want %d", got.Revision, rev)
				}
			}
			expectSync(t, es, 3)
		})
	}
}

// A person's bare revision is checked against the store when the stream
// opens, not when it first reads: a stream of a client ahead of the store
// (another history) that reads only after the store has caught up must
// reset, not resume silently past the changes it never saw.
func TestEventsBareRevisionAheadCheckedAtOpen(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	c := s.Create(t, "org-1").Connection // rev 1
	s.Act(t, c.ID, store.ActionDisable)  // rev 2

	release := control.HoldPeopleTurnsForTest(s.Control)
	opened := make(chan *controltest.EventStream, 1)
	go func() { opened <- s.Events(t, s.AdminKey, "?since=4", nil) }()
	eventually(t, "the stream waits for its turn", func() bool { return control.StreamsWaitingForTurnForTest() == 1 })
	s.Act(t, c.ID, store.ActionEnable)  // rev 3
	s.Act(t, c.ID, store.ActionDisable) // rev 4
	s.Act(t, c.ID, store.ActionEnable)  // rev 5
	release()

	// The reset is at the store's revision when the stream opened; what
	// came after is sent as it is.
	es := <-opened
	expectEvent(t, es, "reset", 2)
	for rev := uint64(3); rev <= 5; rev++ {
		if got := change(t, es.Next(t, wait, false)); got.Revision != rev {
			t.Fatalf("after the reset: %d, want %d", got.Revision, rev)
		}
	}
	expectSync(t, es, 5)
}

type fakeGateway = controltest.Gateway

func subscribeGateway(t *testing.T, s *controltest.Server, id string) *fakeGateway {
	return s.Gateway(t, id, id+"-p1")
}

func subscribeProcess(t *testing.T, s *controltest.Server, id, instance string) *fakeGateway {
	return s.Gateway(t, id, instance)
}

// connected lists the gateway processes with an open stream.
func connected(t *testing.T, s *controltest.Server) []controlapi.Gateway {
	t.Helper()
	var list controlapi.GatewayList
	s.Do(t, s.AdminKey, "GET", "/v1/gateways", nil, &list)
	var open []controlapi.Gateway
	for _, g := range list.Gateways {
		if g.Connected {
			open = append(open, g)
		}
	}
	return open
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(wait); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
	}
}

func TestWaitApplied(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	c := s.Create(t, "org-1").Connection
	gws := []*fakeGateway{subscribeGateway(t, s, "gw-a"), subscribeGateway(t, s, "gw-b"), subscribeGateway(t, s, "gw-c")}

	var list []controlapi.Gateway
	eventually(t, "three gateways applied the latest revision", func() bool {
		list = connected(t, s)
		allApplied := len(list) == 3
		for _, g := range list {
			allApplied = allApplied && g.AppliedRevision == c.Revision
		}
		return allApplied
	})
	if list[0].ID != "gw-a" || list[0].Instance != "gw-a-p1" || list[0].LagRevisions != 0 || list[0].Streams != 1 {
		t.Fatalf("GET /v1/gateways = %+v", list)
	}

	var got controlapi.Applied
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

	gws[1].Pause()
	start = time.Now()
	s.Do(t, s.AdminKey, "POST", "/v1/connections/"+c.ID+"/enable?wait=applied&timeout=300ms", nil, &got)
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Errorf("returned after %s, before the timeout", took)
	}
	if got.Gateways != 3 || got.Acknowledged != 2 || len(got.Pending) != 1 || got.Pending[0] != "gw-b/gw-b-p1" {
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
	if code := s.Do(t, s.GatewayKey, "GET", "/v1/gateways", nil, &e); code != 403 {
		t.Errorf("gateway key listing gateways: %d", code)
	}

	gws[0].Stream.Close()
	eventually(t, "the closed stream shows as disconnected", func() bool { return len(connected(t, s)) == 2 })
}

// Acknowledgements count only for the stream whose ack key they name, and
// only up to what it delivered: holding the shared gateway key is not
// enough to acknowledge for a gateway that did not apply a change.
func TestAcksBoundToTheirStream(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	c := s.Create(t, "org-1").Connection
	frozen := subscribeGateway(t, s, "gw-real")
	frozen.Pause()
	forger := s.Events(t, s.GatewayKey, "?gateway_id=gw-forger&instance=x", nil)
	forgerKey := forger.Resp.Header.Get(controlapi.AckKeyHeader)
	expectSync(t, forger, c.Revision)
	eventually(t, "both streams open", func() bool { return len(connected(t, s)) == 2 })

	ack := func(id string, body any) (int, errorBody) {
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest(http.MethodPost, s.URL+"/v1/gateways/"+id+"/ack", strings.NewReader(string(b)))
		req.Header.Set("Authorization", "Bearer "+s.GatewayKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, errorBody{}
		}
		defer resp.Body.Close()
		var e errorBody
		json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, e
	}
	for _, tt := range []struct {
		name, id string
		body     any
		status   int
		code     string
	}{
		{"no stream named", "gw-real", map[string]any{"revision": 1}, 400, "invalid_request"},
		{"an unknown ack key", "gw-real", controlapi.Ack{Revision: 1, Stream: "00112233445566778899aabbccddeeff"}, 404, "gateway_not_subscribed"},
		{"another gateway's stream", "gw-real", controlapi.Ack{Revision: 1, Stream: forgerKey}, 404, "gateway_not_subscribed"},
		{"above what the stream delivered", "gw-forger", controlapi.Ack{Revision: 18446744073709551615, Stream: forgerKey}, 409, "ack_ahead_of_stream"},
		{"the next revision, not sent yet", "gw-forger", controlapi.Ack{Revision: c.Revision + 1, Stream: forgerKey}, 409, "ack_ahead_of_stream"},
		{"what it was sent", "gw-forger", controlapi.Ack{Revision: c.Revision, Stream: forgerKey}, 204, ""},
	} {
		if code, e := ack(tt.id, tt.body); code != tt.status || e.Error != tt.code {
			t.Errorf("%s: %d %q, want %d %q", tt.name, code, e.Error, tt.status, tt.code)
		}
	}

	// The forger acknowledges everything its own stream is sent; the frozen
	// gateway still holds ?wait=applied, and is reported pending.
	go func() {
		for {
			ev, ok := forger.TryNext(wait)
			if !ok {
				return
			}
			if rev, _, err := controlapi.ParseEventID(ev.ID); err == nil && ev.ID != "" {
				ack("gw-forger", controlapi.Ack{Revision: rev, Stream: forgerKey})
			}
		}
	}()
	var got controlapi.Applied
	s.Do(t, s.AdminKey, "POST", "/v1/connections/"+c.ID+"/disable?wait=applied&timeout=300ms", nil, &got)
	if got.Gateways != 2 || got.Acknowledged != 1 || len(got.Pending) != 1 || got.Pending[0] != "gw-real/gw-real-p1" {
		t.Fatalf("with the real gateway frozen: %+v, want it pending", got)
	}
}

// Processes sharing a gateway id are told apart: each is listed, each is
// waited for.
func TestProcessesSharingAGatewayID(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	c := s.Create(t, "org-1").Connection
	one := subscribeProcess(t, s, "gw-host", "pid-1")
	two := subscribeProcess(t, s, "gw-host", "pid-2")
	eventually(t, "both processes listed", func() bool { return len(connected(t, s)) == 2 })
	two.Pause()
	var got controlapi.Applied
	s.Do(t, s.AdminKey, "POST", "/v1/connections/"+c.ID+"/disable?wait=applied&timeout=300ms", nil, &got)
	if got.Gateways != 2 || got.Acknowledged != 1 || len(got.Pending) != 1 || got.Pending[0] != "gw-host/pid-2" {
		t.Fatalf("one process of two acknowledging: %+v", got)
	}
	_ = one

	// A new stream of the same process replaces its old one.
	again := subscribeProcess(t, s, "gw-host", "pid-2")
	if _, ok := two.Stream.TryNext(wait); ok {
		for { // drain what was sent before it ended
			if _, ok := two.Stream.TryNext(wait); !ok {
				break
			}
		}
	}
	eventually(t, "the replaced stream gone, the process listed once", func() bool {
		list := connected(t, s)
		return len(list) == 2 && list[1].Instance == "pid-2" && list[1].Streams == 1
	})
	_ = again
}

// A gateway whose stream just ended (a config reload ends them all, or a
// network blip) is still waited for: it stays pending until it reconnects
// and applies the change.
func TestWaitAppliedCountsAReconnectingGateway(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	c := s.Create(t, "org-1").Connection
	gw := subscribeGateway(t, s, "gw-blip")
	eventually(t, "the gateway subscribed", func() bool { return len(connected(t, s)) == 1 })
	gw.Stream.Close()
	eventually(t, "the closed stream shows as disconnected", func() bool { return len(connected(t, s)) == 0 })
	var out controlapi.Applied
	if code := s.Do(t, s.AdminKey, "POST", "/v1/connections/"+c.ID+"/disable?wait=applied&timeout=200ms", nil, &out); code != 200 {
		t.Fatalf("disable: %d", code)
	}
	if out.Gateways != 1 || out.Acknowledged != 0 || len(out.Pending) != 1 || out.Pending[0] != "gw-blip/gw-blip-p1" {
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

// The gateways seen are kept in the store: right after a restart of the
// control endpoint, ?wait=applied waits for them (they are reconnecting)
// instead of answering "0 of 0, done".
func TestWaitAppliedAfterARestart(t *testing.T) {
	dir := t.TempDir()
	s := controltest.Start(t, controltest.Options{Dir: dir})
	c := s.Create(t, "org-1").Connection
	subscribeGateway(t, s, "gw-kept")
	eventually(t, "the gateway subscribed", func() bool { return len(connected(t, s)) == 1 })
	s.Stop() // saves what the registry knows
	s = controltest.Start(t, controltest.Options{Dir: dir, AdminKey: s.AdminKey, GatewayKey: s.GatewayKey})

	var out controlapi.Applied
	start := time.Now()
	s.Do(t, s.AdminKey, "POST", "/v1/connections/"+c.ID+"/disable?wait=applied&timeout=300ms", nil, &out)
	if out.Gateways != 1 || out.Acknowledged != 0 || len(out.Pending) != 1 || out.Pending[0] != "gw-kept/gw-kept-p1" {
		t.Fatalf("right after a restart: %+v, want the remembered gateway pending", out)
	}
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Errorf("answered after %s: it did not wait for the reconnecting gateway", took)
	}
	var list controlapi.GatewayList
	s.Do(t, s.AdminKey, "GET", "/v1/gateways", nil, &list)
	if len(list.Gateways) != 1 || list.Gateways[0].Connected || list.Gateways[0].LastSeenAt.IsZero() {
		t.Errorf("GET /v1/gateways after a restart = %+v, want the remembered gateway, disconnected", list.Gateways)
	}
	subscribeGateway(t, s, "gw-kept")
	s.Do(t, s.AdminKey, "POST", "/v1/connections/"+c.ID+"/enable?wait=applied&timeout=5s", nil, &out)
	if out.Gateways != 1 || out.Acknowledged != 1 {
		t.Errorf("once it is back: %+v", out)
	}
}

// A process that stops cleanly leaves, and is not waited for.
func TestGatewayLeaves(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	c := s.Create(t, "org-1").Connection
	gw := subscribeGateway(t, s, "gw-leaving")
	eventually(t, "the gateway subscribed", func() bool { return len(connected(t, s)) == 1 })
	key := gw.AckKey
	var e errorBody
	if code := s.Do(t, s.GatewayKey, "POST", "/v1/gateways/other/leave", controlapi.Leave{Stream: key}, &e); code != 404 {
		t.Errorf("leaving under another id: %d", code)
	}
	if code := s.Do(t, s.GatewayKey, "POST", "/v1/gateways/gw-leaving/leave", controlapi.Leave{Stream: key}, nil); code != 204 {
		t.Fatalf("leave: %d", code)
	}
	gw.Stream.Close()
	var out controlapi.Applied
	s.Do(t, s.AdminKey, "POST", "/v1/connections/"+c.ID+"/disable?wait=applied&timeout=2s", nil, &out)
	if out.Gateways != 0 || len(out.Pending) != 0 {
		t.Errorf("after it left: %+v, want nobody to wait for", out)
	}
}

// Stream limits: per principal and in total for people, a budget of their
// own for gateways, each refusal a 429 with Retry-After.
func TestStreamLimits(t *testing.T) {
	s := controltest.Start(t, controltest.Options{Configure: func(c *control.Control) {
		c.MaxStreamsPerPrincipal, c.MaxStreams, c.MaxGatewayStreams = 2, 3, 1
	}})
	open := func(key, query string) *controltest.EventStream {
		es := s.Events(t, key, query, nil)
		t.Cleanup(es.Close)
		return es
	}
	open(s.AdminKey, "")
	open(s.AdminKey, "")
	third := open(s.AdminKey, "")
	if third.Resp.StatusCode != 429 || third.Resp.Header.Get("Retry-After") == "" {
		t.Fatalf("a third stream of one principal: %d (Retry-After %q), want 429 with Retry-After", third.Resp.StatusCode, third.Resp.Header.Get("Retry-After"))
	}
	var e errorBody
	json.NewDecoder(third.Resp.Body).Decode(&e)
	if e.Error != "too_many_streams" {
		t.Errorf("refusal body %+v", e)
	}
	// The gateway key without a gateway id is a reader like a person: the
	// third of people's streams in total, then none.
	if es := open(s.GatewayKey, ""); es.Resp.StatusCode != 200 {
		t.Fatalf("the third of people's streams: %d", es.Resp.StatusCode)
	}
	if es := open(s.GatewayKey, ""); es.Resp.StatusCode != 429 {
		t.Fatalf("a fourth of people's streams past max_streams 3: %d", es.Resp.StatusCode)
	}
	if gw := open(s.GatewayKey, "?gateway_id=gw-1&instance=a"); gw.Resp.StatusCode != 200 {
		t.Fatalf("a gateway while people are at their limit: %d", gw.Resp.StatusCode)
	}
	if gw := open(s.GatewayKey, "?gateway_id=gw-2&instance=a"); gw.Resp.StatusCode != 429 {
		t.Fatalf("a gateway past max_gateway_streams: %d", gw.Resp.StatusCode)
	}
}
