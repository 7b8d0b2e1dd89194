package controltest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/conngate/conngate/caddymodule/controlapi"
)

// Gateway is a fake gateway process: it subscribes to the change stream as
// gateway id and instance and, unless paused, acknowledges every event it
// reads with its stream's ack key, until the stream ends.
type Gateway struct {
	ID, Instance string
	Stream       *EventStream
	AckKey       string
	paused       atomic.Bool
}

// Gateway subscribes a fake gateway process; the test fails if the stream
// is refused.
func (s *Server) Gateway(t testing.TB, id, instance string) *Gateway {
	t.Helper()
	g := &Gateway{ID: id, Instance: instance, Stream: s.Events(t, s.GatewayKey, "?gateway_id="+id+"&instance="+instance, nil)}
	if g.Stream.Resp.StatusCode != http.StatusOK {
		t.Fatalf("subscribing %s/%s: %s", id, instance, g.Stream.Resp.Status)
	}
	g.AckKey = g.Stream.Resp.Header.Get(controlapi.AckKeyHeader)
	if len(g.AckKey) < 32 {
		t.Fatalf("stream of %s answered with ack key %q", id, g.AckKey)
	}
	go func() {
		for {
			ev, ok := g.Stream.TryNext(10 * time.Second)
			if !ok {
				return
			}
			rev, _, err := controlapi.ParseEventID(ev.ID)
			if err != nil || ev.ID == "" || g.paused.Load() {
				continue // a heartbeat, or frozen
			}
			body, _ := json.Marshal(controlapi.Ack{Revision: rev, Stream: g.AckKey})
			req, _ := http.NewRequest(http.MethodPost, s.URL+controlapi.AckPath(id), bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+s.GatewayKey)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}
	}()
	return g
}

// Pause stops its acknowledgements: a frozen gateway.
func (g *Gateway) Pause() { g.paused.Store(true) }
