package control

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/golang-jwt/jwt/v5"

	"github.com/conngate/conngate/caddymodule/controlapi"
	"github.com/conngate/conngate/store"
)

// serveRevoke is POST /oauth/revoke (RFC 7009): an app disconnects itself.
// Revoking its refresh token or one of its access tokens ends the grant:
// the connection is deleted, with the app as the actor. A token the server
// does not know is answered 200, as section 2.2 asks.
func (c *Control) serveRevoke(w http.ResponseWriter, r *http.Request) error {
	form, app, err := c.clientRequest(w, r)
	if err != nil {
		return err
	}
	token := form.Get("token")
	if token == "" {
		return oauthFail(controlapi.OAuthInvalidRequest, "token is required.")
	}
	connID, owner, err := c.grantOf(r, form, token)
	if err != nil {
		return err
	}
	if connID != "" {
		if owner != app.ID {
			return oauthFail(controlapi.OAuthUnauthorizedClient, "The token was not issued to this client.")
		}
		if err := c.endGrant(r, connID, appActor(r, app, "revoked by the app")); err != nil {
			return err
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	return nil
}

// grantOf finds the connection a token belongs to and the app it was
// issued to, trying the kind the client hints first (token_type_hint is
// only a hint, RFC 7009 section 2.1). Unknown tokens give "".
func (c *Control) grantOf(r *http.Request, form url.Values, token string) (connID, appID string, err error) {
	refresh := func() (string, string, error) {
		t, err := c.store.GetRefreshToken(r.Context(), hashToken(token))
		if errors.Is(err, store.ErrGrantNotFound) {
			return "", "", nil
		}
		return t.ConnectionID, t.AppID, err
	}
	access := func() (string, string, error) {
		claims, ok := c.tokens.verify(token, c.now())
		if !ok {
			return "", "", nil
		}
		conn, err := c.store.Get(r.Context(), claims.ConnectionID)
		if errors.Is(err, store.ErrNotFound) {
			return "", "", nil
		}
		return conn.ID, conn.AppID, err
	}
	first, second := refresh, access
	if form.Get("token_type_hint") == "access_token" {
		first, second = access, refresh
	}
	if connID, appID, err = first(); connID != "" || err != nil {
		return connID, appID, err
	}
	return second()
}

// serveIntrospect is POST /oauth/introspect (RFC 7662), for gateways (their
// API key as a Bearer token), administrators and confidential apps (their
// own tokens only). A token is active only while it is valid and its
// connection is active.
func (c *Control) serveIntrospect(w http.ResponseWriter, r *http.Request) error {
	form, err := oauthForm(w, r)
	if err != nil {
		return err
	}
	var app *store.App
	p, wait := c.keys.principalOf(r)
	if wait > 0 {
		tooMany := tooManyAttempts(wait)
		w.Header().Set("Retry-After", tooMany.Header["Retry-After"])
		return &oauthError{status: tooMany.Status, body: controlapi.OAuthError{Code: controlapi.OAuthInvalidClient, Description: tooMany.Message}}
	}
	if p == nil || (!p.gateway && !p.admin) {
		if _, _, basic := r.BasicAuth(); !basic && !form.Has("client_secret") {
			return &oauthError{status: http.StatusUnauthorized, body: controlapi.OAuthError{Code: controlapi.OAuthInvalidClient,
				Description: "Authenticate with a gateway key (Bearer) or as a confidential client."}}
		}
		a, err := c.authenticateClient(r, form)
		if err != nil {
			return err
		}
		if !a.AuthMethod.Confidential() {
			return oauthFail(controlapi.OAuthUnauthorizedClient, "Only confidential clients may introspect tokens.")
		}
		app = &a
	}
	token := form.Get("token")
	if token == "" {
		return oauthFail(controlapi.OAuthInvalidRequest, "token is required.")
	}
	answer, err := c.introspect(r, token, form.Get("token_type_hint"))
	if err != nil {
		return err
	}
	if app != nil && answer.ClientID != app.ID {
		answer = controlapi.Introspection{} // not theirs to learn about
	}
	writeOAuthJSON(w, http.StatusOK, answer)
	return nil
}

func (c *Control) introspect(r *http.Request, token, hint string) (controlapi.Introspection, error) {
	active := func(connID string) (store.Connection, bool, error) {
		conn, err := c.store.Get(r.Context(), connID)
		if errors.Is(err, store.ErrNotFound) {
			return conn, false, nil
		}
		return conn, err == nil && conn.Status == store.StatusActive, err
	}
	asAccess := func() (controlapi.Introspection, bool, error) {
		claims, ok := c.tokens.verify(token, c.now())
		if !ok {
			return controlapi.Introspection{}, false, nil
		}
		conn, ok, err := active(claims.ConnectionID)
		if !ok || err != nil {
			return controlapi.Introspection{}, true, err
		}
		return controlapi.Introspection{Active: true, ClientID: conn.AppID, Subject: claims.Subject, TokenType: "Bearer",
			ExpiresAt: unixOf(claims.ExpiresAt), IssuedAt: unixOf(claims.IssuedAt), Issuer: claims.Issuer,
			Audience: c.Audience, TokenID: claims.ID, ConnectionID: conn.ID}, true, nil
	}
	asRefresh := func() (controlapi.Introspection, bool, error) {
		t, err := c.store.GetRefreshToken(r.Context(), hashToken(token))
		if errors.Is(err, store.ErrGrantNotFound) {
			return controlapi.Introspection{}, false, nil
		}
		if err != nil {
			return controlapi.Introspection{}, true, err
		}
		conn, ok, err := active(t.ConnectionID)
		if !ok || err != nil || !t.RotatedAt.IsZero() {
			return controlapi.Introspection{}, true, err
		}
		return controlapi.Introspection{Active: true, ClientID: t.AppID, Subject: conn.UserID, TokenType: "refresh_token",
			Scope: t.Scope, IssuedAt: t.IssuedAt.Unix(), ConnectionID: conn.ID}, true, nil
	}
	first, second := asAccess, asRefresh
	if hint == "refresh_token" {
		first, second = asRefresh, asAccess
	}
	answer, known, err := first()
	if known || err != nil {
		return answer, err
	}
	answer, _, err = second()
	return answer, err
}

func unixOf(d *jwt.NumericDate) int64 {
	if d == nil {
		return 0
	}
	return d.Unix()
}

// serveOAuthMetadata is GET /.well-known/oauth-authorization-server (RFC
// 8414). Its issuer must be the one clients expect (section 3.3) and the
// access tokens' iss (RFC 9068): the issuer setting, when that is a URL the
// endpoints can be built on. Otherwise the endpoints are on the origin the
// client reached, named as the issuer (Provision warns of it).
func (c *Control) serveOAuthMetadata(w http.ResponseWriter, r *http.Request) {
	issuer, base := c.Issuer, issuerOrigin(c.Issuer)
	if base == "" {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		base = scheme + "://" + r.Host
		issuer = base
	}
	clientAuth := []string{string(store.AuthSecretBasic), string(store.AuthSecretPost), string(store.AuthNone)}
	encodeJSON(w, controlapi.ServerMetadata{
		Issuer:                                    issuer,
		AuthorizationEndpoint:                     base + controlapi.PathAuthorize,
		TokenEndpoint:                             base + controlapi.PathToken,
		RevocationEndpoint:                        base + controlapi.PathRevoke,
		IntrospectionEndpoint:                     base + controlapi.PathIntrospect,
		JWKSURI:                                   base + controlapi.PathJWKS,
		ResponseTypesSupported:                    []string{"code"},
		ResponseModesSupported:                    []string{"query"},
		GrantTypesSupported:                       []string{controlapi.GrantAuthorizationCode, controlapi.GrantRefreshToken},
		CodeChallengeMethodsSupported:             []string{"S256"},
		TokenEndpointAuthMethodsSupported:         clientAuth,
		RevocationEndpointAuthMethodsSupported:    clientAuth,
		IntrospectionEndpointAuthMethodsSupported: []string{string(store.AuthSecretBasic), string(store.AuthSecretPost), "bearer"},
	})
}

// issuerOrigin is the origin of issuer when issuer is the control
// endpoint's URL as RFC 8414 section 2 has it: https (or http on a loopback
// host, for development), a host, no user info, query or fragment, and no
// path but "/" (the pages and endpoints sit at the root of the endpoint's
// origin, and the metadata is served only at the root's well-known path).
// Anything else, such as the default "conngate", gives "".
func issuerOrigin(issuer string) string {
	u, err := url.Parse(issuer)
	if err != nil || u.Hostname() == "" || u.User != nil || strings.ContainsAny(issuer, "?#") || (u.Path != "" && u.Path != "/") {
		return ""
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && store.IsLoopbackHost(u.Hostname()):
	default:
		return ""
	}
	return u.Scheme + "://" + u.Host
}
