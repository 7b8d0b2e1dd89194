package control_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/conngate/conngate/caddymodule/control"
	"github.com/conngate/conngate/caddymodule/control/controltest"
	"github.com/conngate/conngate/caddymodule/controlapi"
	"github.com/conngate/conngate/store"
)

// startWithStore starts a control endpoint and returns its store as well:
// the bbolt file is opened once per process and shared, so opening it again
// gives the server's own store. Tests seed through it what the API cannot
// make: connections authorised through an app (the OAuth flow makes them)
// and apps registered by a given principal.
func startWithStore(t *testing.T, opts controltest.Options) (*controltest.Server, store.Store) {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	s := controltest.Start(t, opts)
	b := &control.BoltStore{Path: filepath.Join(opts.Dir, "conngate.db")}
	if err := b.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Cleanup() })
	return s, b.Store()
}

// registerApp registers an app in org with key and returns the answer.
func registerApp(t *testing.T, s *controltest.Server, key, org string, method store.AuthMethod) controlapi.App {
	t.Helper()
	var app controlapi.App
	body := controlapi.NewApp{ClientName: "Zapier", RedirectURIs: []string{"https://zapier.example/cb"}, TokenEndpointAuthMethod: method, OrgID: org}
	if code := s.Do(t, key, http.MethodPost, controlapi.PathApps, body, &app); code != http.StatusCreated {
		t.Fatalf("registering an app in %s: %d", org, code)
	}
	return app
}

// connectThrough makes a connection authorised through app, as the OAuth
// flow does.
func connectThrough(t *testing.T, st store.Store, appID, org, user string) store.Connection {
	t.Helper()
	c, err := st.Create(context.Background(), store.NewConnection{Name: "via app", OrgID: org, UserID: user, AppID: appID}, store.Actor{ID: user})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var secretPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

func TestRegisterApp(t *testing.T) {
	s, st := startWithStore(t, controltest.Options{})
	tests := []struct {
		name       string
		body       string
		wantMethod store.AuthMethod
	}{
		{"client_secret_basic", `{"client_name": "Zapier", "redirect_uris": ["https://zapier.example/cb"], "token_endpoint_auth_method": "client_secret_basic", "org_id": "org-1"}`, store.AuthSecretBasic},
		{"client_secret_post", `{"client_name": "Slack", "redirect_uris": ["https://slack.example/cb", "https://slack.example/cb2"], "token_endpoint_auth_method": "client_secret_post", "org_id": "org-1"}`, store.AuthSecretPost},
		{"none: a public app has no secret", `{"client_name": "CLI", "redirect_uris": ["http://127.0.0.1:8123/callback"], "token_endpoint_auth_method": "none", "org_id": "org-1"}`, store.AuthNone},
		{"no method: client_secret_basic, as RFC 7591 says", `{"client_name": "Notion", "redirect_uris": ["https://notion.example/cb"], "org_id": "org-1"}`, store.AuthSecretBasic},
		{"http on localhost and [::1]", `{"client_name": "Desktop", "redirect_uris": ["http://localhost/cb", "http://[::1]:9/cb"], "token_endpoint_auth_method": "none", "org_id": "org-1"}`, store.AuthNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, s.URL+controlapi.PathApps, strings.NewReader(tt.body))
			req.Header.Set("Authorization", "Bearer "+s.AdminKey)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var app controlapi.App
			if err := json.NewDecoder(resp.Body).Decode(&app); err != nil || resp.StatusCode != http.StatusCreated {
				t.Fatalf("status %d, %v", resp.StatusCode, err)
			}
			if loc := resp.Header.Get("Location"); loc != controlapi.AppPath(app.ClientID) {
				t.Errorf("Location %q", loc)
			}
			var sent controlapi.NewApp
			json.Unmarshal([]byte(tt.body), &sent)
			if !strings.HasPrefix(app.ClientID, "app_") || app.ClientName != sent.ClientName || !slices.Equal(app.RedirectURIs, sent.RedirectURIs) ||
				app.TokenEndpointAuthMethod != tt.wantMethod || app.OrgID != "org-1" || app.CreatedBy != "api_key:admin" ||
				app.ClientIDIssuedAt != app.CreatedAt.Unix() || app.CreatedAt.IsZero() {
				t.Errorf("registered %+v", app)
			}
			stored, err := st.GetApp(context.Background(), app.ClientID)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.wantMethod.Confidential() {
				if app.ClientSecret != "" || app.ClientSecretExpiresAt != nil || len(stored.SecretHash) != 0 {
					t.Errorf("a public app got a secret: %q, stored %x", app.ClientSecret, stored.SecretHash)
				}
				return
			}
			// The secret is shown once, and only its sha-256 is kept.
			sum := sha256.Sum256([]byte(app.ClientSecret))
			if !secretPattern.MatchString(app.ClientSecret) || app.ClientSecretExpiresAt == nil || *app.ClientSecretExpiresAt != 0 ||
				!bytes.Equal(stored.SecretHash, sum[:]) {
				t.Errorf("secret %q (expires %v), stored %x", app.ClientSecret, app.ClientSecretExpiresAt, stored.SecretHash)
			}
			var again map[string]any
			s.Do(t, s.AdminKey, http.MethodGet, controlapi.AppPath(app.ClientID), nil, &again)
			if _, shown := again["client_secret"]; shown || again["client_id"] != app.ClientID {
				t.Errorf("GET shows %v", again)
			}
		})
	}
}

