package control_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"golang.org/x/oauth2"

	"github.com/conngate/conngate/caddymodule/control"
	"github.com/conngate/conngate/caddymodule/control/contracttest"
	"github.com/conngate/conngate/caddymodule/control/controltest"
	"github.com/conngate/conngate/caddymodule/controlapi"
	"github.com/conngate/conngate/store"
)

func init() { caddy.RegisterModule(outageStoreModule{}) }

// outageStoreModule is a conngate.stores module for tests of store
// outages: a bolt store whose reads of apps, codes, refresh tokens and
// connections fail as an unreachable PostgreSQL's do while down is set,
// and whose SaveCode and RedeemCode lose their commit while lostCommit is
// set.
type outageStoreModule struct {
	Path string `json:"path"`
	// Name keys the store in outageStores, for the test to switch.
	Name string `json:"name"`

	bolt *control.BoltStore
	st   *outageStore
}

var outageStores sync.Map // name → *outageStore

func (outageStoreModule) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "conngate.stores.test_outage", New: func() caddy.Module { return new(outageStoreModule) }}
}

func (m *outageStoreModule) Provision(ctx caddy.Context) error {
	m.bolt = &control.BoltStore{Path: m.Path}
	if err := m.bolt.Provision(ctx); err != nil {
		return err
	}
	m.st = &outageStore{Store: m.bolt.Store()}
	outageStores.Store(m.Name, m.st)
	return nil
}

func (m *outageStoreModule) Store() store.Store { return m.st }

func (m *outageStoreModule) Cleanup() error {
	outageStores.Delete(m.Name)
	if m.bolt == nil {
		return nil
	}
	return m.bolt.Cleanup()
}

type outageStore struct {
	store.Store
	down, lostCommit atomic.Bool
}

func (s *outageStore) unreachable() error {
	if s.down.Load() {
		return fmt.Errorf("reading: PostgreSQL is unreachable: %w", store.ErrUnavailable)
	}
	return nil
}

func (s *outageStore) GetApp(ctx context.Context, id string) (store.App, error) {
	if err := s.unreachable(); err != nil {
		return store.App{}, err
	}
	return s.Store.GetApp(ctx, id)
}

func (s *outageStore) Get(ctx context.Context, id string) (store.Connection, error) {
	if err := s.unreachable(); err != nil {
		return store.Connection{}, err
	}
	return s.Store.Get(ctx, id)
}

func (s *outageStore) GetCode(ctx context.Context, hash []byte) (store.AuthCode, error) {
	if err := s.unreachable(); err != nil {
		return store.AuthCode{}, err
	}
	return s.Store.GetCode(ctx, hash)
}

func (s *outageStore) GetRefreshToken(ctx context.Context, hash []byte) (store.RefreshToken, error) {
	if err := s.unreachable(); err != nil {
		return store.RefreshToken{}, err
	}
	return s.Store.GetRefreshToken(ctx, hash)
}

func (s *outageStore) SaveCode(ctx context.Context, c store.AuthCode) error {
	if s.lostCommit.Load() {
		return fmt.Errorf("saving the code: %w", store.ErrOutcomeUnknown)
	}
	return s.Store.SaveCode(ctx, c)
}

func (s *outageStore) RedeemCode(ctx context.Context, hash []byte, first store.RefreshToken) (store.AuthCode, store.Connection, error) {
	if s.lostCommit.Load() {
		return store.AuthCode{}, store.Connection{}, fmt.Errorf("redeeming: %w", store.ErrOutcomeUnknown)
	}
	return s.Store.RedeemCode(ctx, hash, first)
}

