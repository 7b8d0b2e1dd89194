package control

import (
	"cmp"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"slices"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/conngate/conngate/caddymodule/controlapi"
	"github.com/conngate/conngate/store"
)

// oauthPages renders the sign-in, consent and refusal pages.
var oauthPages = template.Must(template.ParseFS(webFiles, "web/oauth.html"))

// authRequest is a validated authorisation request (RFC 6749 section
// 4.1.1 with RFC 7636's S256 challenge, required of every client).
type authRequest struct {
	app      store.App
	ClientID string
	// RedirectURI is where the person is sent back: the one sent, or the
	// app's only registered one when none was sent. SentRedirectURI is as
	// sent (maybe empty): the token request must repeat exactly that.
	RedirectURI     string
	SentRedirectURI string
	State           string
	Challenge       string
	Scope           string
}

// authError is a refused authorisation request. With redirect set the
// client and redirect URI were verified and the error goes back to the app
// (section 4.1.2.1); otherwise it is shown to the person, since redirecting
// to an unverified URI would make the server an open redirector.
type authError struct {
	status   int
	redirect bool
	code     controlapi.OAuthErrorCode
	message  string
}

func (e *authError) Error() string { return string(e.code) + ": " + e.message }

// readAuthRequest checks the client and the exact redirect URI first, then
// the rest.
func (c *Control) readAuthRequest(r *http.Request, q url.Values) (authRequest, error) {
	for name, values := range q {
		if len(values) > 1 {
			return authRequest{}, &authError{status: http.StatusBadRequest, code: controlapi.OAuthInvalidRequest, message: "Parameter " + name + " is given more than once."}
		}
	}
	req := authRequest{ClientID: q.Get("client_id"), RedirectURI: q.Get("redirect_uri"), SentRedirectURI: q.Get("redirect_uri"), State: q.Get("state"),
		Challenge: q.Get("code_challenge"), Scope: q.Get("scope")}
	unknown := &authError{status: http.StatusBadRequest, code: controlapi.OAuthInvalidRequest,
		message: "This link is not valid: the application (client_id) is not registered. Go back to the application and try again."}
	if req.ClientID == "" || store.ValidateID("client_id", req.ClientID) != nil {
		return req, unknown
	}
	app, err := c.store.GetApp(r.Context(), req.ClientID)
	if errors.Is(err, store.ErrAppNotFound) {
		return req, unknown
	}
	if err != nil {
		return req, err
	}
	req.app = app
	switch {
	case req.RedirectURI == "" && len(app.RedirectURIs) == 1:
		req.RedirectURI = app.RedirectURIs[0] // section 3.1.2.3: one registered URI may be left out
	case !slices.Contains(app.RedirectURIs, req.RedirectURI):
		return req, &authError{status: http.StatusBadRequest, code: controlapi.OAuthInvalidRequest,
			message: "This link is not valid: its redirect_uri is not one that " + app.Name + " registered. Go back to the application and try again."}
	}
	fail := func(code controlapi.OAuthErrorCode, message string) (authRequest, error) {
		return req, &authError{status: http.StatusBadRequest, redirect: true, code: code, message: message}
	}
	switch {
	case q.Get("response_type") != "code":
		return fail(controlapi.OAuthUnsupportedResponseType, "response_type must be code.")
	case req.Challenge == "":
		return fail(controlapi.OAuthInvalidRequest, "code_challenge is required (PKCE, RFC 7636).")
	case q.Get("code_challenge_method") != "S256":
		return fail(controlapi.OAuthInvalidRequest, "code_challenge_method must be S256.")
	case !validPKCEValue(req.Challenge):
		return fail(controlapi.OAuthInvalidRequest, "code_challenge must be 43 to 128 characters of A-Z, a-z, 0-9, '-', '.', '_' and '~'.")
	case len(req.State) > 1024 || len(req.Scope) > 1024:
		return fail(controlapi.OAuthInvalidRequest, "state and scope may be at most 1024 characters.")
	}
	return req, nil
}

