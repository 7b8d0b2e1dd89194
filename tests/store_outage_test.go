package tests

import (
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"testing"

	"github.com/conngate/conngate/caddymodule/control/controltest"
)

// Through the real binary, a control endpoint whose PostgreSQL goes away:
// writes get 503 store_unavailable with Retry-After (nothing half-applied,
// never a 500), reads too; the database, reached directly, shows nothing
// changed.
func TestDatabaseUnreachable(t *testing.T) {
	dsn := requirePostgres(t, "go test -run DatabaseUnreachable ./tests")
	schemaDSN := testSchema(t, dsn)
	u, err := url.Parse(schemaDSN)
	if err != nil {
		t.Fatal(err)
	}
	relay := newFrozenRelay(t, u.Host)
	u.Host = relay.addr
	q := u.Query()
	q.Set("connect_timeout", "2")
	u.RawQuery = q.Encode()

	dir := t.TempDir()
	adminKey := controltest.RandomKey()
	env := IsolatedEnv(dir, "CONNGATE_ADMIN_KEY="+adminKey, "CONNGATE_GATEWAY_KEY="+controltest.RandomKey())
	sites := map[string]string{"relayed": u.String(), "direct": schemaDSN}
	controls := map[string]*demo{}
	for name, d := range sites {
		port := freePort(t)
		control := fmt.Sprintf("http://127.0.0.1:%d", port)
		site := filepath.Join(dir, name)
		writeSite(t, site, fmt.Sprintf(`{
	admin off
}
:%d {
	bind 127.0.0.1
	connection_control {
		store postgres %q
		api_key admin {env.CONNGATE_ADMIN_KEY}
	}
}
`, port, d))
		startCaddy(t, site, env, control+"/.well-known/jwks.json")
		controls[name] = &demo{control: control, adminKey: adminKey}
	}
	api, direct := controls["relayed"], controls["direct"]
	code, created := api.api(t, "POST", "/v1/connections", `{"name":"Kept","org_id":"org-1","user_id":"u"}`)
	if code != http.StatusCreated {
		t.Fatalf("create: %d %v", code, created)
	}
	id := created["connection"].(map[string]any)["id"].(string)

	relay.cut()
	for _, call := range []struct{ method, path string }{
		{"POST", "/v1/connections/" + id + "/disable"},
		{"POST", "/v1/connections/" + id + "/disable"}, // on a new connection this time
		{"GET", "/v1/connections/" + id},
		{"GET", "/v1/connections?org_id=org-1"},
	} {
		req, _ := http.NewRequest(call.method, api.control+call.path, nil)
		req.Header.Set("Authorization", "Bearer "+adminKey)
		code, body := do(t, req)
		if code != http.StatusServiceUnavailable || body["error"] != "store_unavailable" {
			t.Errorf("%s %s with the database unreachable: %d %v, want 503 store_unavailable", call.method, call.path, code, body)
		}
	}
	if code, body := direct.api(t, "GET", "/v1/connections/"+id, ""); code != 200 || body["connection"].(map[string]any)["status"] != "active" {
		t.Errorf("the connection read directly: %d %v, want it still active", code, body)
	}
}
