package control_test

import (
	"context"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"golang.org/x/oauth2"

	"github.com/conngate/conngate/caddymodule/control/contracttest"
	"github.com/conngate/conngate/caddymodule/control/controltest"
)

var (
	signOutPattern = regexp.MustCompile(`(?s)<form method="post" action="/oauth/authorize" class="signout">(.*?)</form>`)
	hiddenPattern  = regexp.MustCompile(`<input type="hidden" name="([a-z_]+)" value="([^"]*)">`)
)

// signOutForm returns the fields of a page's sign-out form, nil when the
// page has none.
func signOutForm(body string) url.Values {
	m := signOutPattern.FindStringSubmatch(body)
	if m == nil {
		return nil
	}
	form := url.Values{}
	for _, f := range hiddenPattern.FindAllStringSubmatch(m[1], -1) {
		form.Set(f[1], html.UnescapeString(f[2]))
	}
	return form
}

// signInAs walks a fresh browser through the sign-in form of authURL with
// key and returns it with the page the sign-in leads to.
func signInAs(t *testing.T, b *http.Client, base, authURL, key string) controltest.Page {
	t.Helper()
	signin := controltest.Get(t, b, authURL)
	form := signin.Form
	form.Set("key", key)
	signedIn := controltest.Post(t, b, base, form)
	if signedIn.Status != http.StatusSeeOther {
		t.Fatalf("sign-in: %d\n%s", signedIn.Status, signedIn.Body)
	}
	return controltest.Get(t, b, base+signedIn.Header.Get("Location"))
}

// sameRequest fails the test unless the authorisation request's
// parameters in got are those of authURL.
func sameRequest(t *testing.T, authURL string, got url.Values) {
	t.Helper()
	u, _ := url.Parse(authURL)
	for k, v := range u.Query() {
		if got.Get(k) != v[0] {
			t.Errorf("%s is %q after signing out, want %q", k, got.Get(k), v[0])
		}
	}
}

// tlsServer serves f's control handler over TLS, checking every exchange
// against openapi.json as f.s does over plain HTTP: the __Host- cookies
// exist only over HTTPS.
func tlsServer(t *testing.T, f *oauthFixture) *httptest.Server {
	contract, err := contracttest.Load()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(contract.Handler(controlHandler(t, f), func(err error) { t.Errorf("openapi.json: %v", err) }))
	t.Cleanup(srv.Close)
	return srv
}

// controlHandler is f's control handler as an http.Handler.
func controlHandler(t *testing.T, f *oauthFixture) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := f.s.Control.ServeHTTP(w, r, nil); err != nil {
			t.Errorf("control handler returned %v", err)
		}
	})
}

// authURLOn is an authorisation request of f's public app to srv.
func authURLOn(f *oauthFixture, srv *httptest.Server) string {
	cfg := f.public
	cfg.Endpoint.AuthURL = srv.URL + "/oauth/authorize"
	return cfg.AuthCodeURL("s t&a=te", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))
}

// responseCookies are the cookies a page set, by name.
func responseCookies(h http.Header) map[string]*http.Cookie {
	out := map[string]*http.Cookie{}
	for _, c := range (&http.Response{Header: h}).Cookies() {
		out[c.Name] = c
	}
	return out
}

