package tests

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/conngate/conngate/caddymodule/control/controltest"
)

// Through the real binary: every PostgreSQL connection of a control
// endpoint is killed (pg_terminate_backend) twice during status flips. No
// flip that was answered 200 is lost (the final statuses and the audit log
// are exactly those of the answered flips), a refused one is a 503, the
// change stream resumes, and the gateway converges on the final statuses.
func TestDatabaseConnectionsKilledDuringFlips(t *testing.T) {
	dsn := requirePostgres(t, "go test -run DatabaseConnectionsKilled ./tests")
	schemaDSN := testSchema(t, dsn)
	u, _ := url.Parse(schemaDSN)
	app := "conngate_" + u.Query().Get("search_path")
	q := u.Query()
	q.Set("application_name", app) // to find this test's connections, and only them
	u.RawQuery = q.Encode()

	dir := t.TempDir()
	adminKey, gatewayKey := controltest.RandomKey(), controltest.RandomKey()
	env := IsolatedEnv(dir, "CONNGATE_ADMIN_KEY="+adminKey, "CONNGATE_GATEWAY_KEY="+gatewayKey, "CONNGATE_POSTGRES_DSN="+u.String())
	controlPort, gatewayPort := freePort(t), freePort(t)
	control, gateway := fmt.Sprintf("http://127.0.0.1:%d", controlPort), fmt.Sprintf("http://127.0.0.1:%d", gatewayPort)
	writeSite(t, dir, fmt.Sprintf(`{
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
:%d {
	bind 127.0.0.1
	connection_gate {
		control_url %s
		control_key {env.CONNGATE_GATEWAY_KEY}
	}
	respond "ok" 200
}
`, controlPort, gatewayPort, control))
	startCaddy(t, dir, env, control+"/.well-known/jwks.json")
	api := &demo{control: control, adminKey: adminKey}
	waitGateways(t, api, 1)

	type conn struct{ id, token string }
	var conns []conn
	for i := range 4 {
		code, created := api.api(t, "POST", "/v1/connections", fmt.Sprintf(`{"name":"c%d","org_id":"org-1","user_id":"u"}`, i))
		if code != http.StatusCreated {
			t.Fatalf("create: %d %v", code, created)
		}
		conns = append(conns, conn{created["connection"].(map[string]any)["id"].(string), created["access_token"].(string)})
	}

	kill := func() int64 {
		c, err := pgx.Connect(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
		var n int64
		if err := c.QueryRow(context.Background(), "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1", app).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	// One client per connection flips it; the answered flips are the truth.
	var mu sync.Mutex
	last := map[string]string{} // connection id -> status of its last answered flip
	changes := map[string]int{} // connection id -> answered flips that changed it
	refused := 0
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status := "active"
			for i := range 40 {
				action, to := "disable", "disabled"
				if i%2 == 1 {
					action, to = "enable", "active"
				}
				req, _ := http.NewRequest(http.MethodPost, control+"/v1/connections/"+c.id+"/"+action, nil)
				req.Header.Set("Authorization", "Bearer "+adminKey)
				code, body := do(t, req)
				mu.Lock()
				switch code {
				case 200:
					if status != to {
						changes[c.id]++
					}
					status, last[c.id] = to, to
				case 503:
					if body["error"] != "store_unavailable" {
						t.Errorf("503 with %v", body)
					}
					refused++
				default:
					t.Errorf("%s %s: %d %v", action, c.id, code, body)
				}
				mu.Unlock()
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	killed := kill()
	time.Sleep(200 * time.Millisecond)
	killed += kill()
	wg.Wait()
	if killed == 0 {
		t.Fatal("no connection of the control endpoint was found to kill")
	}
	t.Logf("killed %d database connections; %d flips refused with 503", killed, refused)

	for _, c := range conns {
		code, body := api.api(t, "GET", "/v1/connections/"+c.id, "")
		if code != 200 || body["connection"].(map[string]any)["status"] != last[c.id] {
			t.Errorf("connection %s: %d %v, want %s (its last answered flip)", c.id, code, body, last[c.id])
		}
		_, audit := api.api(t, "GET", "/v1/audit?connection_id="+c.id+"&limit=500", "")
		entries, _ := audit["entries"].([]any)
		if got := len(entries) - 1; got != changes[c.id] { // the creation is one entry
			t.Errorf("connection %s: %d changes in the audit log, want the %d answered flips that changed it", c.id, got, changes[c.id])
		}
		want := map[string]int{"active": 200, "disabled": 401}[last[c.id]]
		if code := waitStatus(t, gateway, c.token, want); code != want {
			t.Errorf("gateway on %s after the kills: %d, want %d", c.id, code, want)
		}
	}
}
