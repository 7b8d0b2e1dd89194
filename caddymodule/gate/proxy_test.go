package gate

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// hold keeps whoever waits on it waiting while it is engaged: a test double
// for a slow or hanging peer that the test, not a timer, releases.
type hold struct {
	mu      sync.Mutex
	waiting chan struct{} // nil while released
}

func (h *hold) engage() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.waiting == nil {
		h.waiting = make(chan struct{})
	}
}

func (h *hold) release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.waiting != nil {
		close(h.waiting)
		h.waiting = nil
	}
}

// wait returns once the hold is released, or ctx is done.
func (h *hold) wait(ctx context.Context) {
	h.mu.Lock()
	ch := h.waiting
	h.mu.Unlock()
	if ch == nil {
		return
	}
	select {
	case <-ch:
	case <-ctx.Done():
	}
}

// controlProxy sits between a gate and the control endpoint to count status
// lookups, hold them, or stall the change stream.
type controlProxy struct {
	*httptest.Server
	lookups    atomic.Int32
	answered   atomic.Int32 // lookups whose answer the control endpoint has given
	lookupHold hold         // while engaged, status answers are kept from the gate
	stall      hold         // while engaged, no byte of the change stream gets through
	acks       atomic.Int32 // acknowledgements passed on
}

func newControlProxy(t *testing.T, target string) *controlProxy {
	t.Helper()
	u, _ := url.Parse(target)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1 // stream events as they come
	p := &controlProxy{}
	rp.ModifyResponse = func(resp *http.Response) error {
		if strings.HasSuffix(resp.Request.URL.Path, "/v1/events") {
			resp.Body = &stallableBody{ReadCloser: resp.Body, stall: &p.stall, ctx: resp.Request.Context()}
		}
		return nil
	}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/status") {
			if strings.HasSuffix(r.URL.Path, "/ack") {
				p.acks.Add(1)
			}
			rp.ServeHTTP(w, r)
			return
		}
		p.lookups.Add(1)
		rec := httptest.NewRecorder()
		rp.ServeHTTP(rec, r) // the answer as of now...
		p.answered.Add(1)
		p.lookupHold.wait(r.Context()) // ...delivered once released
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	}))
	t.Cleanup(func() {
		p.stall.release()
		p.lookupHold.release()
		p.CloseClientConnections()
		p.Close()
	})
	return p
}

type stallableBody struct {
	io.ReadCloser
	stall *hold
	ctx   context.Context
}

// Read holds what it read while stalled: a Read already waiting for data
// when the stall began must not let that data through either.
func (b *stallableBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.stall.wait(b.ctx)
	return n, err
}
