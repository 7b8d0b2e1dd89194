package gate

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/conngate/conngate/caddymodule/controlapi"
)

// controlClient asks the control endpoints for connection statuses. Status
// lookups fail over between the endpoints by themselves; the change stream,
// acknowledgements and leaving name the endpoint they go to, the stream's.
type controlClient struct {
	endpoints     endpoints
	authorization string
	http          *http.Client // lookups and acks: short requests with a timeout from their context
	streams       *http.Client // the change stream: one long request
}

func newControlClient(bases []string, key string) *controlClient {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	// Lookups come in bursts on a cold cache; keep enough idle connections
	// that a burst does not open a new one per lookup.
	transport.MaxIdleConnsPerHost = 64
	transport.IdleConnTimeout = 90 * time.Second
	return &controlClient{
		endpoints:     endpoints{urls: bases},
		authorization: "Bearer " + key,
		http:          &http.Client{Transport: transport},
		// Its own transport, so that the stream never holds a connection
		// the lookups want, and closing it closes only the stream.
		streams: &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()},
	}
}

// status returns the connection's status and its revision, statusUnknown
// for an id the control endpoint does not know, or an error when no control
// endpoint can tell. It asks the endpoint in use and, when that one cannot
// answer (no connection, a timeout, a 5xx or 429), the next ones.
func (c *controlClient) status(ctx context.Context, id string) (statusEntry, error) {
	var e statusEntry
	err := c.endpoints.try(ctx, func(ctx context.Context, base string) (bool, error) {
		var next bool
		var err error
		e, next, err = c.statusAt(ctx, base, id)
		return next, err
	})
	return e, err
}

// statusAt asks one endpoint; next reports that it could not answer.
func (c *controlClient) statusAt(ctx context.Context, base, id string) (e statusEntry, next bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+controlapi.StatusPath(id), nil)
	if err != nil {
		return statusEntry{}, false, err
	}
	req.Header.Set("Authorization", c.authorization)
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return statusEntry{}, true, fmt.Errorf("status lookup: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return statusEntry{}, true, fmt.Errorf("status lookup: reading answer: %w", err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		var a controlapi.StatusBody
		if err := json.Unmarshal(body, &a); err != nil {
			return statusEntry{}, true, fmt.Errorf("status lookup: decoding answer: %w", err)
		}
		if a.ID != id || !a.Status.Valid() {
			return statusEntry{}, true, fmt.Errorf("status lookup: answer for %q has status %q", a.ID, a.Status)
		}
		return statusEntry{id: id, status: a.Status, revision: a.Revision}, false, nil
	case http.StatusNotFound, http.StatusBadRequest:
		// 400 is an id the control endpoint rejects as malformed: no
		// connection can have it.
		var e controlapi.Error
		if json.Unmarshal(body, &e) == nil && (e.Code == controlapi.CodeConnectionNotFound || e.Code == controlapi.CodeInvalidRequest) {
			return statusEntry{id: id, status: statusUnknown}, false, nil
		}
	}
	return statusEntry{}, serverFailed(resp.StatusCode), fmt.Errorf("status lookup: control endpoint answered %s", resp.Status)
}

// ack tells the control endpoint that this gateway process has applied
// every change up to revision, received on the stream whose ack key is
// given, to base, the endpoint of that stream.
func (c *controlClient) ack(ctx context.Context, base, gatewayID, ackKey string, revision uint64) error {
	return c.post(ctx, base+controlapi.AckPath(gatewayID), controlapi.Ack{Revision: revision, Stream: ackKey})
}

// leave tells the control endpoint that this gateway process stops, so that
// it is not waited for: to base, the endpoint of its stream.
func (c *controlClient) leave(ctx context.Context, base, gatewayID, ackKey string) error {
	return c.post(ctx, base+controlapi.LeavePath(gatewayID), controlapi.Leave{Stream: ackKey})
}

// post sends v as JSON to url and expects 204.
func (c *controlClient) post(ctx context.Context, url string, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", c.authorization)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10)) // lets the connection be reused
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("control endpoint answered %s", resp.Status)
	}
	return nil
}

// events opens the change stream of one gateway process at the endpoint
// base, resuming after position (an event id) unless it is empty. It returns
// the stream and the ack key that acknowledgements of what it delivers must
// name.
func (c *controlClient) events(ctx context.Context, base, gatewayID, instance, position string) (*http.Response, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+controlapi.EventsPathFor(gatewayID, instance), nil)
	if err != nil {
		return nil, "", err
	}
	req.Header.Set("Authorization", c.authorization)
	req.Header.Set("Accept", "text/event-stream")
	if position != "" {
		req.Header.Set("Last-Event-ID", position)
	}
	resp, err := c.streams.Do(req)
	if err != nil {
		return nil, "", err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, "", fmt.Errorf("control endpoint answered %s", resp.Status)
	}
	return resp, resp.Header.Get(controlapi.AckKeyHeader), nil
}
