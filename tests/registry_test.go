package tests

import (
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/conngate/conngate/caddymodule/control/controltest"
)

// Through the real binary: two gateway processes sharing one gateway_id are
// two entries and both are waited for; right after the control endpoint
// restarts, ?wait=applied still counts them (they are remembered in the
// store) and answers once both reconnected and applied the change, never
// "0 of 0"; a gateway that stops cleanly leaves the registry.
func TestGatewayProcessesAcrossAControlRestart(t *testing.T) {
	dir := t.TempDir()
	adminKey, gatewayKey := controltest.RandomKey(), controltest.RandomKey()
	env := IsolatedEnv(dir, "CONNGATE_ADMIN_KEY="+adminKey, "CONNGATE_GATEWAY_KEY="+gatewayKey)
	controlPort := freePort(t)
	control := fmt.Sprintf("http://127.0.0.1:%d", controlPort)
	controlSite := filepath.Join(dir, "control")
	writeSite(t, controlSite, fmt.Sprintf(`{
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
`, controlPort, filepath.Join(dir, "conngate.db")))
	ctl := startCaddy(t, controlSite, env, control+"/.well-known/jwks.json")

	var gateways []string
	var procs []*caddyProcess
	for i := range 2 {
		port := freePort(t)
		gateways = append(gateways, fmt.Sprintf("http://127.0.0.1:%d", port))
		site := filepath.Join(dir, fmt.Sprintf("gateway-%d", i))
		writeSite(t, site, fmt.Sprintf(`{
	admin off
}
:%d {
	bind 127.0.0.1
	connection_gate {
		control_url %s
		control_key {env.CONNGATE_GATEWAY_KEY}
		gateway_id edge
	}
	respond "ok" 200
}
`, port, control))
		procs = append(procs, startCaddy(t, site, env, control+"/.well-known/jwks.json"))
	}
	api := &demo{control: control, adminKey: adminKey}
	waitGateways(t, api, 2)
	_, list := api.api(t, "GET", "/v1/gateways", "")
	seen := connectedGateways(list)
	if seen[0]["id"] != "edge" || seen[1]["id"] != "edge" || seen[0]["instance"] == seen[1]["instance"] {
		t.Fatalf("two processes of gateway edge: %v", seen)
	}
	code, created := api.api(t, "POST", "/v1/connections", `{"name":"Kept","org_id":"org-1","user_id":"u"}`)
	if code != http.StatusCreated {
		t.Fatalf("create: %d %v", code, created)
	}
	token := created["access_token"].(string)
	id := created["connection"].(map[string]any)["id"].(string)
	for _, g := range gateways {
		if code := get(t.Context(), http.DefaultClient, g, token); code != 200 {
			t.Fatalf("gateway %s before: %d", g, code)
		}
	}

	// Restart the control endpoint and disable at once.
	if !ctl.stop() {
		t.Fatal("the control endpoint did not stop")
	}
	startCaddy(t, controlSite, env, control+"/.well-known/jwks.json")
	http.DefaultClient.CloseIdleConnections()
	code, body := api.api(t, "POST", "/v1/connections/"+id+"/disable?wait=applied&timeout=10s", "")
	if code != 200 || body["gateways"] != 2.0 || body["acknowledged"] != 2.0 {
		t.Fatalf("disable right after a restart: %d %v, want both processes counted and acknowledged", code, body)
	}
	for _, g := range gateways {
		if code := get(t.Context(), http.DefaultClient, g, token); code != 401 {
			t.Errorf("gateway %s once ?wait=applied answered: %d, want 401", g, code)
		}
	}

	// A process that stops cleanly says so: not counted any more.
	procs[1].stop()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		_, list := api.api(t, "GET", "/v1/gateways", "")
		if all, _ := list["gateways"].([]any); len(all) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a clean stop, GET /v1/gateways = %v, want one process", list)
		}
	}
	code, body = api.api(t, "POST", "/v1/connections/"+id+"/enable?wait=applied&timeout=3s", "")
	if code != 200 || body["gateways"] != 1.0 || body["acknowledged"] != 1.0 {
		t.Errorf("enable after one process left: %d %v", code, body)
	}
}