// Every refused registration says which field is wrong, and registers
// nothing.
func TestRegisterAppRefused(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	body := func(edit func(map[string]any)) string {
		b := map[string]any{"client_name": "Zapier", "redirect_uris": []string{"https://zapier.example/cb"}, "token_endpoint_auth_method": "client_secret_basic", "org_id": "org-1"}
		edit(b)
		out, _ := json.Marshal(b)
		return string(out)
	}
	uris := func(u ...string) func(map[string]any) { return func(b map[string]any) { b["redirect_uris"] = u } }
	tests := []struct {
		name, body string
		status     int
		code       string
		mentions   string
	}{
		{"no client_name", body(func(b map[string]any) { delete(b, "client_name") }), 400, "invalid_request", "client_name"},
		{"client_name too long", body(func(b map[string]any) { b["client_name"] = strings.Repeat("a", 201) }), 400, "invalid_request", "client_name"},
		{"client_name with a control character", body(func(b map[string]any) { b["client_name"] = "a\nb" }), 400, "invalid_request", "client_name"},
		{"no org_id", body(func(b map[string]any) { delete(b, "org_id") }), 400, "invalid_request", "org_id"},
		{"bad org_id", body(func(b map[string]any) { b["org_id"] = "o/1" }), 400, "invalid_request", "org_id"},
		{"unknown method", body(func(b map[string]any) { b["token_endpoint_auth_method"] = "private_key_jwt" }), 400, "invalid_request", "token_endpoint_auth_method"},
		{"no redirect_uris", body(func(b map[string]any) { delete(b, "redirect_uris") }), 400, "invalid_request", "redirect_uris"},
		{"empty redirect_uris", body(uris()), 400, "invalid_request", "redirect_uris"},
		{"eleven redirect_uris", body(uris(slices.Repeat([]string{"https://a.example/cb"}, 11)...)), 400, "invalid_request", "redirect_uris"},
		{"http to a public host", body(uris("http://zapier.example/cb")), 400, "invalid_request", "redirect_uris"},
		{"http to a private address", body(uris("http://10.0.0.1/cb")), 400, "invalid_request", "redirect_uris"},
		{"a fragment", body(uris("https://zapier.example/cb#x")), 400, "invalid_request", "fragment"},
		{"an empty fragment", body(uris("https://zapier.example/cb#")), 400, "invalid_request", "fragment"},
		{"a relative URI", body(uris("/cb")), 400, "invalid_request", "redirect_uris"},
		{"a custom scheme", body(uris("com.example.app:/cb")), 400, "invalid_request", "redirect_uris"},
		{"user information", body(uris("https://user:pw@zapier.example/cb")), 400, "invalid_request", "redirect_uris"},
		{"a URI over 2000 bytes", body(uris("https://zapier.example/" + strings.Repeat("a", 2000))), 400, "invalid_request", "redirect_uris"},
		{"redirect_uris not a list", body(func(b map[string]any) { b["redirect_uris"] = "https://zapier.example/cb" }), 400, "invalid_json", "redirect_uris"},
		{"an unknown field", body(func(b map[string]any) { b["client_secret"] = "mine" }), 400, "invalid_json", "client_secret"},
		{"trailing data", body(func(map[string]any) {}) + "{}", 400, "invalid_json", "after the JSON object"},
		{"not JSON", "client_name=x", 400, "invalid_json", ""},
		{"too large", `{"client_name": "` + strings.Repeat("a", 70<<10) + `"}`, 413, "request_too_large", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, e := raw(t, s, s.AdminKey, http.MethodPost, controlapi.PathApps, tt.body)
			if resp.StatusCode != tt.status || e.Error != tt.code || !strings.Contains(e.Message, tt.mentions) {
				t.Fatalf("got %d %+v, want %d %s naming %q", resp.StatusCode, e, tt.status, tt.code, tt.mentions)
			}
		})
	}
	var page controlapi.AppPage
	if s.Do(t, s.AdminKey, http.MethodGet, controlapi.PathApps, nil, &page); len(page.Apps) != 0 {
		t.Errorf("refused registrations left %d apps", len(page.Apps))
	}
}

