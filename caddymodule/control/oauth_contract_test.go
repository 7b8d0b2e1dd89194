package control_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/conngate/conngate/caddymodule/control/contracttest"
	"github.com/conngate/conngate/caddymodule/control/controltest"
	"github.com/conngate/conngate/caddymodule/controlapi"
)

// answer is an OAuth endpoint's answer as a client read it.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// oauthError is the error code of a JSON error answer.
func (a answer) oauthError() string {
	var e controlapi.OAuthError
	json.Unmarshal(a.body, &e)
	return string(e.Code)
}

func send(t *testing.T, client *http.Client, method, target, contentType, body string, prepare func(*http.Request)) answer {
	t.Helper()
	req, err := http.NewRequest(method, target, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if prepare != nil {
		prepare(req)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header, b}
}

const formType = "application/x-www-form-urlencoded"

// basicChallenge is the challenge of a 401 at the token and revocation
// endpoints, which take client credentials, never a Bearer token.
const basicChallenge = `Basic realm="conngate"`

// Every exchange of the OAuth 2.0 flow, its happy paths and its refusals,
// keeps to openapi.json: a client-side validating transport checks each
// one (beside controltest's server-side check) and must have reached every
// documented answer listed here, so that an exchange the checker skipped
// fails too.
func TestOAuthExchangesKeepToOpenAPI(t *testing.T) {
	f := newOAuthFixture(t)
	contract, err := contracttest.Load()
	if err != nil {
		t.Fatal(err)
	}
	tr := &contracttest.Transport{Contract: contract, Report: func(err error) { t.Errorf("openapi.json: %v", err) }}
	client := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	ctx := context.WithValue(t.Context(), oauth2.HTTPClient, client)
	base := f.s.URL
	post := func(path string, form url.Values, prepare func(*http.Request)) answer {
		t.Helper()
		return send(t, client, http.MethodPost, base+path, formType, form.Encode(), prepare)
	}
	basic := func(id, secret string) func(*http.Request) {
		return func(r *http.Request) { r.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret)) }
	}
	bearer := func(key string) func(*http.Request) {
		return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+key) }
	}
	// authorize walks the pages in a browser that goes through tr and
	// returns where the person is sent back to.
	authorize := func(cfg oauth2.Config, verifier, decision string) *url.URL {
		t.Helper()
		b := controltest.Browser(t)
		b.Transport = tr
		signin := controltest.Get(t, b, cfg.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier)))
		if signin.Status != http.StatusOK {
			t.Fatalf("sign-in page: %d", signin.Status)
		}
		signin.Form.Set("key", f.keys["developer"])
		signedIn := controltest.Post(t, b, base, signin.Form)
		consent := controltest.Get(t, b, base+signedIn.Header.Get("Location"))
		if signedIn.Status != http.StatusSeeOther || consent.Status != http.StatusOK {
			t.Fatalf("sign-in: %d, consent page: %d", signedIn.Status, consent.Status)
		}
		forged := url.Values{}
		for k, v := range consent.Form {
			forged[k] = v
		}
		forged.Set("csrf", "forged")
		forged.Set("action", "approve")
		forged.Set("org_id", "org-1")
		if p := controltest.Post(t, b, base, forged); p.Status != http.StatusForbidden {
			t.Errorf("a forged consent form: %d, want 403", p.Status)
		}
		return controltest.Decide(t, b, base, consent.Form, decision, "org-1")
	}
	exchange := func(cfg oauth2.Config, style oauth2.AuthStyle) *oauth2.Token {
		t.Helper()
		verifier := oauth2.GenerateVerifier()
		back := authorize(cfg, verifier, "approve")
		cfg.Endpoint.AuthStyle = style
		tok, err := cfg.Exchange(ctx, back.Query().Get("code"), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatalf("exchange: %v", err)
		}
		return tok
	}

	t.Run("metadata", func(t *testing.T) {
		a := send(t, client, http.MethodGet, base+controlapi.PathOAuthMetadata, "", "", nil)
		var md controlapi.ServerMetadata
		if a.status != http.StatusOK || json.Unmarshal(a.body, &md) != nil || md.TokenEndpoint != base+controlapi.PathToken {
			t.Errorf("%d %s", a.status, a.body)
		}
		// A wrong method is a 405 in the API's format, not the catch-all
		// 404; the stylesheet of the pages answers it alike.
		for _, path := range []string{controlapi.PathOAuthMetadata, "/oauth/oauth.css"} {
			a := send(t, client, http.MethodPost, base+path, "", "", nil)
			var e controlapi.Error
			if json.Unmarshal(a.body, &e); a.status != http.StatusMethodNotAllowed || e.Code != controlapi.CodeMethodNotAllowed || a.header.Get("Allow") != "GET, HEAD" {
				t.Errorf("POST %s: %d %s, Allow %q", path, a.status, a.body, a.header.Get("Allow"))
			}
		}
	})

	var public, posted, basicTok *oauth2.Token
	t.Run("code with PKCE, each client authentication", func(t *testing.T) {
		public = exchange(f.public, oauth2.AuthStyleInParams)
		posted = exchange(f.conf, oauth2.AuthStyleInParams)
		basicTok = exchange(f.conf, oauth2.AuthStyleInHeader)
		for _, tok := range []*oauth2.Token{public, posted, basicTok} {
			if tok.AccessToken == "" || tok.RefreshToken == "" || tok.TokenType != "Bearer" {
				t.Errorf("token answer %+v", tok)
			}
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	t.Run("refresh", func(t *testing.T) {
		next, err := f.public.TokenSource(ctx, &oauth2.Token{RefreshToken: public.RefreshToken}).Token()
		if err != nil || next.RefreshToken == public.RefreshToken {
			t.Fatalf("%v %+v", err, next)
		}
		public = next
	})

	t.Run("introspect", func(t *testing.T) {
		for _, tt := range []struct {
			name    string
			token   string
			prepare func(*http.Request)
			active  bool
		}{
			{"a gateway, an access token", public.AccessToken, bearer(f.s.GatewayKey), true},
			{"a gateway, a refresh token", public.RefreshToken, bearer(f.s.GatewayKey), true},
			{"a confidential app, its own token", basicTok.AccessToken, basic(f.conf.ClientID, f.conf.ClientSecret), true},
			{"a confidential app, another app's token", public.AccessToken, basic(f.conf.ClientID, f.conf.ClientSecret), false},
			{"garbage", "not-a-token", bearer(f.s.GatewayKey), false},
		} {
			a := post(controlapi.PathIntrospect, url.Values{"token": {tt.token}}, tt.prepare)
			var in controlapi.Introspection
			if a.status != http.StatusOK || json.Unmarshal(a.body, &in) != nil || in.Active != tt.active {
				t.Errorf("%s: %d %s", tt.name, a.status, a.body)
			}
		}
	})

	t.Run("revoke", func(t *testing.T) {
		for _, tt := range []struct {
			name    string
			form    url.Values
			prepare func(*http.Request)
		}{
			{"client_secret_post, its refresh token", url.Values{"token": {posted.RefreshToken}, "client_id": {f.conf.ClientID}, "client_secret": {f.conf.ClientSecret}}, nil},
			{"a public client, its access token", url.Values{"token": {public.AccessToken}, "token_type_hint": {"access_token"}, "client_id": {f.public.ClientID}}, nil},
			{"an unknown token", url.Values{"token": {"no-such-token"}}, basic(f.conf.ClientID, f.conf.ClientSecret)},
		} {
			if a := post(controlapi.PathRevoke, tt.form, tt.prepare); a.status != http.StatusOK || len(a.body) != 0 {
				t.Errorf("%s: %d %q", tt.name, a.status, a.body)
			}
		}
	})

	t.Run("refusals", func(t *testing.T) {
		verifier := oauth2.GenerateVerifier()
		code := authorize(f.public, verifier, "approve").Query().Get("code")
		confCode := authorize(f.conf, oauth2.GenerateVerifier(), "approve").Query().Get("code")
		redeem := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier},
			"redirect_uri": {redirectURI}, "client_id": {f.public.ClientID}}
		with := func(form url.Values, kv ...string) url.Values {
			out := url.Values{}
			for k, v := range form {
				out[k] = v
			}
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i+1] == "" {
					out.Del(kv[i])
				} else {
					out.Set(kv[i], kv[i+1])
				}
			}
			return out
		}
		for _, tt := range []struct {
			name      string
			path      string
			form      url.Values
			raw       string // sent as it is, as JSON, instead of form
			prepare   func(*http.Request)
			status    int
			code      string
			challenge string
		}{
			{"a wrong secret, Basic", controlapi.PathToken, url.Values{"grant_type": {"authorization_code"}, "code": {confCode}, "code_verifier": {verifier}},
				"", basic(f.conf.ClientID, "wrong"), http.StatusUnauthorized, "invalid_client", basicChallenge},
			{"a wrong secret, client_secret_post", controlapi.PathToken, url.Values{"grant_type": {"authorization_code"}, "code": {confCode}, "code_verifier": {verifier},
				"client_id": {f.conf.ClientID}, "client_secret": {"wrong"}}, "", nil, http.StatusUnauthorized, "invalid_client", basicChallenge},
			{"a secret from a public client", controlapi.PathToken, with(redeem, "client_secret", "x"), "", nil, http.StatusUnauthorized, "invalid_client", basicChallenge},
			{"no client", controlapi.PathToken, with(redeem, "client_id", ""), "", nil, http.StatusUnauthorized, "invalid_client", basicChallenge},
			{"a Bearer token at the token endpoint", controlapi.PathToken, with(redeem, "client_id", ""), "", bearer(f.s.GatewayKey),
				http.StatusUnauthorized, "invalid_client", basicChallenge},
			{"revoking as an unknown client", controlapi.PathRevoke, url.Values{"token": {"t"}, "client_id": {"app_nope"}}, "", nil,
				http.StatusUnauthorized, "invalid_client", basicChallenge},
			{"an unknown code", controlapi.PathToken, with(redeem, "code", "no-such-code"), "", nil, http.StatusBadRequest, "invalid_grant", ""},
			{"a wrong PKCE verifier", controlapi.PathToken, with(redeem, "code_verifier", oauth2.GenerateVerifier()), "", nil, http.StatusBadRequest, "invalid_grant", ""},
			{"no PKCE verifier", controlapi.PathToken, with(redeem, "code_verifier", ""), "", nil, http.StatusBadRequest, "invalid_request", ""},
			{"another redirect_uri", controlapi.PathToken, with(redeem, "redirect_uri", redirectURI+"/other"), "", nil, http.StatusBadRequest, "invalid_grant", ""},
			{"an unsupported grant type", controlapi.PathToken, with(redeem, "grant_type", "password"), "", nil, http.StatusBadRequest, "unsupported_grant_type", ""},
			{"no grant type", controlapi.PathToken, with(redeem, "grant_type", ""), "", nil, http.StatusBadRequest, "invalid_request", ""},
			{"a parameter twice", controlapi.PathToken, func() url.Values { v := with(redeem); v.Add("code", "again"); return v }(),
				"", nil, http.StatusBadRequest, "invalid_request", ""},
			{"a JSON body", controlapi.PathToken, nil, `{"grant_type":"authorization_code","client_id":"` + f.public.ClientID + `"}`,
				nil, http.StatusBadRequest, "invalid_request", ""},
			{"a refresh with another scope", controlapi.PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {public.RefreshToken},
				"scope": {"more"}, "client_id": {f.public.ClientID}}, "", nil, http.StatusBadRequest, "invalid_scope", ""},
			{"revoking another app's token", controlapi.PathRevoke, url.Values{"token": {basicTok.RefreshToken}, "client_id": {f.public.ClientID}},
				"", nil, http.StatusBadRequest, "unauthorized_client", ""},
			{"revoking without a token", controlapi.PathRevoke, url.Values{}, "", basic(f.conf.ClientID, f.conf.ClientSecret), http.StatusBadRequest, "invalid_request", ""},
			{"introspecting without credentials", controlapi.PathIntrospect, url.Values{"token": {public.AccessToken}}, "", nil,
				http.StatusUnauthorized, "invalid_client", `Bearer realm="conngate", Basic realm="conngate"`},
			{"introspecting with a wrong client_secret", controlapi.PathIntrospect, url.Values{"token": {public.AccessToken}, "client_id": {f.conf.ClientID}, "client_secret": {"wrong"}},
				"", nil, http.StatusUnauthorized, "invalid_client", `Bearer realm="conngate", Basic realm="conngate"`},
			{"introspecting with a wrong secret, Basic", controlapi.PathIntrospect, url.Values{"token": {public.AccessToken}}, "", basic(f.conf.ClientID, "wrong"),
				http.StatusUnauthorized, "invalid_client", basicChallenge},
			{"introspecting with a person's key", controlapi.PathIntrospect, url.Values{"token": {public.AccessToken}}, "", bearer(f.keys["developer"]),
				http.StatusUnauthorized, "invalid_client", `Bearer realm="conngate"`},
			{"introspecting as a public client", controlapi.PathIntrospect, url.Values{"token": {public.AccessToken}}, "", basic(f.public.ClientID, ""),
				http.StatusBadRequest, "unauthorized_client", ""},
		} {
			t.Run(tt.name, func(t *testing.T) {
				var a answer
				if tt.raw != "" {
					a = send(t, client, http.MethodPost, base+tt.path, "application/json", tt.raw, tt.prepare)
				} else {
					a = post(tt.path, tt.form, tt.prepare)
				}
				if a.status != tt.status || a.oauthError() != tt.code {
					t.Errorf("%d %s, want %d %s", a.status, a.body, tt.status, tt.code)
				}
				if a.header.Get("Cache-Control") != "no-store" || a.header.Get("Pragma") != "no-cache" {
					t.Errorf("Cache-Control %q, Pragma %q", a.header.Get("Cache-Control"), a.header.Get("Pragma"))
				}
				if challenge := a.header.Get("WWW-Authenticate"); challenge != tt.challenge {
					t.Errorf("WWW-Authenticate %q, want %q", challenge, tt.challenge)
				}
			})
		}
		// The code survived every failed attempt.
		if _, err := f.public.Exchange(ctx, code, oauth2.VerifierOption(verifier)); err != nil {
			t.Errorf("the app's own exchange after the refusals: %v", err)
		}
		for _, path := range []string{controlapi.PathToken, controlapi.PathRevoke, controlapi.PathIntrospect} {
			if a := send(t, client, http.MethodGet, base+path, "", "", nil); a.status != http.StatusMethodNotAllowed || a.header.Get("Allow") != "POST" {
				t.Errorf("GET %s: %d, Allow %q", path, a.status, a.header.Get("Allow"))
			}
		}
	})

	t.Run("authorisation refusals", func(t *testing.T) {
		authURL := func(kv ...string) string {
			u, _ := url.Parse(f.public.AuthCodeURL("st", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
			q := u.Query()
			for i := 0; i+1 < len(kv); i += 2 {
				q.Set(kv[i], kv[i+1])
			}
			u.RawQuery = q.Encode()
			return u.String()
		}
		b := controltest.Browser(t)
		b.Transport = tr
		for _, tt := range []struct {
			name   string
			url    string
			status int
			error  string // of the redirect back to the app
		}{
			{"an implicit grant", authURL("response_type", "token"), http.StatusSeeOther, "unsupported_response_type"},
			{"plain PKCE", authURL("code_challenge_method", "plain"), http.StatusSeeOther, "invalid_request"},
			{"an unknown client", authURL("client_id", "app_nope"), http.StatusBadRequest, ""},
			{"a redirect URI not registered", authURL("redirect_uri", "https://evil.example/cb"), http.StatusBadRequest, ""},
		} {
			p := controltest.Get(t, b, tt.url)
			back, _ := url.Parse(p.Header.Get("Location"))
			if p.Status != tt.status || back.Query().Get("error") != tt.error {
				t.Errorf("%s: %d %s", tt.name, p.Status, back)
			}
		}
		if back := authorize(f.public, oauth2.GenerateVerifier(), "deny"); back.Query().Get("error") != "access_denied" {
			t.Errorf("deny: %s", back)
		}
		if a := send(t, b, http.MethodPut, base+controlapi.PathAuthorize, "", "", nil); a.status != http.StatusMethodNotAllowed || a.header.Get("Allow") != "GET, POST" {
			t.Errorf("PUT: %d, Allow %q", a.status, a.header.Get("Allow"))
		}
	})

	covered := tr.Covered()
	for _, want := range []string{
		"getOAuthMetadata 200",
		"authorize 200", "authorize 303", "authorize 400",
		"authorizeDecide 303", "authorizeDecide 403",
		"token 200", "token 400", "token 401",
		"revoke 200", "revoke 400",
		"introspect 200", "introspect 400", "introspect 401",
	} {
		if !slices.Contains(covered, want) {
			t.Errorf("no exchange checked against %s; checked: %q", want, covered)
		}
	}
}
