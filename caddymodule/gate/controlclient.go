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

// controlClient asks the control endpoint for connection statuses.
type controlClient struct {
	base          string
	authorization string
	http          *http.Client // lookups and acks: short requests with a timeout from their context
	streams       *http.Client // the change stream: one long request
}

func newControlClient(base, key string) *controlClient {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	// Lookups come in bursts on a cold cache; keep enough idle connections
	// that a burst does not open a new one per lookup.
	transport.MaxIdleConnsPerHost = 64
	transport.IdleConnTimeout = 90 * time.Second
	return &controlClient{
		base:          base,
		authorization: "Bearer " + key,
		http:          &http.Client{Transport: transport},
		// Its own transport, so that the stream never holds a connection
		// the lookups want, and closing it closes only the stream.
		streams: &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()},
	}
}

// status returns the connection's status and its revision, statusUnknown
// for an id the control endpoint does not know, or an error when it cannot
// tell.
func (c *controlClient) status(ctx context.Context, id string) (statusEntry, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+controlapi.StatusPath(id), nil)
	if err != nil {
		return statusEntry{}, err
	}
	req.Header.Set("Authorization", c.authorization)
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return statusEntry{}, fmt.Errorf("status lookup: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return statusEntry{}, fmt.Errorf("status lookup: reading answer: %w", err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		var a controlapi.StatusBody
		if err := json.Unmarshal(body, &a); err != nil {
			return statusEntry{}, fmt.Errorf("status lookup: decoding answer: %w", err)
		}
		if a.ID != id || !a.Status.Valid() {
			return statusEntry{}, fmt.Errorf("status lookup: answer for %q has status %q", a.ID, a.Status)
		}
		return statusEntry{id: id, status: a.Status, revision: a.Revision}, nil
	case http.StatusNotFound, http.StatusBadRequest:
		// 400 is an id the control endpoint rejects as malformed: no
		// connection can have it.
		var e controlapi.Error
		if json.Unmarshal(body, &e) == nil && (e.Code == controlapi.CodeConnectionNotFound || e.Code == controlapi.CodeInvalidRequest) {
			return statusEntry{id: id, status: statusUnknown}, nil
		}
	}
	return statusEntry{}, fmt.Errorf("status lookup: control endpoint answered %s", resp.Status)
}

// ack tells the control endpoint that this gateway process has applied
// every change up to revision, received on the stream whose ack key is
// given.
func (c *controlClient) ack(ctx context.Context, gatewayID, ackKey string, revision uint64) error {
	return c.post(ctx, controlapi.AckPath(gatewayID), controlapi.Ack{Revision: revision, Stream: ackKey})
}

// leave tells the control endpoint that this gateway process stops, so that
// it is not waited for.
func (c *controlClient) leave(ctx context.Context, gatewayID, ackKey string) error {
	return c.post(ctx, controlapi.LeavePath(gatewayID), controlapi.Leave{Stream: ackKey})
}

// post sends v as JSON and expects 204.
func (c *controlClient) post(ctx context.Context, path string, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(body))
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

// events opens the change stream of one gateway process, resuming after
// position (an event id) unless it is empty. It returns the stream and the
// ack key that acknowledgements of what it delivers must name.
func (c *controlClient) events(ctx context.Context, gatewayID, instance, position string) (*http.Response, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+controlapi.EventsPathFor(gatewayID, instance), nil)
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
