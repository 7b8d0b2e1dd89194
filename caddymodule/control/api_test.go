package control_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/conngate/conngate/caddymodule/control/controltest"
	"github.com/conngate/conngate/store"
)

type errorBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

func raw(t *testing.T, s *controltest.Server, key, method, path, body string, header ...string) (*http.Response, errorBody) {
	t.Helper()
	req, _ := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e errorBody
	json.NewDecoder(resp.Body).Decode(&e)
	return resp, e
}

// Every error answer: status, code, and a JSON body with a message.
func TestErrors(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	live := s.Create(t, "org-1").Connection.ID
	// A search as long as the longest name, in a script of two-byte letters.
	if resp, _ := raw(t, s, s.AdminKey, "GET", "/v1/connections?q="+strings.Repeat("%D0%96", 200), ""); resp.StatusCode != 200 {
		t.Errorf("a 200-letter Cyrillic search: %d", resp.StatusCode)
	}
	gone := s.Create(t, "org-1").Connection.ID
	s.Act(t, gone, store.ActionDelete)

	admin, gw := s.AdminKey, s.GatewayKey
	tests := []struct {
		name, key, method, path, body string
		status                        int
		code                          string
	}{
		{"no key", "", "GET", "/v1/connections", "", 401, "unauthorized"},
		{"wrong key", "not-a-key-at-all-really", "GET", "/v1/connections", "", 401, "unauthorized"},
		{"gateway may not list", gw, "GET", "/v1/connections", "", 403, "forbidden"},
		{"gateway may not create", gw, "POST", "/v1/connections", `{"name":"a","org_id":"o","user_id":"u"}`, 403, "forbidden"},
		{"gateway may not disable", gw, "POST", "/v1/connections/" + live + "/disable", "", 403, "forbidden"},
		{"gateway may not delete", gw, "DELETE", "/v1/connections/" + live, "", 403, "forbidden"},
		{"gateway may not view", gw, "GET", "/v1/connections/" + live, "", 403, "forbidden"},
		{"unknown id", admin, "GET", "/v1/connections/conn_nope", "", 404, "connection_not_found"},
		{"unknown id status", gw, "GET", "/v1/connections/conn_nope/status", "", 404, "connection_not_found"},
		{"unknown id disable", admin, "POST", "/v1/connections/conn_nope/disable", "", 404, "connection_not_found"},
		{"malformed id", admin, "GET", "/v1/connections/a%20b", "", 400, "invalid_request"},
		{"enable deleted", admin, "POST", "/v1/connections/" + gone + "/enable", "", 409, "connection_deleted"},
		{"disable deleted", admin, "POST", "/v1/connections/" + gone + "/disable", "", 409, "connection_deleted"},
		{"body not JSON", admin, "POST", "/v1/connections", `name=x`, 400, "invalid_json"},
		{"unknown field", admin, "POST", "/v1/connections", `{"name":"a","org_id":"o","user_id":"u","status":"active"}`, 400, "invalid_json"},
		{"trailing data", admin, "POST", "/v1/connections", `{"name":"a","org_id":"o","user_id":"u"}{}`, 400, "invalid_json"},
		{"field name in another case", admin, "POST", "/v1/connections", `{"NAME":"a","org_id":"o","user_id":"u"}`, 400, "invalid_json"},
		{"field given twice", admin, "POST", "/v1/connections", `{"name":"a","org_id":"o","org_id":"p","user_id":"u"}`, 400, "invalid_json"},
		{"missing name", admin, "POST", "/v1/connections", `{"org_id":"o","user_id":"u"}`, 400, "invalid_request"},
		{"bad org id", admin, "POST", "/v1/connections", `{"name":"a","org_id":"o/1","user_id":"u"}`, 400, "invalid_request"},
		{"huge body", admin, "POST", "/v1/connections", `{"name":"` + strings.Repeat("a", 70<<10) + `"}`, 413, "request_too_large"},
		{"huge trailing data", admin, "POST", "/v1/connections", `{"name":"a","org_id":"o","user_id":"u"}` + strings.Repeat(" ", 70<<10), 413, "request_too_large"},
		{"search too long", admin, "GET", "/v1/connections?q=" + strings.Repeat("a", 201), "", 400, "invalid_request"},
		{"bad status filter", admin, "GET", "/v1/connections?status=paused", "", 400, "invalid_request"},
		{"bad limit", admin, "GET", "/v1/connections?limit=0", "", 400, "invalid_request"},
		{"limit too large", admin, "GET", "/v1/connections?limit=100000", "", 400, "invalid_request"},
		{"limit not a number", admin, "GET", "/v1/connections?limit=ten", "", 400, "invalid_request"},
		{"wrong method", admin, "PUT", "/v1/connections/" + live, "", 405, "method_not_allowed"},
		{"GET on an action", admin, "GET", "/v1/connections/" + live + "/disable", "", 405, "method_not_allowed"},
		{"unknown route", admin, "GET", "/v2/things", "", 404, "not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := raw(t, s, tt.key, tt.method, tt.path, tt.body)
			if resp.StatusCode != tt.status || body.Error != tt.code || body.Message == "" {
				t.Fatalf("got %d %+v, want %d %q with a message", resp.StatusCode, body, tt.status, tt.code)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if tt.status == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("401 without a Bearer challenge")
			}
			if tt.status == 405 && resp.Header.Get("Allow") == "" {
				t.Errorf("405 without Allow")
			}
		})
	}
	// Nothing refused above changed anything.
	var got struct{ Connection store.Connection }
	s.Do(t, admin, "GET", "/v1/connections/"+live, nil, &got)
	if got.Connection.Status != store.StatusActive {
		t.Errorf("refused requests changed %s to %s", live, got.Connection.Status)
	}
}

