package control_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/conngate/conngate/caddymodule/control"
	"github.com/conngate/conngate/caddymodule/control/controltest"
	"github.com/conngate/conngate/caddymodule/controlapi"
	"github.com/conngate/conngate/store"
)

const redirectURI = "http://127.0.0.1:7777/callback"

// oauthFixture is a control endpoint with people (writePrincipals: owner,
// manager, administrator, developer, viewer in org-1, and gateway edge-1),
// a public app and a confidential one.
type oauthFixture struct {
	s            *controltest.Server
	store        store.Store // the endpoint's, for what a test cannot do through HTTP
	keys         map[string]string
	public, conf oauth2.Config
	clock        atomic.Int64 // unix nanoseconds added to the real time
}

func newOAuthFixture(t *testing.T) *oauthFixture {
	t.Helper()
	path, keys := writePrincipals(t)
	s, st := startWithStore(t, controltest.Options{PrincipalsFile: path})
	f := &oauthFixture{s: s, store: st, keys: keys}
	control.SetClockForTest(f.s.Control, func() time.Time { return time.Now().Add(time.Duration(f.clock.Load())) })
	endpoint := oauth2.Endpoint{AuthURL: f.s.URL + "/oauth/authorize", TokenURL: f.s.URL + "/oauth/token"}
	f.public = oauth2.Config{ClientID: f.register(t, "Public app", "none").ClientID, Endpoint: endpoint, RedirectURL: redirectURI}
	conf := f.register(t, "Confidential app", "client_secret_basic")
	f.conf = oauth2.Config{ClientID: conf.ClientID, ClientSecret: conf.ClientSecret, Endpoint: endpoint, RedirectURL: redirectURI}
	return f
}

func (f *oauthFixture) register(t *testing.T, name, method string) controlapi.App {
	t.Helper()
	var app controlapi.App
	body := map[string]any{"client_name": name, "redirect_uris": []string{redirectURI}, "token_endpoint_auth_method": method, "org_id": "org-1"}
	if code := f.s.Do(t, f.s.AdminKey, http.MethodPost, controlapi.PathApps, body, &app); code != http.StatusCreated {
		t.Fatalf("registering %s: %d", name, code)
	}
	return app
}

// authorize runs the consent pages as role and returns the code, after
// checking that state came back unchanged.
func (f *oauthFixture) authorize(t *testing.T, cfg oauth2.Config, role string) (code, verifier string) {
	t.Helper()
	verifier = oauth2.GenerateVerifier()
	state := "s t&a=te/ü"
	back := controltest.Authorize(t, f.s.URL, cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier)), f.keys[role], "approve", "org-1")
	if got := back.Query().Get("state"); got != state {
		t.Fatalf("state came back as %q, want %q", got, state)
	}
	if back.Query().Get("code") == "" {
		t.Fatalf("no code in %s", back)
	}
	return back.Query().Get("code"), verifier
}