func TestOAuthSignOut(t *testing.T) {
	f := newOAuthFixture(t)
	base, authURL := f.s.URL, authURLOn(f, f.s.HTTP)

	t.Run("the consent page signs out to the sign-in form of the same request", func(t *testing.T) {
		b := controltest.Browser(t)
		consent := signInAs(t, b, base, authURL, f.keys["developer"])
		form := signOutForm(consent.Body)
		if consent.Status != http.StatusOK || form == nil || form.Get("action") != "signout" {
			t.Fatalf("the consent page of a person signed in with a key has no sign-out form: %d\n%s", consent.Status, consent.Body)
		}
		out := controltest.Post(t, b, base, form)
		session := responseCookies(out.Header)["conngate_session"]
		if out.Status != http.StatusSeeOther || session == nil || session.MaxAge >= 0 || session.Value != "" || session.Path != "/oauth/" {
			t.Fatalf("signing out: %d, session cookie %v, want 303 and the cookie removed", out.Status, session)
		}
		loc, err := url.Parse(out.Header.Get("Location"))
		if err != nil || loc.Path != "/oauth/authorize" {
			t.Fatalf("signing out sends the browser to %q", out.Header.Get("Location"))
		}
		sameRequest(t, authURL, loc.Query())
		signin := controltest.Get(t, b, base+loc.String())
		if signin.Status != http.StatusOK || !strings.Contains(signin.Body, `name="key"`) || signOutForm(signin.Body) != nil {
			t.Fatalf("after signing out: %d, want the sign-in form\n%s", signin.Status, signin.Body)
		}
		sameRequest(t, authURL, signin.Form)

		approve := consent.Form
		approve.Set("action", "approve")
		approve.Set("org_id", "org-1")
		if p := controltest.Post(t, b, base, approve); p.Status != http.StatusOK || !strings.Contains(p.Body, "Your session has ended") {
			t.Errorf("approving after signing out: %d, want the sign-in form\n%s", p.Status, p.Body)
		}
	})

	t.Run("a person without access signs out from the access-denied page", func(t *testing.T) {
		b := controltest.Browser(t)
		denied := signInAs(t, b, base, authURL, f.keys["viewer"])
		form := signOutForm(denied.Body)
		if denied.Status != http.StatusForbidden || form == nil || !strings.Contains(denied.Body, `id="signed-in-as">viewer<`) {
			t.Fatalf("the access-denied page has no sign-out form naming the person: %d\n%s", denied.Status, denied.Body)
		}
		out := controltest.Post(t, b, base, form)
		if out.Status != http.StatusSeeOther {
			t.Fatalf("signing out: %d\n%s", out.Status, out.Body)
		}
		consent := signInAs(t, b, base, base+out.Header.Get("Location"), f.keys["developer"])
		if consent.Status != http.StatusOK || !strings.Contains(consent.Body, `id="approve"`) {
			t.Errorf("signing in as another person after signing out: %d\n%s", consent.Status, consent.Body)
		}
	})

	t.Run("without a valid CSRF token: refused, still signed in", func(t *testing.T) {
		b := controltest.Browser(t)
		consent := signInAs(t, b, base, authURL, f.keys["developer"])
		other := signInAs(t, controltest.Browser(t), base, authURL, f.keys["developer"])
		if signOutForm(consent.Body) == nil || signOutForm(other.Body) == nil {
			t.Fatalf("no sign-out form:\n%s", consent.Body)
		}
		for name, csrf := range map[string]string{
			"none":                       "",
			"the consent form's":         consent.Form.Get("csrf"),
			"another browser's sign-out": signOutForm(other.Body).Get("csrf"),
		} {
			form := signOutForm(consent.Body)
			form.Set("csrf", csrf)
			p := controltest.Post(t, b, base, form)
			if p.Status != http.StatusForbidden || !strings.Contains(p.Body, "expired") || len(p.Header.Values("Set-Cookie")) > 0 {
				t.Errorf("%s token: %d %q, want 403 and no cookie set", name, p.Status, p.Header.Values("Set-Cookie"))
			}
		}
		if p := controltest.Get(t, b, authURL); !strings.Contains(p.Body, `id="approve"`) {
			t.Errorf("a refused sign-out signed the person out:\n%s", p.Body)
		}
	})

	t.Run("signed in by an authentication handler: nothing to sign out of", func(t *testing.T) {
		repl := caddy.NewReplacer()
		repl.Set("http.auth.user.id", "developer")
		r := httptest.NewRequest(http.MethodGet, authURL, nil)
		r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
		w := httptest.NewRecorder()
		contract, err := contracttest.Load()
		if err != nil {
			t.Fatal(err)
		}
		contract.Handler(controlHandler(t, f), func(err error) { t.Errorf("openapi.json: %v", err) }).ServeHTTP(w, r)
		if body := w.Body.String(); w.Code != http.StatusOK || !strings.Contains(body, `id="approve"`) || signOutForm(body) != nil {
			t.Errorf("%d, want the consent page without a sign-out form\n%s", w.Code, body)
		}
	})
}

