package control

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/conngate/conngate/caddymodule/controlapi"
	"github.com/conngate/conngate/store"
)

func writeJSON(w http.ResponseWriter, status int, body any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	// Statuses and tokens must never be served from an intermediary cache.
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(body) // the client has gone if this fails; nothing to do
}

// invalid is a 400 invalid_request: the request names something unusable.
func invalid(message string) *controlapi.Error {
	return &controlapi.Error{Status: http.StatusBadRequest, Code: controlapi.CodeInvalidRequest, Message: message}
}

// writeError is where every error answer of the control API is written:
// an operation returns the error, the endpoint writes it once. Store errors
// become their answers; anything unexpected is a 500 whose cause goes to
// the log, not to the client.
func (c *Control) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var apiErr *controlapi.Error
	var bad *store.InvalidError
	switch {
	case errors.As(err, &apiErr):
	case errors.Is(err, store.ErrNotFound):
		apiErr = connectionNotFound(r.PathValue("id"))
	case errors.Is(err, store.ErrDeleted):
		apiErr = &controlapi.Error{Status: http.StatusConflict, Code: controlapi.CodeConnectionDeleted,
			Message: "The connection is deleted; deletion is permanent and it can no longer be enabled or disabled."}
	case errors.As(err, &bad):
		apiErr = invalid(bad.Error() + ".")
	case errors.Is(err, store.ErrOutcomeUnknown):
		c.logger.Error("store connection lost during a commit", zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Error(err))
		apiErr = storeUnavailable("The store's connection was lost while the change was committed: it may or may not have been made. Read the resource before trying again.")
	case errors.Is(err, store.ErrUnavailable):
		c.noteStoreOutage(err)
		apiErr = storeUnavailable("The store cannot be reached; nothing was changed. Try again shortly.")
	default:
		c.logger.Error("request failed", zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Error(err))
		apiErr = &controlapi.Error{Status: http.StatusInternalServerError, Code: controlapi.CodeInternalError,
			Message: "The store failed; nothing was changed. Try again."}
	}
	for k, v := range apiErr.Header {
		w.Header().Set(k, v)
	}
	writeJSON(w, apiErr.Status, apiErr)
}

// storeRetryAfter is what a 503 store_unavailable tells clients to wait, in
// seconds.
const storeRetryAfter = "1"

func storeUnavailable(message string) *controlapi.Error {
	return &controlapi.Error{Status: http.StatusServiceUnavailable, Code: controlapi.CodeStoreUnavailable, Message: message,
		Header: map[string]string{"Retry-After": storeRetryAfter}}
}

// noteStoreOutage logs a store outage at most once per storeOutageLogEvery:
// during one, every request would otherwise log a line.
func (c *Control) noteStoreOutage(err error) {
	if c.shared != nil {
		logged := &c.shared.storeOutageLogged
		now := time.Now().UnixNano()
		last := logged.Load()
		if now-last < int64(storeOutageLogEvery) || !logged.CompareAndSwap(last, now) {
			return
		}
	}
	c.logger.Error("the store is unavailable: answers are 503 store_unavailable (temporarily_unavailable at the OAuth endpoints)", zap.Error(err))
}

// storeOutageLogEvery bounds the log lines of a store outage.
const storeOutageLogEvery = 10 * time.Second

func connectionNotFound(id string) *controlapi.Error {
	return &controlapi.Error{Status: http.StatusNotFound, Code: controlapi.CodeConnectionNotFound, Message: "No connection has id " + id + "."}
}