func TestRotateAppSecret(t *testing.T) {
	s, st := startWithStore(t, controltest.Options{})
	app := registerApp(t, s, s.AdminKey, "org-1", store.AuthSecretPost)
	var rotated controlapi.App
	if code := s.Do(t, s.AdminKey, http.MethodPost, controlapi.AppSecretPath(app.ClientID), nil, &rotated); code != http.StatusOK {
		t.Fatalf("rotating: %d", code)
	}
	if !secretPattern.MatchString(rotated.ClientSecret) || rotated.ClientSecret == app.ClientSecret || rotated.ClientID != app.ClientID ||
		rotated.ClientSecretExpiresAt == nil {
		t.Fatalf("rotated %+v, was secret %q", rotated, app.ClientSecret)
	}
	stored, _ := st.GetApp(context.Background(), app.ClientID)
	if sum := sha256.Sum256([]byte(rotated.ClientSecret)); !bytes.Equal(stored.SecretHash, sum[:]) {
		t.Errorf("the store keeps %x, not the new secret's sha-256", stored.SecretHash)
	}
	var again map[string]any
	s.Do(t, s.AdminKey, http.MethodGet, controlapi.AppPath(app.ClientID), nil, &again)
	if _, shown := again["client_secret"]; shown {
		t.Errorf("GET after a rotation shows the secret")
	}

	public := registerApp(t, s, s.AdminKey, "org-1", store.AuthNone)
	tests := []struct {
		name, path string
		status     int
		code       string
	}{
		{"a public app has no secret", controlapi.AppSecretPath(public.ClientID), 409, "public_client"},
		{"unknown app", controlapi.AppSecretPath("app_nope"), 404, "app_not_found"},
		{"malformed id", "/v1/apps/a%20b/secret", 400, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if resp, e := raw(t, s, s.AdminKey, http.MethodPost, tt.path, ""); resp.StatusCode != tt.status || e.Error != tt.code {
				t.Fatalf("got %d %+v, want %d %s", resp.StatusCode, e, tt.status, tt.code)
			}
		})
	}
}

