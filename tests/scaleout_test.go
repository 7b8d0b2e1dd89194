package tests

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/conngate/conngate/caddymodule/control/controltest"
)

// Through the real binary, the README's "Scaling out" layout: 2 control
// replicas on one PostgreSQL schema, 3 gateways spread across them (each
// naming both), status flips through both replicas from several clients.
// ?wait=applied on either replica counts every gateway, whichever replica
// it is connected to; replica A is SIGKILLed mid-run and its gateways fail
// over to B and miss nothing; every gateway ends at the latest revision with
// every connection's final status; A restarts and catches up.
func TestScaleOutOnPostgres(t *testing.T) {
	dsn := requirePostgres(t, "go test -run ScaleOut ./tests")
	dir := t.TempDir()
	adminKey, gatewayKey := controltest.RandomKey(), controltest.RandomKey()
	env := IsolatedEnv(dir, "CONNGATE_ADMIN_KEY="+adminKey, "CONNGATE_GATEWAY_KEY="+gatewayKey, "CONNGATE_POSTGRES_DSN="+testSchema(t, dsn))

	replicaA, replicaB := startReplica(t, dir, "a", env), startReplica(t, dir, "b", env)
	urlA, urlB := replicaA.url, replicaB.url
	a, b := &demo{control: urlA, adminKey: adminKey}, &demo{control: urlB, adminKey: adminKey}

	type gateway struct{ url, admin string }
	var gws []gateway
	for i, order := range [][2]string{{urlA, urlB}, {urlB, urlA}, {urlA, urlB}} {
		port, admin := freePort(t), freePort(t)
		g := gateway{fmt.Sprintf("http://127.0.0.1:%d", port), fmt.Sprintf("http://127.0.0.1:%d", admin)}
		site := filepath.Join(dir, fmt.Sprintf("gateway-%d", i))
		writeSite(t, site, fmt.Sprintf(`{
	admin 127.0.0.1:%d
}
:%d {
	bind 127.0.0.1
	connection_gate {
		control_url %s %s
		control_key {env.CONNGATE_GATEWAY_KEY}
		gateway_id edge-%d
	}
	respond "ok" 200
}
`, admin, port, order[0], order[1], i))
		startCaddy(t, site, env, order[0]+"/.well-known/jwks.json")
		gws = append(gws, g)
	}
	// Each replica lists all three, though each has only some of their
	// streams: the registry is shared through the store.
	waitGateways(t, a, 3)
	waitGateways(t, b, 3)

	type conn struct{ id, token string }
	var conns []conn
	for i := range 8 {
		api := []*demo{a, b}[i%2]
		code, created := api.api(t, "POST", "/v1/connections", fmt.Sprintf(`{"name":"c%d","org_id":"org-1","user_id":"u"}`, i))
		if code != http.StatusCreated {
			t.Fatalf("create: %d %v", code, created)
		}
		conns = append(conns, conn{created["connection"].(map[string]any)["id"].(string), created["access_token"].(string)})
	}

	// ?wait=applied through A counts the gateway connected to B too.
	code, body := a.api(t, "POST", "/v1/connections/"+conns[0].id+"/disable?wait=applied&timeout=10s", "")
	if code != 200 || body["gateways"] != 3.0 || body["acknowledged"] != 3.0 {
		t.Fatalf("disable through A with wait=applied: %d %v, want 3 of 3 gateways", code, body)
	}
	for _, g := range gws {
		if code := get(t.Context(), http.DefaultClient, g.url, conns[0].token); code != 401 {
			t.Errorf("gateway %s once wait=applied answered: %d, want 401", g.url, code)
		}
	}

	// Flips from four clients through both replicas; A is killed halfway.
	var mu sync.Mutex
	killed := false
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 7))
			for i := range 30 {
				c := conns[r.IntN(len(conns))]
				action := []string{"disable", "enable"}[r.IntN(2)]
				mu.Lock()
				if w == 0 && i == 15 && !killed {
					replicaA.proc.cmd.Process.Kill() // SIGKILL: no goodbye to anyone
					replicaA.proc.cmd.Wait()
					killed = true
				}
				api := []*demo{a, b}[(w+i)%2]
				if killed {
					api = b
				}
				mu.Unlock()
				req, _ := http.NewRequest(http.MethodPost, api.control+"/v1/connections/"+c.id+"/"+action, nil)
				req.Header.Set("Authorization", "Bearer "+adminKey)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					continue // A died under this request: the client retries elsewhere
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Errorf("%s %s through %s: %d", action, c.id, api.control, resp.StatusCode)
				}
			}
		}()
	}
	wg.Wait()

	// Every gateway converges on every connection's final status, and on
	// the latest revision.
	_, list := b.api(t, "GET", "/v1/connections?limit=50", "")
	final := map[string]string{}
	for _, c := range list["connections"].([]any) {
		m := c.(map[string]any)
		final[m["id"].(string)] = m["status"].(string)
	}
	_, gl := b.api(t, "GET", "/v1/gateways", "")
	rev := uint64(gl["revision"].(float64))
	for _, g := range gws {
		for _, c := range conns {
			want := map[string]int{"active": 200, "disabled": 401}[final[c.id]]
			if code := waitStatus(t, g.url, c.token, want); code != want {
				t.Errorf("gateway %s, connection %s (%s): %d, want %d", g.url, c.id, final[c.id], code, want)
			}
		}
		if got := appliedRevision(t, g.admin, rev); got != rev {
			t.Errorf("gateway %s applied revision %d, want the latest %d", g.url, got, rev)
		}
	}

	// A comes back and serves what B wrote meanwhile.
	startCaddy(t, replicaA.site, env, urlA+"/.well-known/jwks.json")
	for _, c := range conns {
		if code, body := a.api(t, "GET", "/v1/connections/"+c.id, ""); code != 200 || body["connection"].(map[string]any)["status"] != final[c.id] {
			t.Errorf("restarted A on %s: %d %v, want %s", c.id, code, body, final[c.id])
		}
	}
	code, body = a.api(t, "POST", "/v1/connections/"+conns[1].id+"/disable?wait=applied&timeout=10s", "")
	if code != 200 || body["acknowledged"] != body["gateways"] || body["gateways"] == 0.0 {
		t.Errorf("disable through the restarted A: %d %v, want every counted gateway to acknowledge", code, body)
	}
}

var appliedRevisionLine = regexp.MustCompile(`(?m)^conngate_stream_applied_revision\{[^}]*\} (\d+)`)

// appliedRevision reads the gateway's conngate_stream_applied_revision
// until it is want, for up to 5 seconds, and returns the last read.
func appliedRevision(t *testing.T, admin string, want uint64) uint64 {
	t.Helper()
	var got uint64
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if m := appliedRevisionLine.FindStringSubmatch(fetch(t, admin+"/metrics")); m != nil {
			if got, _ = strconv.ParseUint(m[1], 10, 64); got == want {
				break
			}
		}
	}
	return got
}
