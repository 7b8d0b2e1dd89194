package contracttest

import (
	"bytes"
	"context"
	"io"
	"net/http"
)

// Handler serves every request with next and checks each exchange against
// the contract, calling report with every mismatch. A text/event-stream
// answer is checked (status and headers) as soon as its header is written,
// since the stream may stay open until the test ends.
func (c *Contract) Handler(next http.Handler, report func(error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			// The client went away mid-body: the server never saw a whole
			// request, and what it answers goes nowhere.
			next.ServeHTTP(w, r)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		sent := r.Clone(context.Background())
		rec := &recorder{ResponseWriter: w}
		rec.onStream = func() {
			if err := c.Check(Exchange{Request: sent, RequestBody: body, Status: rec.status, Header: rec.header}); err != nil {
				report(err)
			}
		}
		next.ServeHTTP(rec, r)
		if rec.status == 0 {
			rec.WriteHeader(http.StatusOK)
		}
		if rec.stream {
			return
		}
		if err := c.Check(Exchange{Request: sent, RequestBody: body, Status: rec.status, Header: rec.header, Body: rec.body.Bytes()}); err != nil {
			report(err)
		}
	})
}

// recorder passes an answer through and keeps a copy of its status, its
// header as written, and its body unless it is a stream.
type recorder struct {
	http.ResponseWriter
	status   int
	header   http.Header
	body     bytes.Buffer
	stream   bool
	onStream func()
}

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 && status >= 200 {
		r.status = status
		r.header = r.ResponseWriter.Header().Clone()
		r.stream = mediaType(r.header) == "text/event-stream"
		if r.stream {
			r.onStream()
		}
	}
	r.ResponseWriter.WriteHeader(status)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.WriteHeader(http.StatusOK)
	}
	if !r.stream {
		r.body.Write(b)
	}
	return r.ResponseWriter.Write(b)
}

// FlushError and Unwrap let http.ResponseController reach the connection
// beneath, as the change stream needs.
func (r *recorder) FlushError() error {
	if r.status == 0 {
		r.WriteHeader(http.StatusOK)
	}
	return http.NewResponseController(r.ResponseWriter).Flush()
}

func (r *recorder) Flush() { _ = r.FlushError() }

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
