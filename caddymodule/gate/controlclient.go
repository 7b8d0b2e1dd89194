package gate

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/conngate/conngate/store"
)

// controlClient asks the control endpoint for connection statuses.
type controlClient struct {
	base          string
	authorization string
	http          *http.Client
}

func newControlClient(base, key string) *controlClient {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	// Lookups come in bursts on a cold cache; keep enough idle connections
	// that a burst does not open a new one per lookup.
	transport.MaxIdleConnsPerHost = 64
	transport.IdleConnTimeout = 90 * time.Second
	return &controlClient{base: base, authorization: "Bearer " + key, http: &http.Client{Transport: transport}}
}

// statusAnswer is the body of GET /v1/connections/{id}/status.
type statusAnswer struct {
	ID       string       `json:"id"`
	Status   store.Status `json:"status"`
	Revision uint64       `json:"revision"`
}

// status returns the connection's status, statusUnknown for an id the control
// endpoint does not know, or an error when it cannot tell.
func (c *controlClient) status(ctx context.Context, id string) (store.Status, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/connections/"+url.PathEscape(id)+"/status", nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", c.authorization)
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("status lookup: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", fmt.Errorf("status lookup: reading answer: %w", err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		var a statusAnswer
		if err := json.Unmarshal(body, &a); err != nil {
			return "", fmt.Errorf("status lookup: decoding answer: %w", err)
		}
		if a.ID != id || !a.Status.Valid() {
			return "", fmt.Errorf("status lookup: answer for %q has status %q", a.ID, a.Status)
		}
		return a.Status, nil
	case http.StatusNotFound, http.StatusBadRequest:
		// 400 is an id the control endpoint rejects as malformed: no
		// connection can have it.
		var e struct{ Error string }
		if json.Unmarshal(body, &e) == nil && (e.Error == "connection_not_found" || e.Error == "invalid_request") {
			return statusUnknown, nil
		}
	}
	return "", fmt.Errorf("status lookup: control endpoint answered %s", resp.Status)
}
