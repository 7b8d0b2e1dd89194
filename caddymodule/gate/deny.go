package gate

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/conngate/conngate/store"
)

// denial is a refused request: the HTTP status, the RFC 6750 error code for
// the challenge ("" for none), its description, and the reason put in the
// JSON body for programs.
type denial struct {
	status      int
	code        string
	description string
	reason      string
}

// statusUnknown is what the gate calls a connection id that the control
// endpoint has never heard of.
const statusUnknown store.Status = "unknown"

var (
	denyNoToken     = &denial{http.StatusUnauthorized, "", "", "token_missing"}
	denyUnavailable = &denial{http.StatusServiceUnavailable, "", "", "status_unavailable"}
	denyNoKeysYet   = &denial{http.StatusServiceUnavailable, "", "", "keys_unavailable"}
	denyDisabled    = &denial{http.StatusUnauthorized, "invalid_token", "connection disabled", "connection_disabled"}
	denyDeleted     = &denial{http.StatusUnauthorized, "invalid_token", "connection deleted", "connection_deleted"}
	denyUnknown     = &denial{http.StatusUnauthorized, "invalid_token", "connection unknown", "connection_unknown"}
)

func malformed(description string) *denial {
	return &denial{http.StatusBadRequest, "invalid_request", description, "authorization_malformed"}
}

func denyForStatus(st store.Status) *denial {
	switch st {
	case store.StatusDisabled:
		return denyDisabled
	case store.StatusDeleted:
		return denyDeleted
	default:
		return denyUnknown
	}
}

// tokenInvalid turns a verification error into an answer that says what was
// wrong with the token, in words taken from a fixed list: nothing the client
// sent is echoed back.
func tokenInvalid(err error) *denial {
	if errors.Is(err, errKeysUnavailable) {
		return denyNoKeysYet
	}
	var desc string
	var claimErr *claimError
	switch {
	case errors.As(err, &claimErr):
		desc = claimErr.description
	case errors.Is(err, errCrit):
		desc = "critical header not understood"
	case errors.Is(err, errNoKey):
		desc = "no key to verify the token"
	case errors.Is(err, jwt.ErrTokenMalformed):
		desc = "token malformed"
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		desc = "no key to verify the token"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		desc = "signature invalid"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		desc = "required claim missing"
	case errors.Is(err, jwt.ErrTokenExpired):
		desc = "token expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		desc = "token not valid yet"
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		desc = "token issued in the future"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		desc = "wrong audience"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		desc = "wrong issuer"
	default:
		desc = "token invalid"
	}
	return &denial{http.StatusUnauthorized, "invalid_token", desc, "token_invalid"}
}

// Error names the refusal for Caddy's error handling ({http.error.message})
// and its logs: the reason, and the description if there is one.
func (d *denial) Error() string {
	if d.description == "" {
		return d.reason
	}
	return d.reason + ": " + d.description
}

// errorCode is the "error" of the JSON body and of {http.auth.deny.error}:
// the RFC 6750 code of the challenge, or, for a refusal without one, a code
// that still says what happened.
func (d *denial) errorCode() string {
	switch {
	case d.status == http.StatusServiceUnavailable:
		return "temporarily_unavailable"
	case d.code == "":
		return "unauthorized"
	}
	return d.code
}

type denialBody struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
	Reason      string `json:"reason"`
}

// deny refuses the request: it counts and logs the refusal (never the
// token), sets the placeholders and the challenge headers, and then either
// hands the refusal to the server's error routes or writes the default
// answer itself (see Gate).
func (g *Gate) deny(w http.ResponseWriter, r *http.Request, d *denial, cid string) error {
	g.metrics.denied(d)
	if ce := g.logger.Check(zapcore.DebugLevel, "denied"); ce != nil {
		ce.Write(zap.Int("status", d.status), zap.String("reason", d.reason), zap.String("connection_id", cid))
	}
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("http.auth.deny.reason", d.reason)
		repl.Set("http.auth.deny.error", d.errorCode())
		repl.Set("http.auth.deny.error_description", d.description)
		repl.Set("http.auth.deny.connection_id", cid)
	}
	h := w.Header()
	switch {
	case d.status == http.StatusServiceUnavailable:
		h.Set("Retry-After", "2") // both 503s: status lookups and key sets are retried within seconds
	case d.code == "":
		h.Set("WWW-Authenticate", `Bearer realm="`+g.Realm+`"`)
	default:
		h.Set("WWW-Authenticate", `Bearer realm="`+g.Realm+`", error="`+d.code+`", error_description="`+d.description+`"`)
	}
	h.Set("Cache-Control", "no-store")
	if errorRoutesAnswer(r) {
		return caddyhttp.Error(d.status, d)
	}
	h.Set("Content-Type", "application/json")
	w.WriteHeader(d.status)
	_ = json.NewEncoder(w).Encode(denialBody{Error: d.errorCode(), Description: d.description, Reason: d.reason})
	return nil
}

// errorRoutesAnswer reports whether Caddy's error routes (handle_errors)
// get a refusal returned as an error: the request's server has some, and
// the request is not already in them. Caddy answers an error with no error
// routes, or one returned from inside them, with the bare status and no
// body; the gate writes its JSON answer instead.
func errorRoutesAnswer(r *http.Request) bool {
	srv, _ := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	return srv != nil && srv.Errors != nil && len(srv.Errors.Routes) > 0 && r.Context().Value(caddyhttp.ErrorCtxKey) == nil
}