// Over HTTPS the cookies carry the __Host- prefix with its rules (Secure,
// Path=/, no Domain), so that a sibling subdomain can neither set nor
// shadow them; over plain HTTP (loopback development) they keep their
// names under /oauth/. Each scheme reads only its own names.
func TestOAuthCookieNames(t *testing.T) {
	f := newOAuthFixture(t)
	sessions := map[bool]string{} // a signed-in session's value, by TLS
	for _, tt := range []struct {
		name                string
		tls                 bool
		session, csrf, path string
	}{
		{"HTTPS", true, "__Host-conngate_session", "__Host-conngate_csrf", "/"},
		{"plain HTTP", false, "conngate_session", "conngate_csrf", "/oauth/"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := f.s.HTTP
			if tt.tls {
				srv = tlsServer(t, f)
			}
			b := controltest.Browser(t)
			b.Transport = srv.Client().Transport
			authURL := authURLOn(f, srv)
			check := func(step string, h http.Header, name string, removed bool) {
				t.Helper()
				cookies := responseCookies(h)
				c := cookies[name]
				if c == nil || len(cookies) != 1 {
					t.Fatalf("%s set %q, want only %s", step, h.Values("Set-Cookie"), name)
				}
				if c.Path != tt.path || c.Domain != "" || c.Secure != tt.tls || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || (c.MaxAge < 0) != removed {
					t.Errorf("%s set %s", step, c)
				}
			}

			signin := controltest.Get(t, b, authURL)
			check("the sign-in page", signin.Header, tt.csrf, false)
			form := signin.Form
			form.Set("key", f.keys["developer"])
			signedIn := controltest.Post(t, b, srv.URL, form)
			if signedIn.Status != http.StatusSeeOther {
				t.Fatalf("sign-in: %d\n%s", signedIn.Status, signedIn.Body)
			}
			check("signing in", signedIn.Header, tt.session, false)
			sessions[tt.tls] = responseCookies(signedIn.Header)[tt.session].Value
			consent := controltest.Get(t, b, srv.URL+signedIn.Header.Get("Location"))
			if consent.Status != http.StatusOK || !strings.Contains(consent.Body, `id="approve"`) {
				t.Fatalf("the consent page: %d\n%s", consent.Status, consent.Body)
			}
			out := controltest.Post(t, b, srv.URL, signOutForm(consent.Body))
			check("signing out", out.Header, tt.session, true)
			if p := controltest.Get(t, b, authURL); !strings.Contains(p.Body, `name="key"`) {
				t.Errorf("still signed in after signing out:\n%s", p.Body)
			}
			back := controltest.Decide(t, b, srv.URL, signInAs(t, b, srv.URL, authURL, f.keys["developer"]).Form, "approve", "org-1")
			if back.Query().Get("code") == "" {
				t.Errorf("approving over %s: sent back to %s", tt.name, back)
			}
		})
	}

	t.Run("each scheme reads only its own names", func(t *testing.T) {
		overTLS, plain := tlsServer(t, f), f.s.HTTP
		for _, tt := range []struct {
			name     string
			srv      *httptest.Server
			cookie   string
			value    string
			signedIn bool
		}{
			{"HTTPS, prefixed", overTLS, "__Host-conngate_session", sessions[true], true},
			{"HTTPS, unprefixed", overTLS, "conngate_session", sessions[true], false},
			{"plain HTTP, unprefixed", plain, "conngate_session", sessions[false], true},
			{"plain HTTP, prefixed", plain, "__Host-conngate_session", sessions[false], false},
		} {
			req, _ := http.NewRequest(http.MethodGet, authURLOn(f, tt.srv), nil)
			req.AddCookie(&http.Cookie{Name: tt.cookie, Value: tt.value})
			resp, err := tt.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(string(body), `id="approve"`); got != tt.signedIn || resp.StatusCode != http.StatusOK {
				t.Errorf("%s: %d, signed in %t, want %t", tt.name, resp.StatusCode, got, tt.signedIn)
			}
		}

		// A nonce planted under the plain name (a sibling subdomain can set
		// one for the parent domain) does not make a sign-in form valid
		// over HTTPS.
		b := controltest.Browser(t)
		b.Transport = plain.Client().Transport
		form := controltest.Get(t, b, authURLOn(f, plain)).Form
		form.Set("key", f.keys["developer"])
		u, _ := url.Parse(plain.URL + "/oauth/authorize")
		nonce := b.Jar.Cookies(u)[0]
		req, _ := http.NewRequest(http.MethodPost, overTLS.URL+"/oauth/authorize", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(&http.Cookie{Name: "conngate_csrf", Value: nonce.Value})
		resp, err := overTLS.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || responseCookies(resp.Header)["__Host-conngate_session"] != nil {
			t.Errorf("a sign-in over HTTPS with the plain CSRF cookie: %d, want 403", resp.StatusCode)
		}
	})
}
