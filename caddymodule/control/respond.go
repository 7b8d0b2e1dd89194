package control

import (
	"encoding/json"
	"errors"
	"net/http"

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

func connectionNotFound(id string) *controlapi.Error {
	return &controlapi.Error{Status: http.StatusNotFound, Code: controlapi.CodeConnectionNotFound, Message: "No connection has id " + id + "."}
}
