package tests

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/conngate/conngate/store/pgstore/pgtest"

	"github.com/conngate/conngate/caddymodule/control/controltest"
)

// Through the real binary: two control replicas on one PostgreSQL schema
// (store postgres {env.CONNGATE_POSTGRES_DSN}) publish the same signing
// key, so a token issued by one passes a gateway fed by the other; a
// connection disabled through replica A is refused by a gateway whose
// change stream comes from replica B, and B's API shows the change.
func TestControlReplicasOnPostgres(t *testing.T) {
	dsn := requirePostgres(t, "go test -run Postgres ./tests")
	dir := t.TempDir()
	adminKey, gatewayKey := controltest.RandomKey(), controltest.RandomKey()
	env := IsolatedEnv(dir, "CONNGATE_ADMIN_KEY="+adminKey, "CONNGATE_GATEWAY_KEY="+gatewayKey,
		"CONNGATE_POSTGRES_DSN="+testSchema(t, dsn))

	replicas := []string{startReplica(t, dir, "a", env).url, startReplica(t, dir, "b", env).url}
	if a, b := fetch(t, replicas[0]+"/.well-known/jwks.json"), fetch(t, replicas[1]+"/.well-known/jwks.json"); a != b {
		t.Fatalf("the replicas publish different key sets:\n%s\n%s", a, b)
	}

	gatewayPort := freePort(t)
	gateway := fmt.Sprintf("http://127.0.0.1:%d", gatewayPort)
	site := filepath.Join(dir, "gateway")
	writeSite(t, site, fmt.Sprintf(`{
	admin off
}
:%d {
	bind 127.0.0.1
	connection_gate {
		control_url %s
		control_key {env.CONNGATE_GATEWAY_KEY}
	}
	respond "ok" 200
}
`, gatewayPort, replicas[1]))
	startCaddy(t, site, env, replicas[1]+"/.well-known/jwks.json")

	a, b := &demo{control: replicas[0], adminKey: adminKey}, &demo{control: replicas[1], adminKey: adminKey}
	waitGateways(t, b, 1) // its change stream from B is up
	code, created := a.api(t, "POST", "/v1/connections", `{"name":"Replicated","org_id":"org-1","user_id":"u"}`)
	if code != http.StatusCreated {
		t.Fatalf("create through replica A: %d %v", code, created)
	}
	token := created["access_token"].(string)
	id := created["connection"].(map[string]any)["id"].(string)
	if code := waitStatus(t, gateway, token, 200); code != 200 {
		t.Fatalf("gateway fed by replica B, token issued by replica A: %d, want 200", code)
	}

	if code, body := a.api(t, "POST", "/v1/connections/"+id+"/disable", ""); code != 200 {
		t.Fatalf("disable through replica A: %d %v", code, body)
	}
	disabled := time.Now()
	if code := waitStatus(t, gateway, token, 401); code != 401 {
		t.Fatalf("gateway fed by replica B after a disable through replica A: %d, want 401", code)
	}
	t.Logf("disable through A refused by the gateway on B after %v", time.Since(disabled).Round(time.Millisecond))
	if code, body := b.api(t, "GET", "/v1/connections/"+id, ""); code != 200 || body["connection"].(map[string]any)["status"] != "disabled" {
		t.Fatalf("the connection through replica B: %d %v, want disabled", code, body)
	}
}

// replica is one control replica of the real binary on the test's
// PostgreSQL schema.
type replica struct {
	url, site string
	proc      *caddyProcess
}

// startReplica writes a control replica's site in dir/control-<name>, its
// store the schema of CONNGATE_POSTGRES_DSN in env, and starts it.
func startReplica(t testing.TB, dir, name string, env []string) replica {
	t.Helper()
	port := freePort(t)
	r := replica{url: fmt.Sprintf("http://127.0.0.1:%d", port), site: filepath.Join(dir, "control-"+name)}
	writeSite(t, r.site, fmt.Sprintf(`{
	admin off
}
:%d {
	bind 127.0.0.1
	connection_control {
		store postgres {env.CONNGATE_POSTGRES_DSN}
		api_key admin {env.CONNGATE_ADMIN_KEY}
		api_key gateway {env.CONNGATE_GATEWAY_KEY}
	}
}
`, port))
	r.proc = startCaddy(t, r.site, env, r.url+"/.well-known/jwks.json")
	return r
}

// requirePostgres returns the test database's DSN, or skips the test (or
// benchmark) with the command that runs it: goTest, with the DSN set.
func requirePostgres(t testing.TB, goTest string) string {
	t.Helper()
	return pgtest.DSN(t, goTest)
}

// testSchema creates a schema for t in the test database, dropped at the
// end (registered before the processes start, so run after they stopped),
// and returns a DSN whose search_path is that schema.
func testSchema(t testing.TB, dsn string) string {
	t.Helper()
	return pgtest.Schema(t, dsn)
}

func fetch(t *testing.T, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// waitStatus asks the gateway with token until it answers want, for up to
// 5 seconds, and returns its last answer.
func waitStatus(t *testing.T, gateway, token string, want int) int {
	t.Helper()
	var code int
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if code = get(t.Context(), http.DefaultClient, gateway, token); code == want {
			break
		}
	}
	return code
}
