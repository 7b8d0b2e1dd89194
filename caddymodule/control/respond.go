package control

import (
	"encoding/json"
	"errors"
	"net/http"

	"go.uber.org/zap"

	"github.com/conngate/conngate/store"
)

// apiError is the body of every error answer: a stable code for programs and
// a sentence for people.
type apiError struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

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

func writeError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, apiError{Error: code, Message: message})
}

// writeStoreError maps store errors to answers; anything unexpected is a 500
// whose cause goes to the log, not to the client.
func (c *Control) writeStoreError(w http.ResponseWriter, r *http.Request, err error) {
	var invalid *store.InvalidError
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "connection_not_found", "No connection has id "+r.PathValue("id")+".")
	case errors.Is(err, store.ErrDeleted):
		writeError(w, http.StatusConflict, "connection_deleted", "The connection is deleted; deletion is permanent and it can no longer be enabled or disabled.")
	case errors.As(err, &invalid):
		writeError(w, http.StatusBadRequest, "invalid_request", invalid.Error()+".")
	default:
		c.logger.Error("store failure", zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Error(err))
		writeError(w, http.StatusInternalServerError, "internal_error", "The store failed; the change was not made. Try again.")
	}
}
