package control

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// A stream whose request was already being read when its server began to
// shut down must see the shutdown too: a hook registered then is never run,
// and the stream would hold the exit (or a reload) up for ever.
func TestStreamOpenedDuringShutdownEnds(t *testing.T) {
	srv := &http.Server{}
	req := func() *http.Request {
		return httptest.NewRequest(http.MethodGet, "/v1/events", nil).WithContext(context.WithValue(context.Background(), http.ServerContextKey, srv))
	}
	var s serverShutdowns
	first := s.of(req()) // an earlier request registered the hook
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-first:
	case <-time.After(time.Second):
		t.Fatal("the earlier request's shutdown signal never came")
	}
	select {
	case <-s.of(req()):
	case <-time.After(time.Second):
		t.Error("a request read after the shutdown began never got the signal")
	}
}