func TestLifecycle(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	c := s.Create(t, "org-1").Connection
	if c.Status != store.StatusActive || c.OrgID != "org-1" || c.UserID != "user-1" || c.Name != "Test app" || c.Revision == 0 {
		t.Fatalf("created %+v", c)
	}
	var status struct {
		ID       string
		Status   store.Status
		Revision uint64
	}
	if code := s.Do(t, s.GatewayKey, "GET", "/v1/connections/"+c.ID+"/status", nil, &status); code != 200 {
		t.Fatalf("status read by gateway key: %d", code)
	}
	if status.ID != c.ID || status.Status != store.StatusActive || status.Revision != c.Revision {
		t.Errorf("status answer %+v", status)
	}

	d := s.Act(t, c.ID, store.ActionDisable)
	if d.Status != store.StatusDisabled || d.Revision <= c.Revision {
		t.Fatalf("disable gave %+v", d)
	}
	again := s.Act(t, c.ID, store.ActionDisable)
	if again.Revision != d.Revision || again.Status != store.StatusDisabled {
		t.Errorf("repeated disable is not idempotent: revision %d -> %d", d.Revision, again.Revision)
	}
	e := s.Act(t, c.ID, store.ActionEnable)
	if e.Status != store.StatusActive || e.Revision <= d.Revision {
		t.Fatalf("enable gave %+v", e)
	}
	del := s.Act(t, c.ID, store.ActionDelete)
	if del.Status != store.StatusDeleted || del.Revision <= e.Revision {
		t.Fatalf("delete gave %+v", del)
	}
	if again := s.Act(t, c.ID, store.ActionDelete); again.Revision != del.Revision {
		t.Errorf("repeated delete changed revision")
	}
	// The tombstone stays readable, so gateways can say "deleted".
	s.Do(t, s.GatewayKey, "GET", "/v1/connections/"+c.ID+"/status", nil, &status)
	if status.Status != store.StatusDeleted {
		t.Errorf("status after delete %s", status.Status)
	}
}

