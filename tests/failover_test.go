package tests

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/conngate/conngate/caddymodule/control/controltest"
)

// Through the real binary: a gateway with two control endpoints, each a
// process with its own bolt store. The second store starts as a copy of the
// first (so both know connection X and sign with the same key); then the
// first writes connection Z, which the second never hears of. The first is
// SIGKILLed: the gateway moves its lookups and its change stream to the
// second, which answers its position with a reset (its revisions are another
// history), so Z, still cached from the first, is looked up again and
// refused; X keeps working until it is disabled on the second, and that
// disable is enforced. The switch is logged once and counted.
func TestGatewayFailsOverToTheSecondControlProcess(t *testing.T) {
	dir := t.TempDir()
	adminKey, gatewayKey := controltest.RandomKey(), controltest.RandomKey()
	env := IsolatedEnv(dir, "CONNGATE_ADMIN_KEY="+adminKey, "CONNGATE_GATEWAY_KEY="+gatewayKey)
	controlSite := func(name string) (site, base, db string) {
		port := freePort(t)
		site = filepath.Join(dir, name)
		db = filepath.Join(site, "conngate.db")
		writeSite(t, site, fmt.Sprintf(`{
	admin off
}
:%d {
	bind 127.0.0.1
	connection_control {
		store bolt %s
		api_key admin {env.CONNGATE_ADMIN_KEY}
		api_key gateway {env.CONNGATE_GATEWAY_KEY}
	}
}
`, port, db))
		return site, fmt.Sprintf("http://127.0.0.1:%d", port), db
	}
	siteA, a, dbA := controlSite("control-a")
	siteB, b, dbB := controlSite("control-b")
	apiA := &demo{control: a, adminKey: adminKey}
	apiB := &demo{control: b, adminKey: adminKey}
	create := func(api *demo, name string) (id, token string) {
		t.Helper()
		code, created := api.api(t, "POST", "/v1/connections", fmt.Sprintf(`{"name":%q,"org_id":"org-1","user_id":"u"}`, name))
		if code != http.StatusCreated {
			t.Fatalf("create %s at %s: %d %v", name, api.control, code, created)
		}
		return created["connection"].(map[string]any)["id"].(string), created["access_token"].(string)
	}

	ctlA := startCaddy(t, siteA, env, a+"/.well-known/jwks.json")
	x, tokenX := create(apiA, "X")
	if !ctlA.stop() {
		t.Fatal("control a did not stop")
	}
	copyFile(t, dbA, dbB)
	ctlA = startCaddy(t, siteA, env, a+"/.well-known/jwks.json")
	startCaddy(t, siteB, env, b+"/.well-known/jwks.json")
	_, tokenZ := create(apiA, "Z")

	gwPort, adminPort := freePort(t), freePort(t)
	gateway := fmt.Sprintf("http://127.0.0.1:%d", gwPort)
	gwSite := filepath.Join(dir, "gateway")
	writeSite(t, gwSite, fmt.Sprintf(`{
	admin 127.0.0.1:%d
}
:%d {
	bind 127.0.0.1
	connection_gate {
		control_url %s %s
		control_key {env.CONNGATE_GATEWAY_KEY}
		gateway_id edge
	}
	respond "ok" 200
}
`, adminPort, gwPort, a, b))
	gw := startCaddy(t, gwSite, env, a+"/.well-known/jwks.json")
	waitGateways(t, apiA, 1)
	for _, tok := range []string{tokenX, tokenZ} {
		if code, reason := gateAnswer(t, gateway, tok); code != 200 {
			t.Fatalf("before the failover: %d %s, want 200", code, reason)
		}
	}

	ctlA.cmd.Process.Kill() // SIGKILL: no clean goodbye to the gateway
	ctlA.cmd.Wait()
	waitGateways(t, apiB, 1)
	// Z stays served from the cache only until the gateway has applied the
	// second endpoint's reset; then the second store's answer counts.
	for start := time.Now(); ; time.Sleep(5 * time.Millisecond) {
		code, reason := gateAnswer(t, gateway, tokenZ)
		if code == 401 && reason == "connection_unknown" {
			break
		}
		if code != 200 || time.Since(start) > 3*time.Second {
			t.Fatalf("Z after the failover: %d %s, want 401 connection_unknown within 3s (the reset drops what the first store said)", code, reason)
		}
	}
	if code, reason := gateAnswer(t, gateway, tokenX); code != 200 {
		t.Fatalf("X after the failover: %d %s, want 200 (the second store has it active)", code, reason)
	}

	if code, body := apiB.api(t, "POST", "/v1/connections/"+x+"/disable", ""); code != 200 {
		t.Fatalf("disable at the second: %d %v", code, body)
	}
	start := time.Now()
	for {
		code, reason := gateAnswer(t, gateway, tokenX)
		if code == 401 && reason == "connection_disabled" {
			break
		}
		if code != 200 || time.Since(start) > 3*time.Second {
			t.Fatalf("X after its disable at the second endpoint: %d %s, want 401 connection_disabled within 3s", code, reason)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("disable at the second endpoint enforced after %s", time.Since(start).Round(time.Millisecond))
	_, y := create(apiB, "Y")
	if code, reason := gateAnswer(t, gateway, y); code != 200 {
		t.Fatalf("Y, created at the second: %d %s, want 200", code, reason)
	}

	series := fmt.Sprintf(`conngate_control_failovers_total{control_url="%s %s",gateway_id="edge",kind="statuses"} 1`, a, b)
	if metrics := scrape(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", adminPort)); !strings.Contains(metrics, series) {
		t.Errorf("no %s in the gateway's metrics:\n%s", series, grepLines(metrics, "failovers"))
	}
	gw.stop()
	if n := strings.Count(gw.log.String(), "control endpoint failover: statuses"); n != 1 {
		t.Errorf("%d failover lines in the gateway's log, want 1", n)
	}
}

// gateAnswer sends a request with token through the gateway and returns the
// status and the refusal's reason.
func gateAnswer(t *testing.T, gateway, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, gateway+"/data", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Reason string `json:"reason"`
	}
	b, _ := io.ReadAll(resp.Body)
	json.Unmarshal(b, &body)
	return resp.StatusCode, body.Reason
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
