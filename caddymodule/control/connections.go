package control

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/conngate/conngate/store"
)

// maxBodyBytes caps request bodies: a create body is a few hundred bytes.
const maxBodyBytes = 64 << 10

type connectionBody struct {
	Connection store.Connection `json:"connection"`
}

type createdBody struct {
	Connection  store.Connection `json:"connection"`
	AccessToken string           `json:"access_token"`
	TokenType   string           `json:"token_type"`
	ExpiresAt   time.Time        `json:"expires_at"`
}

type listBody struct {
	Connections []store.Connection `json:"connections"`
	NextCursor  string             `json:"next_cursor"`
}

type statusBody struct {
	ID       string       `json:"id"`
	Status   store.Status `json:"status"`
	Revision uint64       `json:"revision"`
}

func (c *Control) createConnection(w http.ResponseWriter, r *http.Request) {
	var n store.NewConnection
	if !decodeBody(w, r, &n) {
		return
	}
	if err := n.Validate(); err != nil {
		c.writeStoreError(w, r, err)
		return
	}
	if !allowed(w, r, rightCreate, n.OrgID, nil, n.UserID) {
		return
	}
	conn, err := c.store.Create(r.Context(), n, actorOf(r))
	if err != nil {
		c.writeStoreError(w, r, err)
		return
	}
	token, exp, err := c.tokens.issue(conn, time.Now())
	if err != nil {
		// The connection exists but nobody holds a token for it: say so
		// rather than pretend, and leave it to the caller to delete or retry.
		c.logger.Error("signing access token", zap.String("connection_id", conn.ID), zap.Error(err))
		writeError(w, http.StatusInternalServerError, "internal_error", "The connection "+conn.ID+" was created but its access token could not be signed.")
		return
	}
	c.logger.Info("connection created", zap.String("connection_id", conn.ID), zap.String("org_id", conn.OrgID), zap.Uint64("revision", conn.Revision))
	w.Header().Set("Location", "/v1/connections/"+conn.ID)
	writeJSON(w, http.StatusCreated, createdBody{Connection: conn, AccessToken: token, TokenType: "Bearer", ExpiresAt: exp})
}

func (c *Control) listConnections(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	query := store.ListQuery{OrgID: q.Get("org_id"), After: q.Get("cursor"), Search: q.Get("q")}
	if v := q.Get("status"); v != "" {
		for _, st := range strings.Split(v, ",") {
			if !store.Status(st).Valid() {
				writeError(w, http.StatusBadRequest, "invalid_request", "status must be active, disabled or deleted, or several of them separated by commas.")
				return
			}
			query.Statuses = append(query.Statuses, store.Status(st))
		}
	}
	if utf8.RuneCountInString(query.Search) > store.MaxNameLength {
		writeError(w, http.StatusBadRequest, "invalid_request", "q must be at most "+strconv.Itoa(store.MaxNameLength)+" characters.")
		return
	}
	if query.OrgID != "" && !validID(w, "org_id", query.OrgID) || query.After != "" && !validID(w, "cursor", query.After) {
		return
	}
	var ok bool
	if query.Limit, ok = limitParam(w, r); !ok {
		return
	}
	if query.OrgID, ok = orgScope(w, r, query.OrgID, rightList); !ok {
		return
	}
	who := principalOf(r)
	if !who.admin && who.roles[query.OrgID] == roleDeveloper {
		query.UserID = who.id // developers list only their own
	}
	conns, next, err := c.store.List(r.Context(), query)
	if err != nil {
		c.writeStoreError(w, r, err)
		return
	}
	if conns == nil {
		conns = []store.Connection{} // [] rather than null for clients
	}
	writeJSON(w, http.StatusOK, listBody{Connections: conns, NextCursor: next})
}

func (c *Control) getConnection(w http.ResponseWriter, r *http.Request) {
	if conn, ok := c.loadConnection(w, r); ok && allowed(w, r, rightView, "", &conn, "") {
		writeJSON(w, http.StatusOK, connectionBody{conn})
	}
}

func (c *Control) getStatus(w http.ResponseWriter, r *http.Request) {
	if !allowed(w, r, rightReadStatus, "", nil, "") {
		return
	}
	if conn, ok := c.loadConnection(w, r); ok {
		writeJSON(w, http.StatusOK, statusBody{ID: conn.ID, Status: conn.Status, Revision: conn.Revision})
	}
}