// grant authorises cfg's app as the developer and exchanges the code.
func (f *oauthFixture) grant(t *testing.T, cfg oauth2.Config) *oauth2.Token {
	t.Helper()
	code, verifier := f.authorize(t, cfg, "developer")
	tok, err := cfg.Exchange(context.Background(), code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	return tok
}

func (f *oauthFixture) connections(t *testing.T) []store.Connection {
	t.Helper()
	var page controlapi.ConnectionPage
	if code := f.s.Do(t, f.s.AdminKey, http.MethodGet, "/v1/connections?org_id=org-1&limit=500", nil, &page); code != 200 {
		t.Fatalf("listing: %d", code)
	}
	return page.Connections
}

// appConnections lists the connections made through the app clientID.
func (f *oauthFixture) appConnections(t *testing.T, clientID string) []store.Connection {
	t.Helper()
	var page controlapi.ConnectionPage
	if code := f.s.Do(t, f.s.AdminKey, http.MethodGet, controlapi.PathConnections+"?app_id="+clientID, nil, &page); code != http.StatusOK {
		t.Fatalf("listing the connections of %s: %d", clientID, code)
	}
	return page.Connections
}

func (f *oauthFixture) introspect(t *testing.T, token string) controlapi.Introspection {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, f.s.URL+"/oauth/introspect", strings.NewReader(url.Values{"token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+f.s.GatewayKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var in controlapi.Introspection
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&in) != nil {
		t.Fatalf("introspection: %d", resp.StatusCode)
	}
	return in
}

// refresh uses a refresh token with cfg's client, as golang.org/x/oauth2
// does when an access token has expired.
func refresh(cfg oauth2.Config, refreshToken string) (*oauth2.Token, error) {
	return cfg.TokenSource(context.Background(), &oauth2.Token{RefreshToken: refreshToken}).Token()
}

func oauthCode(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return re.ErrorCode
	}
	return ""
}

// The whole life of a grant, with the OAuth client people really use: both
// tokens stop while the connection is disabled, work again (the same ones)
// once it is enabled, and never after it is deleted.
func TestOAuthGrantFollowsConnectionStatus(t *testing.T) {
	f := newOAuthFixture(t)
	for _, cfg := range []oauth2.Config{f.public, f.conf} {
		t.Run(cfg.ClientID, func(t *testing.T) {
			code, verifier := f.authorize(t, cfg, "developer")
			tok, err := cfg.Exchange(context.Background(), code, oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatalf("exchange: %v", err)
			}
			if tok.AccessToken == "" || tok.RefreshToken == "" || tok.Expiry.IsZero() || tok.TokenType != "Bearer" {
				t.Fatalf("token answer %+v", tok)
			}
			in := f.introspect(t, tok.AccessToken)
			if !in.Active || in.ClientID != cfg.ClientID || in.Subject != "developer" || in.ConnectionID == "" {
				t.Fatalf("introspection of a fresh access token: %+v", in)
			}
			conn := in.ConnectionID
			var got controlapi.ConnectionBody
			f.s.Do(t, f.s.AdminKey, http.MethodGet, "/v1/connections/"+conn, nil, &got)
			if got.Connection.AppID != cfg.ClientID || got.Connection.UserID != "developer" || got.Connection.Status != store.StatusActive {
				t.Fatalf("connection made by the flow: %+v", got.Connection)
			}

			f.s.Act(t, conn, store.ActionDisable)
			if in := f.introspect(t, tok.AccessToken); in.Active {
				t.Error("access token active while the connection is disabled")
			}
			if _, err := refresh(cfg, tok.RefreshToken); oauthCode(err) != "invalid_grant" || !strings.Contains(err.Error(), "disabled") {
				t.Errorf("refresh while disabled: %v", err)
			}

			f.s.Act(t, conn, store.ActionEnable)
			if in := f.introspect(t, tok.AccessToken); !in.Active {
				t.Error("the same access token is not active again after enable")
			}
			next, err := refresh(cfg, tok.RefreshToken)
			if err != nil || next.RefreshToken == "" || next.RefreshToken == tok.RefreshToken || next.AccessToken == "" {
				t.Fatalf("the same refresh token after enable: %v %+v", err, next)
			}

			f.s.Act(t, conn, store.ActionDelete)
			if in := f.introspect(t, next.AccessToken); in.Active {
				t.Error("access token active after delete")
			}
			if _, err := refresh(cfg, next.RefreshToken); oauthCode(err) != "invalid_grant" {
				t.Errorf("refresh after delete: %v", err)
			}
		})
	}
}

// Attacks, each refused as the RFCs say, creating nothing.
func TestOAuthAttacks(t *testing.T) {
	f := newOAuthFixture(t)
	ctx := context.Background()
	authURL := func(cfg oauth2.Config, extra url.Values) string {
		u, _ := url.Parse(cfg.AuthCodeURL("st", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
		q := u.Query()
		for k, v := range extra {
			q[k] = v
		}
		u.RawQuery = q.Encode()
		return u.String()
	}
	signedIn := func(role, pageURL string) (*http.Client, controltest.Page) {
		b := controltest.Browser(t)
		form := controltest.Get(t, b, pageURL).Form
		form.Set("key", f.keys[role])
		p := controltest.Post(t, b, f.s.URL, form)
		return b, controltest.Get(t, b, f.s.URL+p.Header.Get("Location"))
	}

	t.Run("redirect URI not registered, or altered: an error page, never a redirect", func(t *testing.T) {
		for _, uri := range []string{"https://evil.example/callback", redirectURI + "/more", redirectURI + "?x=1",
			"http://127.0.0.1:7778/callback", "http://127.0.0.1:7777/callbac", "HTTP://127.0.0.1:7777/callback"} {
			p := controltest.Get(t, controltest.Browser(t), authURL(f.public, url.Values{"redirect_uri": {uri}}))
			if p.Status != http.StatusBadRequest || p.Header.Get("Location") != "" || !strings.Contains(p.Body, "redirect_uri") {
				t.Errorf("%s: %d %q", uri, p.Status, p.Header.Get("Location"))
			}
		}
	})
	t.Run("unknown client: an error page", func(t *testing.T) {
		p := controltest.Get(t, controltest.Browser(t), authURL(f.public, url.Values{"client_id": {"app_nope"}}))
		if p.Status != http.StatusBadRequest || p.Header.Get("Location") != "" {
			t.Errorf("%d %q", p.Status, p.Header.Get("Location"))
		}
	})
	for _, tt := range []struct {
		name  string
		extra url.Values
		want  string
	}{
		{"plain PKCE method", url.Values{"code_challenge_method": {"plain"}}, "invalid_request"},
		{"no PKCE", url.Values{"code_challenge": {""}, "code_challenge_method": {""}}, "invalid_request"},
		{"implicit grant", url.Values{"response_type": {"token"}}, "unsupported_response_type"},
		{"a parameter twice", url.Values{"state": {"a", "b"}}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := controltest.Get(t, controltest.Browser(t), authURL(f.public, tt.extra))
			if tt.want == "" {
				if p.Status != http.StatusBadRequest || p.Header.Get("Location") != "" {
					t.Errorf("%d %q", p.Status, p.Header.Get("Location"))
				}
				return
			}
			back, _ := url.Parse(p.Header.Get("Location"))
			if p.Status != http.StatusSeeOther || !strings.HasPrefix(back.String(), redirectURI) || back.Query().Get("error") != tt.want {
				t.Errorf("%d %s, want a redirect with %s", p.Status, back, tt.want)
			}
		})
	}

	before := len(f.connections(t))
	t.Run("a viewer may not approve: access denied page, and a forged approval is refused", func(t *testing.T) {
		b, p := signedIn("viewer", authURL(f.public, nil))
		if p.Status != http.StatusForbidden || !strings.Contains(p.Body, "Developer Portal") || !strings.Contains(p.Body, "access_denied") {
			t.Fatalf("%d\n%s", p.Status, p.Body)
		}
		_, dev := signedIn("developer", authURL(f.public, nil))
		form := dev.Form
		form.Set("action", "approve")
		form.Set("org_id", "org-1")
		if got := controltest.Post(t, b, f.s.URL, form); got.Status != http.StatusForbidden {
			t.Errorf("viewer posting a developer's form: %d", got.Status)
		}
	})
	t.Run("approval for an organisation the person has no role in", func(t *testing.T) {
		b, p := signedIn("developer", authURL(f.public, nil))
		form := p.Form
		form.Set("action", "approve")
		form.Set("org_id", "org-2")
		if got := controltest.Post(t, b, f.s.URL, form); got.Status != http.StatusForbidden {
			t.Errorf("%d", got.Status)
		}
	})
	t.Run("consent without, or with another session's, CSRF token", func(t *testing.T) {
		b, p := signedIn("developer", authURL(f.public, nil))
		_, other := signedIn("developer", authURL(f.public, nil))
		for _, csrf := range []string{"", other.Form.Get("csrf")} {
			form := p.Form
			form.Set("csrf", csrf)
			form.Set("action", "approve")
			form.Set("org_id", "org-1")
			if got := controltest.Post(t, b, f.s.URL, form); got.Status != http.StatusForbidden {
				t.Errorf("csrf %q: %d", csrf, got.Status)
			}
		}
	})
	t.Run("no state: none comes back", func(t *testing.T) {
		u, _ := url.Parse(authURL(f.public, nil))
		q := u.Query()
		q.Del("state")
		u.RawQuery = q.Encode()
		back := controltest.Authorize(t, f.s.URL, u.String(), f.keys["developer"], "deny", "org-1")
		if back.Query().Has("state") || back.Query().Get("error") != "access_denied" {
			t.Errorf("%s", back)
		}
	})
	t.Run("deny", func(t *testing.T) {
		back := controltest.Authorize(t, f.s.URL, authURL(f.public, nil), f.keys["developer"], "deny", "org-1")
		if back.Query().Get("error") != "access_denied" || back.Query().Get("state") != "st" {
			t.Errorf("%s", back)
		}
	})
	if after := len(f.connections(t)); after != before {
		t.Fatalf("refused authorisations created %d connections", after-before)
	}

	t.Run("code exchange attacks", func(t *testing.T) {
		// Failed attempts do not use the code up: the app's own exchange
		// still works after them.
		code, verifier := f.authorize(t, f.public, "developer")
		if _, err := f.conf.Exchange(ctx, code, oauth2.VerifierOption(verifier)); oauthCode(err) != "invalid_grant" {
			t.Errorf("another client's code: %v", err)
		}
		if _, err := f.public.Exchange(ctx, code, oauth2.VerifierOption(oauth2.GenerateVerifier())); oauthCode(err) != "invalid_grant" {
			t.Errorf("wrong verifier: %v", err)
		}
		if _, err := f.public.Exchange(ctx, code, oauth2.VerifierOption(verifier)); err != nil {
			t.Errorf("the app's exchange after failed attempts by others: %v", err)
		}
		code, _ = f.authorize(t, f.public, "developer")
		if _, err := f.public.Exchange(ctx, code); oauthCode(err) != "invalid_request" {
			t.Errorf("no verifier: %v", err)
		}
		code, verifier = f.authorize(t, f.public, "developer")
		f.clock.Add(int64(61 * time.Second))
		if _, err := f.public.Exchange(ctx, code, oauth2.VerifierOption(verifier)); oauthCode(err) != "invalid_grant" {
			t.Errorf("expired code: %v", err)
		}
		f.clock.Store(0)
		wrongSecret := f.conf
		wrongSecret.ClientSecret = "nope"
		code, verifier = f.authorize(t, f.conf, "developer")
		if _, err := wrongSecret.Exchange(ctx, code, oauth2.VerifierOption(verifier)); oauthCode(err) != "invalid_client" {
			t.Errorf("wrong client secret: %v", err)
		}
	})
	t.Run("no redirect_uri in the request (one is registered): none in the exchange either", func(t *testing.T) {
		cfg := f.public
		cfg.RedirectURL = ""
		code, verifier := f.authorize(t, cfg, "developer")
		if _, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(verifier)); err != nil {
			t.Errorf("exchange: %v", err)
		}
	})
	t.Run("a code used twice ends the grant the first use started", func(t *testing.T) {
		code, verifier := f.authorize(t, f.public, "developer")
		tok, err := f.public.Exchange(ctx, code, oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.public.Exchange(ctx, code, oauth2.VerifierOption(verifier)); oauthCode(err) != "invalid_grant" {
			t.Errorf("second use: %v", err)
		}
		if in := f.introspect(t, tok.AccessToken); in.Active {
			t.Error("the first use's access token is still active")
		}
	})
	t.Run("refresh token attacks", func(t *testing.T) {
		tok := f.grant(t, f.conf)
		if _, err := refresh(f.public, tok.RefreshToken); oauthCode(err) != "invalid_grant" {
			t.Errorf("another client's refresh token: %v", err)
		}
		if _, err := refresh(f.conf, tok.RefreshToken); err != nil {
			t.Fatal(err)
		}
		// Within the overlap the token rotated last refreshes again, as
		// often as the app's workers need (a retry after a lost answer,
		// several refreshing at once).
		var latest *oauth2.Token
		for i := range 2 {
			var err error
			if latest, err = refresh(f.conf, tok.RefreshToken); err != nil {
				t.Fatalf("retry %d within the overlap: %v", i+1, err)
			}
		}
		// Past it, that token used again ends the grant: even the newest
		// tokens are dead.
		f.clock.Add(int64(11 * time.Second))
		defer f.clock.Store(0)
		if _, err := refresh(f.conf, tok.RefreshToken); oauthCode(err) != "invalid_grant" {
			t.Errorf("reuse after the overlap: %v", err)
		}
		if in := f.introspect(t, latest.AccessToken); in.Active {
			t.Error("a stolen refresh token's reuse left the grant alive")
		}
		if _, err := refresh(f.conf, latest.RefreshToken); oauthCode(err) != "invalid_grant" {
			t.Errorf("the newest refresh token after the grant ended: %v", err)
		}
	})
	t.Run("a rotated refresh token replayed while the connection is disabled ends the grant", func(t *testing.T) {
		tok := f.grant(t, f.conf)
		if _, err := refresh(f.conf, tok.RefreshToken); err != nil {
			t.Fatal(err)
		}
		conn := f.introspect(t, tok.AccessToken).ConnectionID
		f.s.Act(t, conn, store.ActionDisable)
		f.clock.Add(int64(11 * time.Second))
		defer f.clock.Store(0)
		if _, err := refresh(f.conf, tok.RefreshToken); oauthCode(err) != "invalid_grant" {
			t.Errorf("replay: %v", err)
		}
		var got controlapi.ConnectionBody
		f.s.Do(t, f.s.AdminKey, http.MethodGet, "/v1/connections/"+conn, nil, &got)
		if got.Connection.Status != store.StatusDeleted {
			t.Errorf("after the replay the connection is %s, want deleted", got.Connection.Status)
		}
	})
	t.Run("revocation", func(t *testing.T) {
		tok := f.grant(t, f.conf)
		revoke := func(clientID, secret, token string) int {
			form := url.Values{"token": {token}, "client_id": {clientID}}
			if secret != "" {
				form.Set("client_secret", secret)
			}
			resp, err := http.PostForm(f.s.URL+"/oauth/revoke", form)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		if code := revoke(f.public.ClientID, "", tok.RefreshToken); code != http.StatusBadRequest {
			t.Errorf("revocation by another client: %d", code)
		}
		if in := f.introspect(t, tok.AccessToken); !in.Active {
			t.Fatal("another client's revocation ended the grant")
		}
		if code := revoke(f.conf.ClientID, f.conf.ClientSecret, "no-such-token"); code != http.StatusOK {
			t.Errorf("unknown token: %d, want 200", code)
		}
		if code := revoke(f.conf.ClientID, f.conf.ClientSecret, tok.AccessToken); code != http.StatusOK {
			t.Errorf("own access token: %d", code)
		}
		if in := f.introspect(t, tok.AccessToken); in.Active {
			t.Error("revoked grant still active")
		}
		if _, err := refresh(f.conf, tok.RefreshToken); oauthCode(err) != "invalid_grant" {
			t.Errorf("refresh after revocation: %v", err)
		}
	})
}

// A confidential app may introspect its own tokens, and learns nothing of
// another app's; a public app may not introspect.
func TestOAuthIntrospectionByClients(t *testing.T) {
	f := newOAuthFixture(t)
	own, other := f.grant(t, f.conf), f.grant(t, f.public)
	introspect := func(form url.Values) (int, controlapi.Introspection) {
		resp, err := http.PostForm(f.s.URL+"/oauth/introspect", form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var in controlapi.Introspection
		json.NewDecoder(resp.Body).Decode(&in)
		return resp.StatusCode, in
	}
	as := url.Values{"client_id": {f.conf.ClientID}, "client_secret": {f.conf.ClientSecret}}
	for _, tt := range []struct {
		name   string
		token  string
		active bool
	}{
		{"own access token", own.AccessToken, true},
		{"own refresh token", own.RefreshToken, true},
		{"another app's access token", other.AccessToken, false},
		{"another app's refresh token", other.RefreshToken, false},
		{"garbage", "not-a-token", false},
	} {
		form := url.Values{"token": {tt.token}}
		for k, v := range as {
			form[k] = v
		}
		if code, in := introspect(form); code != 200 || in.Active != tt.active || (!tt.active && in.ClientID != "") {
			t.Errorf("%s: %d %+v", tt.name, code, in)
		}
	}
	if code, _ := introspect(url.Values{"token": {other.AccessToken}, "client_id": {f.public.ClientID}}); code != http.StatusUnauthorized && code != http.StatusBadRequest {
		t.Errorf("a public client introspecting: %d", code)
	}
}

func TestOAuthMetadata(t *testing.T) {
	f := newOAuthFixture(t)
	var md controlapi.ServerMetadata
	if code := f.s.Do(t, "", http.MethodGet, "/.well-known/oauth-authorization-server", nil, &md); code != 200 {
		t.Fatalf("metadata: %d", code)
	}
	if md.Issuer != f.s.URL || md.TokenEndpoint != f.s.URL+"/oauth/token" || md.AuthorizationEndpoint != f.s.URL+"/oauth/authorize" ||
		len(md.CodeChallengeMethodsSupported) != 1 || md.CodeChallengeMethodsSupported[0] != "S256" || md.JWKSURI != f.s.URL+"/.well-known/jwks.json" {
		t.Errorf("%+v", md)
	}
}

// The consent form submitted twice (a double click, a browser that resends
// it) gives the same code, and once it is redeemed one connection; a new
// flow of the same app (a new PKCE challenge) gives a new code, and a new
// connection once that is redeemed.
func TestOAuthConsentSubmittedTwice(t *testing.T) {
	f := newOAuthFixture(t)
	verifier := oauth2.GenerateVerifier()
	authURL := f.public.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier))
	b, consent := controltest.Consent(t, f.s.URL, authURL, f.keys["developer"])
	first := controltest.Decide(t, b, f.s.URL, consent, "approve", "org-1").Query().Get("code")
	second := controltest.Decide(t, b, f.s.URL, consent, "approve", "org-1").Query().Get("code")
	if first == "" || first != second {
		t.Fatalf("codes %q and %q, want one code for one flow", first, second)
	}
	connections := func() int { return len(f.appConnections(t, f.public.ClientID)) }
	if n := connections(); n != 0 {
		t.Fatalf("%d connections after the form was submitted twice, before the code was redeemed, want none", n)
	}
	tok, err := f.public.Exchange(t.Context(), first, oauth2.VerifierOption(verifier))
	if err != nil || tok.AccessToken == "" {
		t.Fatalf("exchanging the code: %v", err)
	}
	if n := connections(); n != 1 {
		t.Fatalf("%d connections after the form was submitted twice and its code redeemed, want 1", n)
	}
	code, verifier := f.authorize(t, f.public, "developer") // a new flow: a new code
	if code == first {
		t.Fatal("a new flow got the first flow's code")
	}
	if _, err := f.public.Exchange(t.Context(), code, oauth2.VerifierOption(verifier)); err != nil {
		t.Fatalf("exchanging the second flow's code: %v", err)
	}
	if n := connections(); n != 2 {
		t.Errorf("%d connections after a second flow, want 2", n)
	}
}