// backToApp is the redirect URI with the answer's parameters added to its
// own query (section 3.1.2: its query is kept).
func backToApp(req authRequest, params url.Values) string {
	u, _ := url.Parse(req.RedirectURI) // validated at registration
	q := u.Query()
	for k, v := range params {
		q[k] = v
	}
	if req.State != "" {
		q.Set("state", req.State)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// page is what the templates show. SignOutCSRF, set only for a person
// signed in with the session cookie, shows the sign-out form.
type page struct {
	Title, AppName, Person, Message, CSRF, SignOutCSRF, ReturnURL string
	Orgs                                                          []string
	Request                                                       authRequest
}

// person is who is at the browser: the principal, the id that named them
// (which may name nobody in the principals file), and whether that id came
// from the session cookie (and so can be signed out of).
func (c *Control) person(r *http.Request) (p *principal, claimed string, session bool) {
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		if id, ok := repl.GetString("http.auth.user.id"); ok && id != "" {
			return c.keys.byID(id), id, false
		}
	}
	if id, ok := c.cookies.sessionPrincipal(cookieValue(r, cookiesOf(r).session)); ok {
		return c.keys.byID(id), id, true
	}
	return nil, "", false
}

// serveAuthorize is GET and POST /oauth/authorize.
func (c *Control) serveAuthorize(w http.ResponseWriter, r *http.Request) {
	var err error
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		err = c.showAuthorize(w, r, r.URL.Query(), notice{})
	case http.MethodPost:
		err = c.decideAuthorize(w, r)
	default:
		w.Header().Set("Allow", "GET, POST")
		c.render(w, r, http.StatusMethodNotAllowed, "denied", page{Title: "Not allowed", Message: r.Method + " is not allowed here."})
		return
	}
	var ae *authError
	switch {
	case err == nil:
	case errors.As(err, &ae) && ae.redirect:
		req, _ := c.readAuthRequest(r, authParams(r))
		http.Redirect(w, r, backToApp(req, url.Values{"error": {string(ae.code)}, "error_description": {ae.message}}), http.StatusSeeOther)
	case errors.As(err, &ae):
		c.render(w, r, ae.status, "denied", page{Title: "Cannot authorise", Message: ae.message})
	case errors.Is(err, store.ErrOutcomeUnknown):
		// Only a code is ever saved here, and the app did not get it.
		c.logger.Error("store connection lost during a commit", zap.String("path", r.URL.Path), zap.Error(err))
		w.Header().Set("Retry-After", storeRetryAfter)
		c.render(w, r, http.StatusServiceUnavailable, "denied", page{Title: "Try again in a moment",
			Message: "The server lost its store's connection while it saved your decision; the application got no code. Try again in a moment."})
	case errors.Is(err, store.ErrUnavailable):
		c.noteStoreOutage(err)
		w.Header().Set("Retry-After", storeRetryAfter)
		c.render(w, r, http.StatusServiceUnavailable, "denied", page{Title: "Try again in a moment",
			Message: "The server cannot reach its store just now; nothing was changed. Try again in a moment."})
	default:
		c.logger.Error("authorisation failed", zap.Error(err))
		c.render(w, r, http.StatusInternalServerError, "denied", page{Title: "Something went wrong", Message: "The server failed; nothing was changed. Try again from the application."})
	}
}

// authParams are the authorisation request's parameters: the query of a
// GET, the form of a POST (which repeats them in hidden fields).
func authParams(r *http.Request) url.Values {
	if r.Method == http.MethodPost {
		return r.PostForm
	}
	return r.URL.Query()
}

// notice is what the sign-in or consent page says above its form, with the
// status (200 when zero) and headers it is answered with.
type notice struct {
	status  int
	message string
	header  map[string]string
}