func TestListApps(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	var ids []string
	for range 5 {
		ids = append(ids, registerApp(t, s, s.AdminKey, "org-a", store.AuthSecretBasic).ClientID)
		registerApp(t, s, s.AdminKey, "org-b", store.AuthNone)
	}
	var seen []string
	cursor := ""
	for i := 0; ; i++ {
		var page controlapi.AppPage
		var rawPage map[string]json.RawMessage
		path := controlapi.PathApps + "?org_id=org-a&limit=2&cursor=" + cursor
		if code := s.Do(t, s.AdminKey, http.MethodGet, path, nil, &rawPage); code != 200 {
			t.Fatalf("list: %d", code)
		}
		json.Unmarshal(rawPage["apps"], &page.Apps)
		json.Unmarshal(rawPage["next_cursor"], &page.NextCursor)
		if bytes.Contains(rawPage["apps"], []byte(`"client_secret"`)) {
			t.Errorf("a listing shows secrets: %s", rawPage["apps"])
		}
		for _, a := range page.Apps {
			seen = append(seen, a.ClientID)
		}
		if page.NextCursor == "" || i > 5 {
			break
		}
		cursor = page.NextCursor
	}
	if !slices.Equal(seen, ids) {
		t.Errorf("paged listing %v, want %v", seen, ids)
	}
	var all controlapi.AppPage
	if s.Do(t, s.AdminKey, http.MethodGet, controlapi.PathApps, nil, &all); len(all.Apps) != 10 {
		t.Errorf("an admin without org_id lists %d apps, want every organisation's 10", len(all.Apps))
	}
	var empty map[string]json.RawMessage
	s.Do(t, s.AdminKey, http.MethodGet, controlapi.PathApps+"?org_id=nobody", nil, &empty)
	if string(empty["apps"]) != "[]" || string(empty["next_cursor"]) != `""` {
		t.Errorf("empty list is %s", empty)
	}
	for _, q := range []string{"?limit=0", "?limit=501", "?org_id=a%2Fb", "?cursor=a%20b"} {
		if resp, e := raw(t, s, s.AdminKey, http.MethodGet, controlapi.PathApps+q, ""); resp.StatusCode != 400 || e.Error != "invalid_request" {
			t.Errorf("%s: %d %+v", q, resp.StatusCode, e)
		}
	}
}