// A store outage at the token, revocation and introspection endpoints is
// a 503 temporarily_unavailable with Retry-After, as the API's
// store_unavailable, in the RFC's format; never a 500 server_error. A
// commit whose outcome is unknown says so. Every answer keeps to
// openapi.json (checked on both sides).
func TestOAuthStoreOutageIs503(t *testing.T) {
	dir := t.TempDir()
	principals, keys := writePrincipals(t)
	s := controltest.Start(t, controltest.Options{Dir: dir, PrincipalsFile: principals, Configure: func(c *control.Control) {
		c.StoreRaw = caddyconfig.JSONModuleObject(outageStoreModule{Path: filepath.Join(dir, "conngate.db"), Name: t.Name()}, "backend", "test_outage", nil)
	}})
	v, _ := outageStores.Load(t.Name())
	st := v.(*outageStore)

	register := func(name, method string) controlapi.App {
		var app controlapi.App
		body := map[string]any{"client_name": name, "redirect_uris": []string{redirectURI}, "token_endpoint_auth_method": method, "org_id": "org-1"}
		if code := s.Do(t, s.AdminKey, http.MethodPost, controlapi.PathApps, body, &app); code != http.StatusCreated {
			t.Fatalf("registering %s: %d", name, code)
		}
		return app
	}
	public, conf := register("Public app", "none"), register("Confidential app", "client_secret_basic")
	cfg := oauth2.Config{ClientID: public.ClientID, RedirectURL: redirectURI,
		Endpoint: oauth2.Endpoint{AuthURL: s.URL + controlapi.PathAuthorize, TokenURL: s.URL + controlapi.PathToken}}
	verifier := oauth2.GenerateVerifier()
	code := controltest.Authorize(t, s.URL, cfg.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier)), keys["developer"], "approve", "org-1").Query().Get("code")

	contract, err := contracttest.Load()
	if err != nil {
		t.Fatal(err)
	}
	tr := &contracttest.Transport{Contract: contract, Report: func(err error) { t.Errorf("openapi.json: %v", err) }}
	client := &http.Client{Transport: tr}
	basic := func(r *http.Request) {
		r.SetBasicAuth(url.QueryEscape(conf.ClientID), url.QueryEscape(conf.ClientSecret))
	}
	gateway := func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+s.GatewayKey) }

	for _, tt := range []struct {
		name    string
		fail    *atomic.Bool
		path    string
		form    url.Values
		prepare func(*http.Request)
		hint    string // of the error_description
	}{
		{"a code exchange, the commit lost", &st.lostCommit, controlapi.PathToken, url.Values{"grant_type": {"authorization_code"}, "code": {code},
			"code_verifier": {verifier}, "redirect_uri": {redirectURI}, "client_id": {public.ClientID}}, nil, "may or may not"},
		{"a refresh, client_secret_post", &st.down, controlapi.PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"r"},
			"client_id": {conf.ClientID}, "client_secret": {conf.ClientSecret}}, nil, "nothing was changed"},
		{"a revocation, Basic", &st.down, controlapi.PathRevoke, url.Values{"token": {"t"}}, basic, "nothing was changed"},
		{"an introspection by a gateway", &st.down, controlapi.PathIntrospect, url.Values{"token": {"t"}}, gateway, "nothing was changed"},
		{"an introspection by a confidential app", &st.down, controlapi.PathIntrospect, url.Values{"token": {"t"}}, basic, "nothing was changed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.fail.Store(true)
			defer tt.fail.Store(false)
			a := send(t, client, http.MethodPost, s.URL+tt.path, formType, tt.form.Encode(), tt.prepare)
			var e controlapi.OAuthError
			json.Unmarshal(a.body, &e)
			if a.status != http.StatusServiceUnavailable || e.Code != controlapi.OAuthTemporarilyUnavailable || a.header.Get("Retry-After") != "1" {
				t.Errorf("%d %s, Retry-After %q; want 503 temporarily_unavailable, Retry-After 1", a.status, a.body, a.header.Get("Retry-After"))
			}
			if !strings.Contains(e.Description, tt.hint) {
				t.Errorf("error_description %q lacks %q", e.Description, tt.hint)
			}
			if a.header.Get("Cache-Control") != "no-store" || a.header.Get("Pragma") != "no-cache" {
				t.Errorf("Cache-Control %q, Pragma %q", a.header.Get("Cache-Control"), a.header.Get("Pragma"))
			}
		})
	}
	covered := tr.Covered()
	for _, want := range []string{"token 503", "revoke 503", "introspect 503"} {
		if !slices.Contains(covered, want) {
			t.Errorf("no exchange checked against %s; checked: %q", want, covered)
		}
	}
}

