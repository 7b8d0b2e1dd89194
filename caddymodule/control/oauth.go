package control

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"go.uber.org/zap"

	"github.com/conngate/conngate/caddymodule/controlapi"
	"github.com/conngate/conngate/store"
)

// oauthError is a failure of the token, revocation or introspection
// endpoint, answered as RFC 6749 section 5.2 says.
type oauthError struct {
	status int
	body   controlapi.OAuthError
}

func (e *oauthError) Error() string { return string(e.body.Code) + ": " + e.body.Description }

func oauthFail(code controlapi.OAuthErrorCode, description string) *oauthError {
	return &oauthError{status: http.StatusBadRequest, body: controlapi.OAuthError{Code: code, Description: description}}
}

// oauthEndpoint adapts an OAuth operation that takes method and lets
// clients authenticate with schemes ("Basic", "Bearer"), which its 401s
// challenge: it writes a returned *oauthError as the RFC says, a store
// outage as a 503 temporarily_unavailable the client may retry, and
// anything else as a logged server_error.
func (c *Control) oauthEndpoint(method string, schemes []string, serve func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method {
			w.Header().Set("Allow", method)
			writeOAuthError(w, r, schemes, &oauthError{status: http.StatusMethodNotAllowed,
				body: controlapi.OAuthError{Code: controlapi.OAuthInvalidRequest, Description: r.Method + " is not allowed here; use " + method + "."}})
			return
		}
		err := serve(w, r)
		if err == nil {
			return
		}
		var oe *oauthError
		switch {
		case errors.As(err, &oe):
		case errors.Is(err, store.ErrOutcomeUnknown):
			c.logger.Error("store connection lost during a commit", zap.String("path", r.URL.Path), zap.Error(err))
			oe = oauthUnavailable(w, "The store's connection was lost while the change was committed: it may or may not have been made.")
		case errors.Is(err, store.ErrUnavailable):
			c.noteStoreOutage(err)
			oe = oauthUnavailable(w, "The store cannot be reached; nothing was changed. Try again shortly.")
		default:
			c.logger.Error("oauth request failed", zap.String("path", r.URL.Path), zap.Error(err))
			oe = &oauthError{status: http.StatusInternalServerError, body: controlapi.OAuthError{Code: controlapi.OAuthServerError, Description: "The server failed; nothing was changed. Try again."}}
		}
		writeOAuthError(w, r, schemes, oe)
	}
}

// oauthUnavailable is a store outage at an OAuth endpoint: 503 with
// Retry-After, as the API answers one, in the RFC's format
// (temporarily_unavailable, RFC 6749 section 4.1.2.1).
func oauthUnavailable(w http.ResponseWriter, description string) *oauthError {
	w.Header().Set("Retry-After", storeRetryAfter)
	return &oauthError{status: http.StatusServiceUnavailable,
		body: controlapi.OAuthError{Code: controlapi.OAuthTemporarilyUnavailable, Description: description}}
}

func writeOAuthError(w http.ResponseWriter, r *http.Request, schemes []string, e *oauthError) {
	if e.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", oauthChallenge(r, schemes))
	}
	writeOAuthJSON(w, e.status, e.body)
}

// oauthChallenge is the WWW-Authenticate of a 401 invalid_client: the
// scheme the client tried in its Authorization header, when the endpoint
// takes it (RFC 6749 section 5.2), else every scheme the endpoint takes
// (RFC 9110 section 11.6.1: a challenge that applies to it; a client that
// sent its credentials in the body, or none, learns how it may).
func oauthChallenge(r *http.Request, schemes []string) string {
	tried, _, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	challenges := make([]string, 0, len(schemes))
	for _, s := range schemes {
		if strings.EqualFold(tried, s) {
			return s + ` realm="conngate"`
		}
		challenges = append(challenges, s+` realm="conngate"`)
	}
	return strings.Join(challenges, ", ")
}

// writeOAuthJSON answers with the headers RFC 6749 section 5.1 asks of
// every answer that may hold a token.
func writeOAuthJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, status, body)
}