func TestList(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	var ids []string
	for range 5 {
		ids = append(ids, s.Create(t, "org-a").Connection.ID)
		s.Create(t, "org-b")
	}
	s.Act(t, ids[1], store.ActionDisable)
	type page struct {
		Connections []store.Connection `json:"connections"`
		NextCursor  string             `json:"next_cursor"`
	}
	var seen []string
	cursor := ""
	for i := 0; ; i++ {
		var p page
		if code := s.Do(t, s.AdminKey, "GET", "/v1/connections?org_id=org-a&limit=2&cursor="+cursor, nil, &p); code != 200 {
			t.Fatalf("list: %d", code)
		}
		for _, c := range p.Connections {
			seen = append(seen, c.ID)
		}
		if p.NextCursor == "" || i > 5 {
			break
		}
		cursor = p.NextCursor
	}
	if strings.Join(seen, ",") != strings.Join(ids, ",") {
		t.Errorf("paged listing %v, want %v", seen, ids)
	}
	var disabled page
	s.Do(t, s.AdminKey, "GET", "/v1/connections?status=disabled", nil, &disabled)
	if len(disabled.Connections) != 1 || disabled.Connections[0].ID != ids[1] {
		t.Errorf("status filter gave %+v", disabled.Connections)
	}
	var empty map[string]json.RawMessage
	s.Do(t, s.AdminKey, "GET", "/v1/connections?org_id=nobody", nil, &empty)
	if string(empty["connections"]) != "[]" {
		t.Errorf("empty list is %s, want []", empty["connections"])
	}
}

// The issued token carries the promised claims and verifies with the key
// published at /.well-known/jwks.json.
func TestIssuedTokenAndJWKS(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	created := s.Create(t, "org-1")

	var jwks struct {
		Keys []struct{ Kty, Crv, X, Kid, Alg, Use string }
	}
	resp, err := http.Get(s.URL + "/.well-known/jwks.json") // no key needed
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("jwks: %v %v", err, resp)
	}
	json.NewDecoder(resp.Body).Decode(&jwks)
	resp.Body.Close()
	if len(jwks.Keys) != 1 || jwks.Keys[0].Kty != "OKP" || jwks.Keys[0].Crv != "Ed25519" || jwks.Keys[0].Alg != "EdDSA" {
		t.Fatalf("jwks %+v", jwks)
	}
	x, _ := base64.RawURLEncoding.DecodeString(jwks.Keys[0].X)
	if !ed25519.PublicKey(x).Equal(s.SigningKey.Public()) {
		t.Fatal("published key is not the signing key")
	}

	claims := jwt.MapClaims{}
	tok, err := jwt.ParseWithClaims(created.AccessToken, claims, func(*jwt.Token) (any, error) { return ed25519.PublicKey(x), nil },
		jwt.WithValidMethods([]string{"EdDSA"}), jwt.WithIssuer(s.Issuer), jwt.WithAudience(s.Audience), jwt.WithExpirationRequired())
	if err != nil {
		t.Fatalf("issued token does not verify: %v", err)
	}
	if tok.Header["kid"] != jwks.Keys[0].Kid {
		t.Errorf("kid %v, want %s", tok.Header["kid"], jwks.Keys[0].Kid)
	}
	if claims["cid"] != created.Connection.ID || claims["sub"] != "user-1" || claims["jti"] == "" || claims["iat"] == nil {
		t.Errorf("claims %v", claims)
	}
	exp, _ := claims.GetExpirationTime()
	if d := time.Until(exp.Time); d < 23*time.Hour || d > 25*time.Hour {
		t.Errorf("token lives %s, want the default 24h", d)
	}
	other := s.Create(t, "org-1")
	oc := jwt.MapClaims{}
	jwt.ParseWithClaims(other.AccessToken, oc, func(*jwt.Token) (any, error) { return ed25519.PublicKey(x), nil })
	if oc["jti"] == claims["jti"] {
		t.Error("two tokens share a jti")
	}
}

// Restarting on the same directory keeps connections and the signing key,
// so tokens issued before the restart still verify.
func TestRestartKeepsData(t *testing.T) {
	dir := t.TempDir()
	first := controltest.Start(t, controltest.Options{Dir: dir})
	c := first.Create(t, "org-1")
	first.Act(t, c.Connection.ID, store.ActionDisable)
	first.Stop() // closes the store: the second start reopens the file

	second := controltest.Start(t, controltest.Options{Dir: dir})
	var got struct{ Connection store.Connection }
	if code := second.Do(t, second.AdminKey, "GET", "/v1/connections/"+c.Connection.ID, nil, &got); code != 200 {
		t.Fatalf("after restart: %d", code)
	}
	if got.Connection.Status != store.StatusDisabled {
		t.Errorf("status after restart %s", got.Connection.Status)
	}
}