// A store outage at the authorisation pages is a 503 page with
// Retry-After, not a 500 "Something went wrong": the person may try again
// in a moment. Every answer keeps to openapi.json (checked on both sides).
func TestOAuthAuthorizeStoreOutageIs503(t *testing.T) {
	dir := t.TempDir()
	principals, keys := writePrincipals(t)
	s := controltest.Start(t, controltest.Options{Dir: dir, PrincipalsFile: principals, Configure: func(c *control.Control) {
		c.StoreRaw = caddyconfig.JSONModuleObject(outageStoreModule{Path: filepath.Join(dir, "conngate.db"), Name: t.Name()}, "backend", "test_outage", nil)
	}})
	v, _ := outageStores.Load(t.Name())
	st := v.(*outageStore)
	var app controlapi.App
	body := map[string]any{"client_name": "Public app", "redirect_uris": []string{redirectURI}, "token_endpoint_auth_method": "none", "org_id": "org-1"}
	if code := s.Do(t, s.AdminKey, http.MethodPost, controlapi.PathApps, body, &app); code != http.StatusCreated {
		t.Fatalf("registering: %d", code)
	}
	cfg := oauth2.Config{ClientID: app.ClientID, RedirectURL: redirectURI, Endpoint: oauth2.Endpoint{AuthURL: s.URL + controlapi.PathAuthorize}}
	authURL := cfg.AuthCodeURL("st", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))

	contract, err := contracttest.Load()
	if err != nil {
		t.Fatal(err)
	}
	tr := &contracttest.Transport{Contract: contract, Report: func(err error) { t.Errorf("openapi.json: %v", err) }}
	b, consent := controltest.Consent(t, s.URL, authURL, keys["developer"])
	b.Transport = tr
	approve := url.Values{}
	for k, v := range consent {
		approve[k] = v
	}
	approve.Set("action", "approve")
	approve.Set("org_id", "org-1")

	for _, tt := range []struct {
		name string
		fail *atomic.Bool
		page func() controltest.Page
		hint string
	}{
		{"the consent page", &st.down, func() controltest.Page { return controltest.Get(t, b, authURL) }, "nothing was changed"},
		{"an approval, the app unreadable", &st.down, func() controltest.Page { return controltest.Post(t, b, s.URL, approve) }, "nothing was changed"},
		{"an approval, the code's commit lost", &st.lostCommit, func() controltest.Page { return controltest.Post(t, b, s.URL, approve) }, "no code"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.fail.Store(true)
			defer tt.fail.Store(false)
			p := tt.page()
			if p.Status != http.StatusServiceUnavailable || p.Header.Get("Retry-After") != "1" || !strings.HasPrefix(p.Header.Get("Content-Type"), "text/html") {
				t.Errorf("%d, Retry-After %q, Content-Type %q; want a 503 page with Retry-After 1\n%s",
					p.Status, p.Header.Get("Retry-After"), p.Header.Get("Content-Type"), p.Body)
			}
			if !strings.Contains(p.Body, tt.hint) {
				t.Errorf("the page does not say %q:\n%s", tt.hint, p.Body)
			}
		})
	}
	// Once the store is back, the same form approves.
	if back := controltest.Decide(t, b, s.URL, consent, "approve", "org-1"); back.Query().Get("code") == "" {
		t.Errorf("approving after the outage: sent back to %s", back)
	}
	covered := tr.Covered()
	for _, want := range []string{"authorize 503", "authorizeDecide 503"} {
		if !slices.Contains(covered, want) {
			t.Errorf("no exchange checked against %s; checked: %q", want, covered)
		}
	}
}