// showAuthorize shows the sign-in page or the consent page with n, or why
// the person may not authorise.
func (c *Control) showAuthorize(w http.ResponseWriter, r *http.Request, q url.Values, n notice) error {
	req, err := c.readAuthRequest(r, q)
	if err != nil {
		return err
	}
	nonce := csrfNonce(w, r)
	p, claimed, session := c.person(r)
	pg := page{AppName: req.app.Name, Request: req, Message: n.message}
	if session {
		pg.SignOutCSRF = c.cookies.csrfToken("signout", "", nonce)
	}
	show := func(name string) error {
		for k, v := range n.header {
			w.Header().Set(k, v)
		}
		c.render(w, r, cmp.Or(n.status, http.StatusOK), name, pg)
		return nil
	}
	if claimed == "" {
		pg.Title, pg.CSRF = "Sign in", c.cookies.csrfToken("signin", "", nonce)
		return show("signin")
	}
	orgs := []string(nil)
	if p != nil {
		orgs = authorisableOrgs(p)
	}
	if len(orgs) == 0 {
		pg.Title, pg.Person = "Access denied", claimed
		pg.Message = claimed + " has no Developer Portal access (role developer, owner, manager or administrator) in any organisation, so " +
			req.app.Name + " cannot be authorised. Ask an administrator of your organisation for it."
		pg.ReturnURL = backToApp(req, url.Values{"error": {string(controlapi.OAuthAccessDenied)}, "error_description": {"The user has no Developer Portal access."}})
		c.render(w, r, http.StatusForbidden, "denied", pg)
		return nil
	}
	pg.Title, pg.Person, pg.Orgs, pg.CSRF = "Authorise "+req.app.Name, p.id, orgs, c.cookies.csrfToken("consent", p.id, nonce)
	return show("consent")
}

// decideAuthorize takes the sign-in form and the consent form.
func (c *Control) decideAuthorize(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	if err := r.ParseForm(); err != nil {
		return &authError{status: http.StatusBadRequest, code: controlapi.OAuthInvalidRequest, message: "The form could not be read."}
	}
	form := r.PostForm
	nonce := cookieValue(r, cookiesOf(r).csrf)
	expired := &authError{status: http.StatusForbidden, code: controlapi.OAuthAccessDenied,
		message: "This form has expired or was sent from another site. Go back to the application and start again."}
	action := form.Get("action")
	if action == "signin" {
		if !c.cookies.validCSRF(form.Get("csrf"), "signin", "", nonce) {
			return expired
		}
		return c.signIn(w, r, form)
	}
	if action == "signout" {
		// Bound to no person: a session that ended meanwhile still signs
		// out rather than showing an expired form.
		if !c.cookies.validCSRF(form.Get("csrf"), "signout", "", nonce) {
			return expired
		}
		clearSession(w, r)
		http.Redirect(w, r, controlapi.PathAuthorize+"?"+withoutFields(form, "action", "csrf").Encode(), http.StatusSeeOther)
		return nil
	}
	req, err := c.readAuthRequest(r, withoutFields(form, "action", "csrf", "org_id"))
	if err != nil {
		return err
	}
	p, claimed, _ := c.person(r)
	if claimed == "" {
		return c.showAuthorize(w, r, withoutFields(form, "action", "csrf", "org_id"), notice{message: "Your session has ended; sign in again."})
	}
	if p == nil || !c.cookies.validCSRF(form.Get("csrf"), "consent", p.id, nonce) {
		return expired
	}
	switch action {
	case "deny":
		c.logger.Info("authorisation denied", zap.String("client_id", req.app.ID), zap.String("principal", p.id))
		http.Redirect(w, r, backToApp(req, url.Values{"error": {string(controlapi.OAuthAccessDenied)}, "error_description": {"The user denied the request."}}), http.StatusSeeOther)
		return nil
	case "approve":
	default:
		return &authError{status: http.StatusBadRequest, code: controlapi.OAuthInvalidRequest, message: "The form must approve or deny."}
	}
	org := form.Get("org_id")
	if !slices.Contains(authorisableOrgs(p), org) {
		return &authError{status: http.StatusForbidden, code: controlapi.OAuthAccessDenied,
			message: p.id + " may not authorise applications in organisation " + org + "."}
	}
	// Approving saves the code and nothing else: the connection is created
	// when the app redeems the code (oauth_token.go), so that a flow
	// abandoned here leaves no connection without tokens behind.
	grants := store.NewConnection{Name: req.app.Name, OrgID: org, UserID: p.id}
	if err := grants.Validate(); err != nil {
		return &authError{status: http.StatusBadRequest, code: controlapi.OAuthInvalidRequest,
			message: "This authorisation cannot make a connection: " + err.Error() + "."}
	}
	flow := flowKey(p.id, req.app.ID, org, req.SentRedirectURI, req.Challenge, req.State)
	code, again, err := c.shared.approvals.approve(flow, c.now(), codeLifetime, func() (string, error) {
		code := newOpaqueToken()
		err := c.store.SaveCode(r.Context(), store.AuthCode{Hash: hashToken(code), AppID: req.app.ID, RedirectURI: req.SentRedirectURI,
			Challenge: req.Challenge, Scope: req.Scope, ExpiresAt: c.now().Add(codeLifetime).UTC(), Connection: grants,
			ApprovedBy: store.Actor{ID: p.id, RequestID: requestID(r), Reason: "authorised " + req.app.ID + " through OAuth"}})
		if err != nil {
			return "", err
		}
		c.logger.Info("app authorised: code issued", zap.String("client_id", req.app.ID), zap.String("org_id", org), zap.String("principal", p.id))
		return code, nil
	})
	if errors.Is(err, store.ErrAppNotFound) {
		return &authError{status: http.StatusBadRequest, code: controlapi.OAuthInvalidRequest, message: req.app.Name + " was deleted while you decided."}
	}
	if err != nil {
		return err
	}
	if again {
		c.logger.Info("consent submitted again: the same code", zap.String("client_id", req.app.ID), zap.String("principal", p.id))
	}
	http.Redirect(w, r, backToApp(req, url.Values{"code": {code}}), http.StatusSeeOther)
	return nil
}

