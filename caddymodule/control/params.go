package control

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
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

// decodeBody reads one JSON object into v, strictly: unknown fields, field
// names in another case, repeated fields, trailing data and oversized bodies
// are refused with a 4xx that says which.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return &controlapi.Error{Status: http.StatusRequestEntityTooLarge, Code: controlapi.CodeRequestTooLarge,
			Message: "The request body is larger than " + strconv.Itoa(maxBodyBytes) + " bytes."}
	}
	if err == nil {
		err = exactFields(body, v)
	}
	if err == nil {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err = dec.Decode(v); err == nil && dec.Decode(&json.RawMessage{}) != io.EOF {
			err = errors.New("unexpected data after the JSON object")
		}
	}
	if err != nil {
		return &controlapi.Error{Status: http.StatusBadRequest, Code: controlapi.CodeInvalidJSON,
			Message: "The request body is not the expected JSON object: " + err.Error() + "."}
	}
	return nil
}

// exactFields refuses what encoding/json would let through: a field named
// in another case ({"NAME": ...} fills Name) or given twice (the last one
// wins). It checks the top-level object; the API's bodies are flat.
func exactFields(body []byte, v any) error {
	names := map[string]bool{}
	t := reflect.TypeOf(v).Elem()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			names[name] = true
		}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil // not an object: the decoder says so
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		key, _ := tok.(string)
		switch {
		case seen[key]:
			return fmt.Errorf("field %q is given twice", key)
		case !names[key]:
			for name := range names {
				if strings.EqualFold(name, key) {
					return fmt.Errorf("field %q must be written %q", key, name)
				}
			}
		}
		seen[key] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil
		}
	}
	return nil
}
