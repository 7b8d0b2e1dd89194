package gate

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// controlProxy sits between a gate and the control endpoint to count status
// lookups, slow them down, or stall the change stream.
type controlProxy struct {
	*httptest.Server
	lookups     atomic.Int32
	lookupDelay atomic.Int64 // nanoseconds added before a status answer is sent
	stalled     atomic.Bool  // while set, no byte of the change stream gets through
}

func newControlProxy(t *testing.T, target string) *controlProxy {
	t.Helper()
	u, _ := url.Parse(target)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1 // stream events as they come
	p := &controlProxy{}
	rp.ModifyResponse = func(resp *http.Response) error {
		if strings.HasSuffix(resp.Request.URL.Path, "/v1/events") {
			resp.Body = &stallableBody{ReadCloser: resp.Body, stalled: &p.stalled}
		}
		return nil
	}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/status") {
			rp.ServeHTTP(w, r)
			return
		}
		p.lookups.Add(1)
		rec := httptest.NewRecorder()
		rp.ServeHTTP(rec, r) // the answer as of now...
		time.Sleep(time.Duration(p.lookupDelay.Load()))
		for k, v := range rec.Header() { // ...delivered later
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	}))
	t.Cleanup(func() {
		p.stalled.Store(false)
		p.CloseClientConnections()
		p.Close()
	})
	return p
}

type stallableBody struct {
	io.ReadCloser
	stalled *atomic.Bool
}

// Read holds what it read while stalled: a Read already waiting for data
// when the stall began must not let that data through either.
func (b *stallableBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	for b.stalled.Load() {
		time.Sleep(2 * time.Millisecond)
	}
	return n, err
}