// loadConnection reads the connection named in the path, or answers the
// error and returns false.
func (c *Control) loadConnection(w http.ResponseWriter, r *http.Request) (store.Connection, bool) {
	id, ok := pathID(w, r)
	if !ok {
		return store.Connection{}, false
	}
	conn, err := c.store.Get(r.Context(), id)
	if err != nil {
		c.writeStoreError(w, r, err)
		return store.Connection{}, false
	}
	return conn, true
}

func (c *Control) disableConnection(w http.ResponseWriter, r *http.Request) {
	c.apply(w, r, store.ActionDisable)
}

func (c *Control) enableConnection(w http.ResponseWriter, r *http.Request) {
	c.apply(w, r, store.ActionEnable)
}

func (c *Control) deleteConnection(w http.ResponseWriter, r *http.Request) {
	c.apply(w, r, store.ActionDelete)
}

// appliedBody answers a change made with ?wait=applied.
type appliedBody struct {
	Connection   store.Connection `json:"connection"`
	Gateways     int              `json:"gateways"`
	Acknowledged int              `json:"acknowledged"`
	Pending      []string         `json:"pending"`
}

// Bounds of ?timeout= for ?wait=applied.
const (
	defaultWaitTimeout = 2 * time.Second
	maxWaitTimeout     = 30 * time.Second
)

func (c *Control) apply(w http.ResponseWriter, r *http.Request, action store.Action) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	wait, timeout, ok := waitParams(w, r)
	if !ok {
		return
	}
	current, ok := c.loadConnection(w, r)
	if !ok || !allowed(w, r, map[store.Action]right{store.ActionDisable: rightDisable, store.ActionEnable: rightEnable, store.ActionDelete: rightDelete}[action], "", &current, "") {
		return
	}
	conn, changed, err := c.store.Apply(r.Context(), id, action, actorOf(r))
	if err != nil {
		c.writeStoreError(w, r, err)
		return
	}
	if changed {
		c.logger.Info("connection status changed", zap.String("connection_id", conn.ID), zap.String("action", string(action)),
			zap.String("status", string(conn.Status)), zap.Uint64("revision", conn.Revision))
	}
	if !wait {
		writeJSON(w, http.StatusOK, connectionBody{conn})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	total, pending := c.gateways.waitApplied(ctx, conn.Revision)
	writeJSON(w, http.StatusOK, appliedBody{Connection: conn, Gateways: total, Acknowledged: total - len(pending), Pending: pending})
}

// waitParams reads ?wait=applied&timeout=<duration>, before any change is
// made, so that a bad parameter changes nothing.
func waitParams(w http.ResponseWriter, r *http.Request) (wait bool, timeout time.Duration, ok bool) {
	q := r.URL.Query()
	switch q.Get("wait") {
	case "":
		if q.Has("timeout") {
			writeError(w, http.StatusBadRequest, "invalid_request", "timeout goes with wait=applied.")
			return false, 0, false
		}
		return false, 0, true
	case "applied":
	default:
		writeError(w, http.StatusBadRequest, "invalid_request", "wait must be \"applied\".")
		return false, 0, false
	}
	timeout = defaultWaitTimeout
	if s := q.Get("timeout"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 || d > maxWaitTimeout {
			writeError(w, http.StatusBadRequest, "invalid_request", "timeout must be a duration such as 2s, at most "+maxWaitTimeout.String()+".")
			return false, 0, false
		}
		timeout = d
	}
	return true, timeout, true
}

func pathID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	return id, validID(w, "connection id", id)
}

func validID(w http.ResponseWriter, field, id string) bool {
	if err := store.ValidateID(field, id); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error()+".")
		return false
	}
	return true
}

// decodeBody reads one JSON object into v, strictly: unknown fields, trailing
// data and oversized bodies are refused with a 4xx that says which.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		var tooLarge *http.MaxBytesError
		if extra := dec.Decode(&json.RawMessage{}); errors.As(extra, &tooLarge) {
			err = extra
		} else if extra != io.EOF {
			err = errors.New("unexpected data after the JSON object")
		}
	}
	var tooLarge *http.MaxBytesError
	switch {
	case err == nil:
		return true
	case errors.As(err, &tooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, "request_too_large", "The request body is larger than "+strconv.Itoa(maxBodyBytes)+" bytes.")
	default:
		writeError(w, http.StatusBadRequest, "invalid_json", "The request body is not the expected JSON object: "+err.Error()+".")
	}
	return false
}