// Deleting an app deletes every connection made through it, in any
// organisation, each a change of its own; the rest stay.
func TestDeleteApp(t *testing.T) {
	s, st := startWithStore(t, controltest.Options{})
	app := registerApp(t, s, s.AdminKey, "org-1", store.AuthSecretBasic)
	other := registerApp(t, s, s.AdminKey, "org-1", store.AuthNone)
	mine := connectThrough(t, st, app.ClientID, "org-1", "user-1")
	elsewhere := connectThrough(t, st, app.ClientID, "org-2", "user-2")
	gone := connectThrough(t, st, app.ClientID, "org-1", "user-3")
	s.Act(t, gone.ID, store.ActionDelete)
	disabled := connectThrough(t, st, app.ClientID, "org-1", "user-4")
	s.Act(t, disabled.ID, store.ActionDisable)
	otherApps := connectThrough(t, st, other.ClientID, "org-1", "user-1")
	direct := s.Create(t, "org-1").Connection

	var filtered controlapi.ConnectionPage
	if code := s.Do(t, s.AdminKey, http.MethodGet, "/v1/connections?app_id="+app.ClientID, nil, &filtered); code != 200 || len(filtered.Connections) != 4 {
		t.Fatalf("?app_id= lists %d (status %d), want the app's 4", len(filtered.Connections), code)
	}
	for _, c := range filtered.Connections {
		if c.AppID != app.ClientID {
			t.Errorf("?app_id= lists %+v", c)
		}
	}

	var deleted controlapi.AppDeleted
	var rawAnswer map[string]json.RawMessage
	resp, _ := raw(t, s, s.AdminKey, http.MethodDelete, controlapi.AppPath(app.ClientID), "", "X-Request-Id", "req-delete-app")
	if resp.StatusCode != 200 {
		t.Fatalf("delete: %d", resp.StatusCode)
	}
	// What the deletion did is read back here; its answer is checked below,
	// on another app.
	wantGone := map[string]bool{mine.ID: true, elsewhere.ID: true, disabled.ID: true}
	for id := range wantGone {
		var got controlapi.ConnectionBody
		if s.Do(t, s.AdminKey, http.MethodGet, controlapi.ConnectionPath(id), nil, &got); got.Connection.Status != store.StatusDeleted {
			t.Errorf("connection %s made through the app is %s", id, got.Connection.Status)
		}
		var audit controlapi.AuditPage
		s.Do(t, s.AdminKey, http.MethodGet, "/v1/audit?connection_id="+id, nil, &audit)
		if len(audit.Entries) == 0 || audit.Entries[0].Action != "delete" || audit.Entries[0].ActorID != "api_key:admin" || audit.Entries[0].RequestID != "req-delete-app" {
			t.Errorf("audit of %s: %+v", id, audit.Entries)
		}
	}
	for _, id := range []string{otherApps.ID, direct.ID} {
		var got controlapi.ConnectionBody
		if s.Do(t, s.AdminKey, http.MethodGet, controlapi.ConnectionPath(id), nil, &got); got.Connection.Status != store.StatusActive {
			t.Errorf("unrelated connection %s is %s", id, got.Connection.Status)
		}
	}
	if resp, e := raw(t, s, s.AdminKey, http.MethodGet, controlapi.AppPath(app.ClientID), ""); resp.StatusCode != 404 || e.Error != "app_not_found" {
		t.Errorf("GET of the deleted app: %d %+v", resp.StatusCode, e)
	}
	if resp, e := raw(t, s, s.AdminKey, http.MethodDelete, controlapi.AppPath(app.ClientID), ""); resp.StatusCode != 404 || e.Error != "app_not_found" {
		t.Errorf("deleting it again: %d %+v", resp.StatusCode, e)
	}

	// The answer names the connections this deletion deleted; with
	// ?wait=applied, the gateways that have applied the last of them.
	gw := s.Events(t, s.GatewayKey, "?gateway_id=gw-silent&instance=silent-1", nil)
	if gw.Resp.StatusCode != 200 {
		t.Fatalf("subscribing: %d", gw.Resp.StatusCode)
	}
	third := registerApp(t, s, s.AdminKey, "org-1", store.AuthSecretPost)
	c1 := connectThrough(t, st, third.ClientID, "org-1", "user-1")
	c2 := connectThrough(t, st, third.ClientID, "org-1", "user-2")
	if code := s.Do(t, s.AdminKey, http.MethodDelete, controlapi.AppPath(third.ClientID)+"?wait=applied&timeout=200ms", nil, &rawAnswer); code != 200 {
		t.Fatalf("delete with wait: %d", code)
	}
	json.Unmarshal(rawAnswer["connections"], &deleted.Connections)
	json.Unmarshal(rawAnswer["app"], &deleted.App)
	var ids []string
	for _, c := range deleted.Connections {
		if c.Status != store.StatusDeleted {
			t.Errorf("answer holds %+v", c)
		}
		ids = append(ids, c.ID)
	}
	slices.Sort(ids)
	if want := []string{c1.ID, c2.ID}; !slices.Equal(ids, want) || deleted.App.ClientID != third.ClientID {
		t.Errorf("answer: app %s, connections %v, want %v", deleted.App.ClientID, ids, want)
	}
	if string(rawAnswer["connections_deleted"]) != "2" {
		t.Errorf("connections_deleted %s, want 2", rawAnswer["connections_deleted"])
	}
	if got := fmt.Sprintf("%s %s %s", rawAnswer["gateways"], rawAnswer["acknowledged"], rawAnswer["pending"]); got != `1 0 ["gw-silent/silent-1"]` {
		t.Errorf("gateways, acknowledged, pending: %s", got)
	}

	var plain map[string]json.RawMessage
	if code := s.Do(t, s.AdminKey, http.MethodDelete, controlapi.AppPath(other.ClientID), nil, &plain); code != 200 {
		t.Fatalf("delete: %d", code)
	}
	if _, ok := plain["gateways"]; ok || !bytes.Contains(plain["connections"], []byte(otherApps.ID)) {
		t.Errorf("answer without wait: %v", plain)
	}
	if resp, e := raw(t, s, s.AdminKey, http.MethodDelete, controlapi.AppPath(registerApp(t, s, s.AdminKey, "org-1", store.AuthNone).ClientID)+"?wait=soon", ""); resp.StatusCode != 400 || e.Error != "invalid_request" {
		t.Errorf("bad wait: %d %+v", resp.StatusCode, e)
	}
	if resp, e := raw(t, s, s.AdminKey, http.MethodGet, "/v1/connections?app_id=a%2Fb", ""); resp.StatusCode != 400 || !strings.Contains(e.Message, "app_id") {
		t.Errorf("bad app_id filter: %d %+v", resp.StatusCode, e)
	}
}

