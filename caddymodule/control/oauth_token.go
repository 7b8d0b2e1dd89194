package control

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"go.uber.org/zap"

	"github.com/conngate/conngate/caddymodule/controlapi"
	"github.com/conngate/conngate/store"
)

// codeLifetime: RFC 6749 section 4.1.2 recommends at most ten minutes; an
// app exchanges its code within seconds.
const codeLifetime = 60 * time.Second

// serveToken is POST /oauth/token: the authorization_code and refresh_token
// grants.
func (c *Control) serveToken(w http.ResponseWriter, r *http.Request) error {
	form, app, err := c.clientRequest(w, r)
	if err != nil {
		return err
	}
	var answer controlapi.TokenResponse
	switch form.Get("grant_type") {
	case controlapi.GrantAuthorizationCode:
		answer, err = c.exchangeCode(r, app, form)
	case controlapi.GrantRefreshToken:
		answer, err = c.refresh(r, app, form)
	case "":
		return oauthFail(controlapi.OAuthInvalidRequest, "grant_type is required.")
	default:
		return oauthFail(controlapi.OAuthUnsupportedGrantType, "grant_type must be authorization_code or refresh_token.")
	}
	if err != nil {
		return err
	}
	writeOAuthJSON(w, http.StatusOK, answer)
	return nil
}

// exchangeCode redeems an authorisation code (RFC 6749 section 4.1.3, RFC
// 7636 section 4.6): the connection the person approved is created now, in
// the transaction that takes the code and stores the first refresh token,
// so that an approval never redeemed leaves no connection. The code is
// single-use: a second use ends the grant the first one started, since
// the code has leaked (section 4.1.2).
func (c *Control) exchangeCode(r *http.Request, app store.App, form url.Values) (controlapi.TokenResponse, error) {
	code, verifier := form.Get("code"), form.Get("code_verifier")
	if code == "" {
		return controlapi.TokenResponse{}, oauthFail(controlapi.OAuthInvalidRequest, "code is required.")
	}
	if !validPKCEValue(verifier) {
		return controlapi.TokenResponse{}, oauthFail(controlapi.OAuthInvalidRequest, "code_verifier is required: 43 to 128 characters of A-Z, a-z, 0-9, '-', '.', '_' and '~' (RFC 7636).")
	}
	hash := hashToken(code)
	// Checked before it is taken: an attempt that fails (the wrong client,
	// a wrong verifier) must not use the code up, or anyone who saw the
	// code could spoil the app's own exchange.
	ac, err := c.store.GetCode(r.Context(), hash)
	if errors.Is(err, store.ErrCodeUsed) {
		if ac.RedirectURI != form.Get("redirect_uri") || !pkceMatches(verifier, ac.Challenge) {
			// Whoever saw the code (it travels in a redirect URL: browser
			// history, Referer, proxy logs) but not the verifier is not the
			// app using it twice: refused, and the grant left alone, or a
			// replay of a spent code would delete the person's connection.
			return controlapi.TokenResponse{}, oauthFail(controlapi.OAuthInvalidGrant, "The code is unknown or expired.")
		}
		return controlapi.TokenResponse{}, c.codeReused(r, app, ac)
	}
	if errors.Is(err, store.ErrGrantNotFound) {
		return controlapi.TokenResponse{}, oauthFail(controlapi.OAuthInvalidGrant, "The code is unknown or expired.")
	}
	if err != nil {
		return controlapi.TokenResponse{}, err
	}
	switch {
	case ac.AppID != app.ID:
		return controlapi.TokenResponse{}, oauthFail(controlapi.OAuthInvalidGrant, "The code was issued to another client.")
	case !c.now().Before(ac.ExpiresAt):
		return controlapi.TokenResponse{}, oauthFail(controlapi.OAuthInvalidGrant, "The code has expired.")
	case form.Get("redirect_uri") != ac.RedirectURI:
		// RFC 6749 section 4.1.3: the same redirect_uri as the
		// authorisation request, or none when that request had none.
		return controlapi.TokenResponse{}, oauthFail(controlapi.OAuthInvalidGrant, "redirect_uri differs from the authorisation request's.")
	case !pkceMatches(verifier, ac.Challenge):
		return controlapi.TokenResponse{}, oauthFail(controlapi.OAuthInvalidGrant, "code_verifier does not match the code_challenge.")
	}
	refresh := newOpaqueToken()
	first := store.RefreshToken{Hash: hashToken(refresh), AppID: app.ID, Scope: ac.Scope, IssuedAt: c.now().UTC()}
	if ac.ConnectionID != "" {
		return c.exchangeApprovedConnection(r, app, ac, hash, refresh, first)
	}
	ac, conn, err := c.store.RedeemCode(r.Context(), hash, first)
	switch {
	case errors.Is(err, store.ErrCodeUsed):
		return controlapi.TokenResponse{}, c.codeReused(r, app, ac) // a concurrent exchange won
	case errors.Is(err, store.ErrGrantNotFound):
		return controlapi.TokenResponse{}, oauthFail(controlapi.OAuthInvalidGrant, "The code is unknown or expired, or its app was deleted.")
	case err != nil:
		return controlapi.TokenResponse{}, err
	}
	c.logger.Info("authorisation code redeemed: connection created", zap.String("client_id", app.ID), zap.String("connection_id", conn.ID),
		zap.String("org_id", conn.OrgID), zap.String("principal", ac.ApprovedBy.ID), zap.Uint64("revision", conn.Revision))
	return c.tokenAnswer(conn, refresh, ac.Scope)
}

