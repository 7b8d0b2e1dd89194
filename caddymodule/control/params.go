package control

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/conngate/conngate/caddymodule/controlapi"
	"github.com/conngate/conngate/store"
)

// maxBodyBytes caps request bodies: a create body is a few hundred bytes.
const maxBodyBytes = 64 << 10

// Bounds of ?timeout= for ?wait=applied.
const (
	defaultWaitTimeout = 2 * time.Second
	maxWaitTimeout     = 30 * time.Second
)

// limitParam reads ?limit= (0 when absent).
func limitParam(r *http.Request) (int, error) {
	s := r.URL.Query().Get("limit")
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > store.MaxListLimit {
		return 0, invalid("limit must be a whole number from 1 to " + strconv.Itoa(store.MaxListLimit) + ".")
	}
	return n, nil
}

// validID refuses an identifier no record can have.
func validID(field, id string) error {
	if err := store.ValidateID(field, id); err != nil {
		return invalid(err.Error() + ".")
	}
	return nil
}

// optionalID is validID for a filter that may be left out.
func optionalID(field, id string) error {
	if id == "" {
		return nil
	}
	return validID(field, id)
}

// pathID is the connection id in the path.
func pathID(r *http.Request) (string, error) {
	id := r.PathValue("id")
	return id, validID("connection id", id)
}

// waitParams reads ?wait=applied&timeout=<duration>, before any change is
// made, so that a bad parameter changes nothing. timeout is 0 without wait.
func waitParams(r *http.Request) (timeout time.Duration, err error) {
	q := r.URL.Query()
	switch q.Get("wait") {
	case "":
		if q.Has("timeout") {
			return 0, invalid("timeout goes with wait=applied.")
		}
		return 0, nil
	case "applied":
	default:
		return 0, invalid("wait must be \"applied\".")
	}
	s := q.Get("timeout")
	if s == "" {
		return defaultWaitTimeout, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 || d > maxWaitTimeout {
		return 0, invalid("timeout must be a duration such as 2s, at most " + maxWaitTimeout.String() + ".")
	}
	return d, nil
}

// decodeBody reads one JSON object into v, strictly: unknown fields, trailing
// data and oversized bodies are refused with a 4xx that says which.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
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
		return nil
	case errors.As(err, &tooLarge):
		return &controlapi.Error{Status: http.StatusRequestEntityTooLarge, Code: controlapi.CodeRequestTooLarge,
			Message: "The request body is larger than " + strconv.Itoa(maxBodyBytes) + " bytes."}
	default:
		return &controlapi.Error{Status: http.StatusBadRequest, Code: controlapi.CodeInvalidJSON,
			Message: "The request body is not the expected JSON object: " + err.Error() + "."}
	}
}
