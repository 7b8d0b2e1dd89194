package gate

import (
	"net/http"
	"strings"
)

// bearerToken extracts the token from the one place RFC 6750 section 2.1
// allows here: a single `Authorization: Bearer <token>` header. Query
// parameters, form fields and cookies never carry a token.
func bearerToken(r *http.Request) (string, *denial) {
	values := r.Header.Values("Authorization")
	switch len(values) {
	case 0:
		return "", denyNoToken
	case 1:
	default:
		return "", malformed("more than one Authorization header")
	}
	scheme, token, found := strings.Cut(values[0], " ")
	// The scheme is case-insensitive (RFC 9110 section 11.1). Another
	// scheme (Basic, or a bare token) is a client that did not know Bearer
	// is needed: RFC 6750 section 3.1 asks for the bare challenge then, as
	// for no credentials at all, not an error.
	if !strings.EqualFold(scheme, "Bearer") {
		if len(values[0]) > len("Bearer") && strings.EqualFold(values[0][:len("Bearer")], "Bearer") {
			return "", malformed("Bearer must be followed by one space and the token")
		}
		return "", denyNoToken
	}
	token = strings.TrimLeft(token, " ")
	switch {
	case !found || token == "":
		return "", malformed("empty bearer token")
	case strings.IndexByte(token, ' ') >= 0 || strings.IndexByte(token, '\t') >= 0 || strings.IndexByte(token, ',') >= 0:
		// IndexByte, not ContainsAny: it is vectorised, and tokens are long.
		return "", malformed("more than one token")
	}
	return token, nil
}