// exchangeApprovedConnection redeems a code approved by a release that
// created the connection at approval (ac.ConnectionID), still valid while
// replicas of both releases share a store: the code is taken and the
// refresh token saved for that connection, if it may still be used.
func (c *Control) exchangeApprovedConnection(r *http.Request, app store.App, ac store.AuthCode, hash []byte, refresh string, first store.RefreshToken) (controlapi.TokenResponse, error) {
	conn, err := c.grantConnection(r, ac.ConnectionID)
	if err != nil {
		return controlapi.TokenResponse{}, err
	}
	if _, err := c.store.TakeCode(r.Context(), hash); errors.Is(err, store.ErrCodeUsed) {
		return controlapi.TokenResponse{}, c.codeReused(r, app, ac) // a concurrent exchange won
	} else if err != nil {
		return controlapi.TokenResponse{}, err
	}
	first.ConnectionID = conn.ID
	err = c.store.SaveRefreshToken(r.Context(), first)
	if errors.Is(err, store.ErrAppNotFound) {
		return controlapi.TokenResponse{}, oauthFail(controlapi.OAuthInvalidGrant, "The app was deleted.")
	}
	if err != nil {
		return controlapi.TokenResponse{}, err
	}
	c.logger.Info("authorisation code exchanged", zap.String("client_id", app.ID), zap.String("connection_id", conn.ID))
	return c.tokenAnswer(conn, refresh, ac.Scope)
}

// codeReused ends the grant of a code exchanged before: the code has
// leaked (RFC 6749 section 4.1.2), so the tokens its first exchange issued
// may be an attacker's. Ending a grant deletes its connection, as a reused
// refresh token and a revocation do: deleted is terminal, so those tokens
// can never work again, where a disabled connection could be enabled with
// them. Only the app the code was issued to can end it this way.
func (c *Control) codeReused(r *http.Request, app store.App, ac store.AuthCode) error {
	if ac.AppID == app.ID {
		if err := c.endGrant(r, ac.ConnectionID, appActor(r, app, "authorisation code used twice")); err != nil {
			return err
		}
	}
	return oauthFail(controlapi.OAuthInvalidGrant, "The code was used before; the connection it created is deleted.")
}

