package control

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The authorisation pages know who a person is in one of two ways: a Caddy
// authentication handler in front of the control endpoint put their id in
// {http.auth.user.id}, or they signed in with their key and hold a session
// cookie. Cookies are signed, not stored, so that any control replica
// accepts any replica's cookie (they share the signing secret).
const (
	sessionTTL     = 30 * time.Minute
	oauthSecretKey = "oauth-cookie-mac-key"
)

// cookieNames are the names and path of the sign-in cookies for one
// request's scheme.
type cookieNames struct {
	session string
	// csrf holds a random nonce that forms carry a MAC of: a form posted
	// from another site cannot know it (double submit, bound to the person
	// and the purpose by the MAC).
	csrf string
	path string
}

// cookiesOf names the cookies by the request's scheme. Over HTTPS they
// carry the __Host- prefix (RFC 6265bis section 4.1.3.2): the browser takes
// them only with Secure, Path=/ and no Domain, so a sibling subdomain can
// neither set nor shadow them. Plain HTTP (loopback development) cannot
// have the prefix and keeps the unprefixed names under /oauth/. Reads
// accept only the names of the request's scheme, so an unprefixed cookie
// planted over HTTPS is never taken for a session.
func cookiesOf(r *http.Request) cookieNames {
	if r.TLS != nil {
		return cookieNames{session: "__Host-conngate_session", csrf: "__Host-conngate_csrf", path: "/"}
	}
	return cookieNames{session: "conngate_session", csrf: "conngate_csrf", path: "/oauth/"}
}

// cookieSigner signs and checks session cookies and CSRF tokens.
type cookieSigner struct {
	key []byte
	now func() time.Time
}

func (s cookieSigner) mac(parts ...string) string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(strings.Join(parts, "\x00")))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// session is "<principal id>.<unix expiry>.<mac>", the id base64url-encoded
// since ids may hold dots.
func (s cookieSigner) session(principalID string) (value string, expires time.Time) {
	expires = s.now().Add(sessionTTL)
	id := base64.RawURLEncoding.EncodeToString([]byte(principalID))
	exp := strconv.FormatInt(expires.Unix(), 10)
	return id + "." + exp + "." + s.mac("session", id, exp), expires
}

// sessionPrincipal returns the principal id of a valid, unexpired session.
func (s cookieSigner) sessionPrincipal(value string) (string, bool) {
	id, rest, ok := strings.Cut(value, ".")
	if !ok {
		return "", false
	}
	exp, mac, ok := strings.Cut(rest, ".")
	if !ok || !hmac.Equal([]byte(mac), []byte(s.mac("session", id, exp))) {
		return "", false
	}
	unix, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || s.now().Unix() >= unix {
		return "", false
	}
	raw, err := base64.RawURLEncoding.DecodeString(id)
	return string(raw), err == nil
}

// csrfToken binds a form to its purpose, the person and the browser's nonce.
func (s cookieSigner) csrfToken(purpose, principalID, nonce string) string {
	return s.mac("csrf", purpose, principalID, nonce)
}

func (s cookieSigner) validCSRF(token, purpose, principalID, nonce string) bool {
	return nonce != "" && hmac.Equal([]byte(token), []byte(s.csrfToken(purpose, principalID, nonce)))
}

// cookieValue is the value of the request's cookie name, or "".
func cookieValue(r *http.Request, name string) string {
	if c, err := r.Cookie(name); err == nil {
		return c.Value
	}
	return ""
}

// csrfNonce returns the browser's nonce, setting a new one when it has none.
func csrfNonce(w http.ResponseWriter, r *http.Request) string {
	if nonce := cookieValue(r, cookiesOf(r).csrf); len(nonce) >= 22 {
		return nonce
	}
	b := make([]byte, 18)
	rand.Read(b) // never fails
	nonce := base64.RawURLEncoding.EncodeToString(b)
	setCookie(w, r, cookiesOf(r).csrf, nonce, time.Time{})
	return nonce
}

// setCookie sets a sign-in cookie: HttpOnly, SameSite=Lax (sent on the
// top-level navigation from the app, not on cross-site posts), Secure over
// HTTPS. A zero expires makes a browser-session cookie; one in the past
// removes the cookie.
func setCookie(w http.ResponseWriter, r *http.Request, name, value string, expires time.Time) {
	c := &http.Cookie{Name: name, Value: value, Path: cookiesOf(r).path, HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil}
	if !expires.IsZero() {
		c.Expires = expires
		c.MaxAge = max(int(time.Until(expires).Seconds()), -1) // -1 sends Max-Age=0
	}
	http.SetCookie(w, c)
}

// clearSession removes the session cookie: the person is signed out.
func clearSession(w http.ResponseWriter, r *http.Request) {
	setCookie(w, r, cookiesOf(r).session, "", time.Unix(1, 0))
}
