package tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/conngate/conngate/caddymodule/control/controltest"
)

// upstream is the data API behind the gateway: it records what reaches it.
type upstream struct {
	*httptest.Server
	mu   sync.Mutex
	seen []string // X-Connection-Id of every request, in order
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.seen = append(u.seen, r.Header.Get("X-Connection-Id"))
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"data":"ok"}`)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) requests() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.seen...)
}

// demo is Caddyfile.example running with its ports, store directory and
// upstream moved to this test's.
type demo struct {
	dir                     string
	env                     []string
	caddyfile               string
	gateway, control, admin string
	adminKey                string
	upstream                *upstream
	proc                    *caddyProcess
}

// exampleConfig rewrites Caddyfile.example for the test. Every replacement
// must match exactly once, so a changed example fails here loudly instead of
// silently testing something else.
func newDemo(t *testing.T) *demo {
	t.Helper()
	example, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	d := &demo{dir: t.TempDir(), upstream: newUpstream(t), adminKey: controltest.RandomKey()}
	gw, ctl, data, adm := freePort(t), freePort(t), freePort(t), freePort(t)
	d.gateway = fmt.Sprintf("http://127.0.0.1:%d", gw)
	d.control = fmt.Sprintf("http://127.0.0.1:%d", ctl)
	d.admin = fmt.Sprintf("http://127.0.0.1:%d", adm)
	cfg := string(example)
	for _, r := range []struct{ old, new string }{
		{"\n:8080 {", fmt.Sprintf("\n:%d {", gw)},
		{"control_url http://127.0.0.1:9180", "control_url " + d.control},
		{"\n:9180 {", fmt.Sprintf("\n:%d {", ctl)},
		{"reverse_proxy 127.0.0.1:9000", "reverse_proxy " + strings.TrimPrefix(d.upstream.URL, "http://")},
		{"\n:9000 {", fmt.Sprintf("\n:%d {", data)},
		{"store bolt ./data/conngate.db", "store bolt " + filepath.Join(d.dir, "data", "conngate.db")},
		{"principals_file ./data/principals.json", "principals_file " + filepath.Join(d.dir, "data", "principals.json")},
	} {
		if n := strings.Count(cfg, r.old); n != 1 {
			t.Fatalf("Caddyfile.example has %q %d times, want once", r.old, n)
		}
		cfg = strings.Replace(cfg, r.old, r.new, 1)
	}
	// The issuer is the control endpoint's URL, set on both sides.
	if n := strings.Count(cfg, "issuer http://127.0.0.1:9180\n"); n != 2 {
		t.Fatalf("Caddyfile.example has its issuer %d times, want twice (gateway and control endpoint)", n)
	}
	cfg = strings.ReplaceAll(cfg, "issuer http://127.0.0.1:9180\n", "issuer "+d.control+"\n")
	// The example has no global options; the test adds an admin address
	// of its own so that it does not collide with a Caddy on :2019.
	d.caddyfile = fmt.Sprintf("{\n\tadmin 127.0.0.1:%d\n}\n\n%s", adm, cfg)
	if err := os.WriteFile(filepath.Join(d.dir, "Caddyfile"), []byte(d.caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	d.env = IsolatedEnv(d.dir, "CONNGATE_ADMIN_KEY="+d.adminKey, "CONNGATE_GATEWAY_KEY="+controltest.RandomKey())
	return d
}

// start runs the demo and waits until its gateway has subscribed to the
// change stream (it retries within a fraction of a second after start-up,
// where the control endpoint in the same Caddy is not listening yet).
func (d *demo) start(t *testing.T) {
	d.proc = startCaddy(t, d.dir, d.env, d.control+"/.well-known/jwks.json")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		_, gws := d.api(t, "GET", "/v1/gateways", "")
		if len(connectedGateways(gws)) == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway did not subscribe: %v", gws)
		}
	}
}

// api calls the control endpoint with the admin key.
func (d *demo) api(t testing.TB, method, path, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, d.control+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+d.adminKey)
	return do(t, req)
}

// call calls the data API through the gateway with a token.
func (d *demo) call(t *testing.T, token string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, d.gateway+"/v1/data", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	return do(t, req)
}

func do(t testing.TB, req *http.Request) (int, map[string]any) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	b, _ := io.ReadAll(resp.Body)
	if len(b) > 0 {
		if err := json.Unmarshal(b, &body); err != nil {
			t.Fatalf("%s %s: answer is not JSON: %q", req.Method, req.URL, b)
		}
	}
	return resp.StatusCode, body
}

// The README's curl walk-through, against the real binary.
func TestDemoWalkthrough(t *testing.T) {
	d := newDemo(t)
	d.start(t)

	code, created := d.api(t, "POST", "/v1/connections", `{"name":"Zapier","org_id":"org-1","user_id":"user-1"}`)
	if code != http.StatusCreated {
		t.Fatalf("create: %d %v", code, created)
	}
	token := created["access_token"].(string)
	id := created["connection"].(map[string]any)["id"].(string)

	mustCall := func(step string, want int, reason string) {
		t.Helper()
		code, body := d.call(t, token)
		if code != want || (reason != "" && body["reason"] != reason) {
			t.Fatalf("%s: gateway answered %d %v, want %d %s", step, code, body, want, reason)
		}
	}
	mustAct := func(method, path string, want int) map[string]any {
		t.Helper()
		code, body := d.api(t, method, path, "")
		if code != want {
			t.Fatalf("%s %s: %d %v, want %d", method, path, code, body, want)
		}
		return body
	}
	// change waits until the gateway has applied the change: when it
	// returns, the gateway answers with the new status, no sleeping.
	change := func(method, path string) {
		t.Helper()
		body := mustAct(method, path+"?wait=applied&timeout=5s", 200)
		if body["gateways"] != 1.0 || body["acknowledged"] != 1.0 {
			t.Fatalf("%s %s: %v, want the one gateway to acknowledge", method, path, body)
		}
	}

	mustCall("active", 200, "")
	if seen := d.upstream.requests(); len(seen) != 1 || seen[0] != id {
		t.Fatalf("upstream saw %v, want one request with X-Connection-Id %s", seen, id)
	}

	change("POST", "/v1/connections/"+id+"/disable")
	before := len(d.upstream.requests())
	mustCall("disabled", 401, "connection_disabled")

	change("POST", "/v1/connections/"+id+"/enable")
	if n := len(d.upstream.requests()); n != before {
		t.Fatalf("upstream saw %d requests while the connection was disabled", n-before)
	}
	mustCall("enabled again, same token", 200, "")

	change("DELETE", "/v1/connections/"+id)
	before = len(d.upstream.requests())
	mustCall("deleted", 401, "connection_deleted")
	body := mustAct("POST", "/v1/connections/"+id+"/enable", 409)
	if body["error"] != "connection_deleted" {
		t.Fatalf("enable after delete: %v", body)
	}
	mustCall("still deleted after the refused enable", 401, "connection_deleted")
	if n := len(d.upstream.requests()); n != before {
		t.Fatalf("upstream saw %d requests for a deleted connection", n-before)
	}

	// Every change, and only the changes, are in the audit log, newest first.
	_, audit := d.api(t, "GET", "/v1/audit?connection_id="+id, "")
	entries, _ := audit["entries"].([]any)
	var actions []string
	for _, e := range entries {
		actions = append(actions, e.(map[string]any)["action"].(string))
	}
	if strings.Join(actions, " ") != "delete enable disable create" {
		t.Fatalf("audit actions %v", actions)
	}

	// The API describes itself.
	if resp, err := http.Get(d.control + "/v1/openapi.json"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("openapi.json: %v %v", err, resp)
	} else {
		var doc map[string]any
		json.NewDecoder(resp.Body).Decode(&doc)
		resp.Body.Close()
		if doc["openapi"] != "3.1.0" {
			t.Fatalf("openapi.json: %v", doc["openapi"])
		}
	}

	if code, body := d.call(t, "not-a-token"); code != 401 || body["reason"] != "token_invalid" {
		t.Fatalf("bad token: %d %v", code, body)
	}
	if seen := d.upstream.requests(); len(seen) != 2 {
		t.Fatalf("upstream saw %d requests, want exactly the 2 made while active: %v", len(seen), seen)
	}

	// The decisions and the stream show in Caddy's metrics.
	resp, err := http.Get(d.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`conngate_gate_decisions_total{reason="connection_active",result="allowed"} 2`,
		`conngate_gate_decisions_total{reason="connection_disabled",result="denied"} 1`,
		`conngate_gate_decisions_total{reason="connection_deleted",result="denied"} 2`,
		`conngate_gate_decisions_total{reason="token_invalid",result="denied"} 1`,
		`conngate_stream_connected{control_url="` + d.control + `",gateway_id=`,
		`conngate_revocation_lag_seconds_count 4`,
		`conngate_control_streams_open{kind="gateway"} 1`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", grepLines(string(metrics), "conngate_"))
	}
}

func grepLines(text, substr string) string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// Connections, their statuses and the generated signing key survive a
// restart; a `caddy reload` keeps the store open and working.
func TestRestartAndReload(t *testing.T) {
	d := newDemo(t)
	d.start(t)
	_, created := d.api(t, "POST", "/v1/connections", `{"name":"Kept","org_id":"org-1","user_id":"user-1"}`)
	token := created["access_token"].(string)
	id := created["connection"].(map[string]any)["id"].(string)
	_, other := d.api(t, "POST", "/v1/connections", `{"name":"Off","org_id":"org-1","user_id":"user-2"}`)
	otherID := other["connection"].(map[string]any)["id"].(string)
	d.api(t, "POST", "/v1/connections/"+otherID+"/disable", "")

	if !d.proc.stop() {
		t.Fatal("caddy did not exit within 10s of SIGTERM")
	}
	d.start(t)
	if code, body := d.call(t, token); code != 200 {
		t.Fatalf("token issued before the restart: %d %v", code, body)
	}
	if code, body := d.api(t, "GET", "/v1/connections/"+otherID, ""); code != 200 ||
		body["connection"].(map[string]any)["status"] != "disabled" {
		t.Fatalf("disabled connection after restart: %d %v", code, body)
	}

	// Reload the same config through the admin API: the new config must
	// share the open store (a second open of the file would fail).
	req, _ := http.NewRequest(http.MethodPost, d.admin+"/load", bytes.NewReader([]byte(d.caddyfile)))
	req.Header.Set("Content-Type", "text/caddyfile")
	req.Header.Set("Cache-Control", "must-revalidate") // force a reload even though the config is unchanged
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("reload: %d %s", resp.StatusCode, msg)
	}
	// The old config's server closed its connections; do not reuse one.
	http.DefaultClient.CloseIdleConnections()
	// The reload ended the old control handler's streams; the gateway, whose
	// cache and stream outlive the reload, resumes on the new one. One
	// gateway, one stream: the reload did not open a second.
	var gws map[string]any
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, gws = d.api(t, "GET", "/v1/gateways", "")
		list := connectedGateways(gws)
		if len(list) == 1 && list[0]["streams"] == 1.0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateways after reload: %v", gws)
		}
	}
	if code, body := d.api(t, "POST", "/v1/connections/"+id+"/disable?wait=applied", ""); code != 200 || body["acknowledged"] != 1.0 {
		t.Fatalf("disable after reload: %d %v", code, body)
	}
	if code, body := d.call(t, token); code != 401 || body["reason"] != "connection_disabled" {
		t.Fatalf("after reload and disable: %d %v", code, body)
	}
}

// `caddy adapt` and `caddy validate` accept the example as shipped.
func TestExampleAdaptsAndValidates(t *testing.T) {
	dir := t.TempDir()
	example, _ := os.ReadFile("../Caddyfile.example")
	os.WriteFile(filepath.Join(dir, "Caddyfile.example"), example, 0o600)
	env := IsolatedEnv(dir, "CONNGATE_ADMIN_KEY="+controltest.RandomKey(), "CONNGATE_GATEWAY_KEY="+controltest.RandomKey())
	if out, err := runCaddy(t, dir, env, "adapt", "--config", "Caddyfile.example"); err != nil {
		t.Fatalf("adapt: %v\n%s", err, out)
	}
	out, err := runCaddy(t, dir, env, "validate", "--config", "Caddyfile.example")
	if err != nil || !strings.Contains(out, "Valid configuration") {
		t.Fatalf("validate: %v\n%s", err, out)
	}
	// Its issuer is the control endpoint's URL, as RFC 8414 wants: no warning.
	if strings.Contains(out, `"msg":"issuer is not`) {
		t.Errorf("validating the example warns of its issuer:\n%s", out)
	}
	// Without the keys, validation fails and says which one is missing.
	out, err = runCaddy(t, dir, IsolatedEnv(dir), "validate", "--config", "Caddyfile.example")
	if err == nil || !strings.Contains(out, "is that variable set?") {
		t.Fatalf("validate without keys: %v\n%s", err, out)
	}
}

// connectedGateways are the gateway processes of a GET /v1/gateways answer
// with an open stream (the list also holds those seen recently).
func connectedGateways(answer map[string]any) []map[string]any {
	all, _ := answer["gateways"].([]any)
	var open []map[string]any
	for _, g := range all {
		if g, ok := g.(map[string]any); ok && g["connected"] == true {
			open = append(open, g)
		}
	}
	return open
}