// refresh rotates a refresh token (RFC 6749 section 6). While the
// connection is disabled the token is refused and left as it is, so that it
// works again once the connection is enabled.
func (c *Control) refresh(r *http.Request, app store.App, form url.Values) (controlapi.TokenResponse, error) {
	presented := form.Get("refresh_token")
	if presented == "" {
		return controlapi.TokenResponse{}, oauthFail(controlapi.OAuthInvalidRequest, "refresh_token is required.")
	}
	hash := hashToken(presented)
	old, err := c.store.GetRefreshToken(r.Context(), hash)
	if errors.Is(err, store.ErrGrantNotFound) {
		return controlapi.TokenResponse{}, oauthFail(controlapi.OAuthInvalidGrant, "The refresh token is unknown.")
	}
	if err != nil {
		return controlapi.TokenResponse{}, err
	}
	if old.AppID != app.ID {
		return controlapi.TokenResponse{}, oauthFail(controlapi.OAuthInvalidGrant, "The refresh token was issued to another client.")
	}
	if !old.RotatedAt.IsZero() && c.now().After(old.RotatedAt.Add(time.Duration(c.RefreshTokenOverlap))) {
		// A rotated token past its overlap is a reuse whatever the
		// connection's status: checked first, so that a stolen token
		// replayed while the connection is disabled ends the grant too.
		if err := c.endGrant(r, old.ConnectionID, appActor(r, app, "rotated refresh token used again")); err != nil {
			return controlapi.TokenResponse{}, err
		}
		return controlapi.TokenResponse{}, oauthFail(controlapi.OAuthInvalidGrant, "The refresh token was already used; the connection is deleted.")
	}
	if scope := form.Get("scope"); scope != "" && scope != old.Scope {
		return controlapi.TokenResponse{}, oauthFail(controlapi.OAuthInvalidScope, "scope may only repeat the scope of the grant.")
	}
	conn, err := c.grantConnection(r, old.ConnectionID)
	if err != nil {
		return controlapi.TokenResponse{}, err
	}
	next := newOpaqueToken()
	_, err = c.store.RotateRefreshToken(r.Context(), hash, store.RefreshToken{Hash: hashToken(next), AppID: app.ID,
		ConnectionID: conn.ID, Scope: old.Scope, IssuedAt: c.now().UTC()}, c.now(), time.Duration(c.RefreshTokenOverlap))
	if errors.Is(err, store.ErrAppNotFound) || errors.Is(err, store.ErrGrantNotFound) {
		return controlapi.TokenResponse{}, oauthFail(controlapi.OAuthInvalidGrant, "The grant ended while this request ran.")
	}
	if errors.Is(err, store.ErrRefreshReused) {
		// A rotated token came back: it was stolen, or the app is broken.
		// Either way the grant ends (as Ory Hydra and Auth0 do).
		if err := c.endGrant(r, conn.ID, appActor(r, app, "rotated refresh token used again")); err != nil {
			return controlapi.TokenResponse{}, err
		}
		return controlapi.TokenResponse{}, oauthFail(controlapi.OAuthInvalidGrant, "The refresh token was already used; the connection is deleted.")
	}
	if err != nil {
		return controlapi.TokenResponse{}, err
	}
	return c.tokenAnswer(conn, next, old.Scope)
}

// grantConnection returns the connection a grant acts through, or the
// invalid_grant that says why it cannot be used now.
func (c *Control) grantConnection(r *http.Request, id string) (store.Connection, error) {
	conn, err := c.store.Get(r.Context(), id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return conn, oauthFail(controlapi.OAuthInvalidGrant, "The connection of this grant no longer exists.")
	case err != nil:
		return conn, err
	case conn.Status == store.StatusDeleted:
		return conn, oauthFail(controlapi.OAuthInvalidGrant, "The connection is deleted; this grant can never be used again.")
	case conn.Status == store.StatusDisabled:
		return conn, oauthFail(controlapi.OAuthInvalidGrant, "The connection is disabled; the same token works again once it is enabled.")
	}
	return conn, nil
}

// endGrant deletes the connection of a grant, as any delete: audited,
// pushed to the gateways.
func (c *Control) endGrant(r *http.Request, connectionID string, by store.Actor) error {
	conn, changed, err := c.store.Apply(r.Context(), connectionID, store.ActionDelete, by)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("ending grant of %s: %w", connectionID, err)
	}
	if changed {
		c.logger.Warn("grant ended", zap.String("connection_id", conn.ID), zap.String("actor", by.ID), zap.String("reason", by.Reason),
			zap.Uint64("revision", conn.Revision))
	}
	return nil
}

func (c *Control) tokenAnswer(conn store.Connection, refresh, scope string) (controlapi.TokenResponse, error) {
	now := c.now()
	access, expires, err := c.tokens.issue(conn, now)
	if err != nil {
		return controlapi.TokenResponse{}, fmt.Errorf("signing access token for %s: %w", conn.ID, err)
	}
	return controlapi.TokenResponse{AccessToken: access, TokenType: "Bearer", ExpiresIn: int64(expires.Sub(now).Seconds()),
		RefreshToken: refresh, Scope: scope}, nil
}

// newOpaqueToken returns 256 random bits, base64url: codes and refresh
// tokens.
func newOpaqueToken() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails
	return base64.RawURLEncoding.EncodeToString(b)
}

// validPKCEValue checks a code_verifier or code_challenge (RFC 7636 section
// 4.1): 43 to 128 unreserved characters.
func validPKCEValue(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for i := 0; i < len(v); i++ {
		ch := v[i]
		if !('A' <= ch && ch <= 'Z' || 'a' <= ch && ch <= 'z' || '0' <= ch && ch <= '9' || ch == '-' || ch == '.' || ch == '_' || ch == '~') {
			return false
		}
	}
	return true
}

// pkceMatches applies S256: BASE64URL(SHA256(verifier)) == challenge.
func pkceMatches(verifier, challenge string) bool {
	sum := sha256.Sum256([]byte(verifier))
	return subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(challenge)) == 1
}