// oauthForm parses a form-encoded request body. RFC 6749 section 3.2: a
// parameter sent twice is an invalid request.
func oauthForm(w http.ResponseWriter, r *http.Request) (url.Values, error) {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(strings.ToLower(ct), "application/x-www-form-urlencoded") {
		return nil, oauthFail(controlapi.OAuthInvalidRequest, "The body must be application/x-www-form-urlencoded.")
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	if err := r.ParseForm(); err != nil {
		return nil, oauthFail(controlapi.OAuthInvalidRequest, "The form could not be read: "+err.Error()+".")
	}
	for name, values := range r.PostForm {
		if len(values) > 1 {
			return nil, oauthFail(controlapi.OAuthInvalidRequest, "Parameter "+name+" is given more than once.")
		}
	}
	return r.PostForm, nil
}

// clientRequest reads the form of a request an app makes and authenticates
// the app.
func (c *Control) clientRequest(w http.ResponseWriter, r *http.Request) (url.Values, store.App, error) {
	form, err := oauthForm(w, r)
	if err != nil {
		return nil, store.App{}, err
	}
	app, err := c.authenticateClient(r, form)
	return form, app, err
}

// authenticateClient finds the app making a token, revocation or
// introspection request (RFC 6749 section 2.3): HTTP Basic with the
// form-encoded client id and secret, or client_id and client_secret in the
// body; a public app sends only client_id. A confidential app may use
// either way, as clients that auto-detect (golang.org/x/oauth2) do.
func (c *Control) authenticateClient(r *http.Request, form url.Values) (store.App, error) {
	id, secret, basic := r.BasicAuth()
	if basic {
		var err1, err2 error
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			return store.App{}, &oauthError{status: http.StatusUnauthorized,
				body: controlapi.OAuthError{Code: controlapi.OAuthInvalidClient, Description: "The Basic credentials are not form-encoded."}}
		}
		if form.Has("client_secret") {
			return store.App{}, oauthFail(controlapi.OAuthInvalidRequest, "Authenticate with one method only, not with both Basic and client_secret.")
		}
		if bodyID := form.Get("client_id"); bodyID != "" && bodyID != id {
			return store.App{}, oauthFail(controlapi.OAuthInvalidRequest, "client_id in the body differs from the authenticated client.")
		}
	} else {
		id, secret = form.Get("client_id"), form.Get("client_secret")
	}
	unknown := &oauthError{status: http.StatusUnauthorized,
		body: controlapi.OAuthError{Code: controlapi.OAuthInvalidClient, Description: "Unknown client, or wrong client secret."}}
	if id == "" {
		unknown.body.Description = "The client is not identified: send client_id."
		return store.App{}, unknown
	}
	if store.ValidateID("client_id", id) != nil {
		return store.App{}, unknown
	}
	app, err := c.store.GetApp(r.Context(), id)
	if errors.Is(err, store.ErrAppNotFound) {
		return store.App{}, unknown
	}
	if err != nil {
		return store.App{}, err
	}
	if !app.AuthMethod.Confidential() {
		// A public app may name itself in a Basic header with an empty
		// secret, as clients that prefer the header do.
		if secret != "" {
			unknown.body.Description = "This is a public client: it has no secret to send."
			return store.App{}, unknown
		}
		return app, nil
	}
	if secret == "" || subtle.ConstantTimeCompare(hashToken(secret), app.SecretHash) != 1 {
		return store.App{}, unknown
	}
	return app, nil
}

// appActor is how an app appears in the audit log when it ends its own
// grant.
func appActor(r *http.Request, app store.App, reason string) store.Actor {
	return store.Actor{ID: "app:" + app.ID, RequestID: requestID(r), Reason: reason}
}

// hashToken is how codes, refresh tokens and client secrets are stored:
// only their sha-256.
func hashToken(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

// encodeJSON is used for the metadata document. Its URLs follow the Host
// the client reached, so a shared cache must keep one copy per host.
func encodeJSON(w http.ResponseWriter, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Header().Set("Vary", "Host")
	_ = json.NewEncoder(w).Encode(body) // the client has gone if this fails
}