// A developer lists and sees only the apps they registered; others of the
// organisation see all of its apps.
func TestAppListScope(t *testing.T) {
	path, keys := writePrincipals(t)
	s, st := startWithStore(t, controltest.Options{PrincipalsFile: path})
	own := registerApp(t, s, keys["developer"], "org-1", store.AuthNone)
	registerApp(t, s, keys["owner"], "org-1", store.AuthSecretBasic)
	registerApp(t, s, s.AdminKey, "org-2", store.AuthSecretBasic)
	// More of others' apps than a page, so that the developer's page must
	// be read on past them.
	for range 3 {
		registerApp(t, s, keys["manager"], "org-1", store.AuthNone)
	}
	later, _ := st.CreateApp(context.Background(), store.NewApp{Name: "Later", RedirectURIs: []string{"https://l.example/cb"}, AuthMethod: store.AuthNone, OrgID: "org-1"}, store.Actor{ID: "developer"})

	for role, want := range map[string]int{"developer": 2, "viewer": 6, "owner": 6} {
		var page controlapi.AppPage
		if code := s.Do(t, keys[role], http.MethodGet, controlapi.PathApps, nil, &page); code != 200 || len(page.Apps) != want {
			t.Errorf("%s lists %d (status %d), want %d", role, len(page.Apps), code, want)
		}
		for _, a := range page.Apps {
			if a.OrgID != "org-1" || role == "developer" && a.CreatedBy != "developer" {
				t.Errorf("%s sees %+v", role, a)
			}
		}
	}
	var seen []string
	cursor := ""
	for i := 0; i < 10; i++ {
		var page controlapi.AppPage
		s.Do(t, keys["developer"], http.MethodGet, controlapi.PathApps+"?limit=1&cursor="+cursor, nil, &page)
		for _, a := range page.Apps {
			seen = append(seen, a.ClientID)
		}
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	if want := []string{own.ClientID, later.ID}; !slices.Equal(seen, want) {
		t.Errorf("the developer's pages of 1: %v, want %v", seen, want)
	}
}

// People of other organisations authorise an app too: deleting it deletes
// their connections, but its answer lists only those the caller may view.
func TestDeleteAppShowsOnlyWhatTheCallerMayView(t *testing.T) {
	path, keys := writePrincipals(t)
	s, st := startWithStore(t, controltest.Options{PrincipalsFile: path})
	app := registerApp(t, s, keys["developer"], "org-1", store.AuthNone)
	own := connectThrough(t, st, app.ClientID, "org-1", "developer")
	colleague := connectThrough(t, st, app.ClientID, "org-1", "owner")
	foreign := connectThrough(t, st, app.ClientID, "org-2", "someone-in-org-2")
	var answer controlapi.AppDeleted
	if code := s.Do(t, keys["developer"], http.MethodDelete, controlapi.AppPath(app.ClientID), nil, &answer); code != http.StatusOK {
		t.Fatalf("delete: %d", code)
	}
	if answer.ConnectionsDeleted != 3 || len(answer.Connections) != 1 || answer.Connections[0].ID != own.ID {
		t.Errorf("answer: %d deleted, listed %+v; want 3, only %s", answer.ConnectionsDeleted, answer.Connections, own.ID)
	}
	for _, c := range []store.Connection{colleague, foreign} {
		if got, err := st.Get(context.Background(), c.ID); err != nil || got.Status != store.StatusDeleted {
			t.Errorf("%s: %v %v, want deleted", c.ID, got.Status, err)
		}
	}
}
