package contracttest

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
)

// Transport checks, on the client's side, every exchange it carries
// against the contract and calls Report with each mismatch. It records the
// documented answers the exchanges reached (Covered), so that a test can
// show that what it meant to check was checked, not skipped. A
// text/event-stream answer is checked by its status and headers.
type Transport struct {
	Contract *Contract
	// Next carries the exchanges; http.DefaultTransport when nil.
	Next   http.RoundTripper
	Report func(error)

	mu      sync.Mutex
	covered map[string]bool
}

func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	var sent []byte
	if req.Body != nil && req.Body != http.NoBody {
		var err error
		if sent, err = io.ReadAll(req.Body); err != nil {
			return nil, err
		}
		req.Body.Close()
		req = req.Clone(req.Context())
		req.Body = io.NopCloser(bytes.NewReader(sent))
	}
	next := t.Next
	if next == nil {
		next = http.DefaultTransport
	}
	resp, err := next.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	ex := Exchange{Request: req, RequestBody: sent, Status: resp.StatusCode, Header: resp.Header}
	if mediaType(resp.Header) != "text/event-stream" {
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		ex.Body = body
	}
	if op, err := t.Contract.checkOperation(ex); err != nil {
		t.Report(err)
	} else if op != "" {
		t.mu.Lock()
		if t.covered == nil {
			t.covered = map[string]bool{}
		}
		t.covered[fmt.Sprintf("%s %d", op, ex.Status)] = true
		t.mu.Unlock()
	}
	return resp, nil
}

// Covered lists the documented answers that exchanges reached and that
// kept to the document, as "<operationId> <status>", sorted.
func (t *Transport) Covered() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for k := range t.covered {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
