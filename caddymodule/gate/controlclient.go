package gate

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
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

// ack tells the control endpoint that this gateway has applied every change
// up to revision.
func (c *controlClient) ack(ctx context.Context, gatewayID string, revision uint64) error {
	body, err := json.Marshal(controlapi.Ack{Revision: revision})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+controlapi.AckPath(gatewayID), bytes.NewReader(body))
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

// events opens the change stream, resuming after revision when resume is set.
func (c *controlClient) events(ctx context.Context, gatewayID string, after uint64, resume bool) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+controlapi.EventsPathFor(gatewayID), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", c.authorization)
	req.Header.Set("Accept", "text/event-stream")
	if resume {
		req.Header.Set("Last-Event-ID", strconv.FormatUint(after, 10))
	}
	resp, err := c.streams.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("control endpoint answered %s", resp.Status)
	}
	return resp, nil
}