// signIn takes a person's key and gives them a session.
func (c *Control) signIn(w http.ResponseWriter, r *http.Request, form url.Values) error {
	params := withoutFields(form, "action", "csrf", "key")
	p, wait := c.keys.byKeyFrom(r, form.Get("key"))
	if wait > 0 {
		// The page with its form, answered as the API answers a throttled
		// key (429, Retry-After): a script trying keys learns it is refused.
		limited := tooManyAttempts(wait)
		return c.showAuthorize(w, r, params, notice{status: limited.Status, message: limited.Message, header: limited.Header})
	}
	if p == nil || !p.named || p.gateway {
		return c.showAuthorize(w, r, params, notice{message: "That key is not a person's key. Use the key you sign in to the Connections List page with."})
	}
	value, expires := c.cookies.session(p.id)
	setCookie(w, r, cookiesOf(r).session, value, expires)
	http.Redirect(w, r, controlapi.PathAuthorize+"?"+params.Encode(), http.StatusSeeOther)
	return nil
}

func withoutFields(form url.Values, names ...string) url.Values {
	out := url.Values{}
	for k, v := range form {
		if !slices.Contains(names, k) {
			out[k] = v
		}
	}
	return out
}

// render writes a page with headers that keep it out of caches and frames.
// No form-action: Chromium applies it to every redirect after a form post,
// and a source list cannot name every redirect URI an app may use (an IPv6
// loopback, a callback that redirects on); the forms post only here.
func (c *Control) render(w http.ResponseWriter, r *http.Request, status int, name string, pg page) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return
	}
	if err := oauthPages.ExecuteTemplate(w, name, pg); err != nil {
		c.logger.Error("rendering page", zap.String("page", name), zap.Error(err))
	}
}
