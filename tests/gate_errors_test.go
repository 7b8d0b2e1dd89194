package tests

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/conngate/conngate/caddymodule/control/controltest"
)

// A gateway's refusals go to the site's handle_errors, with the reason in
// placeholders and the RFC 6750 challenge still set; a gateway without
// handle_errors keeps its JSON answer.
func TestGateRefusalsReachHandleErrors(t *testing.T) {
	dir := t.TempDir()
	custom, plain, ctl := freePort(t), freePort(t), freePort(t)
	control := fmt.Sprintf("http://127.0.0.1:%d", ctl)
	gate := fmt.Sprintf(`connection_gate {
		control_url %s
		control_key {env.CONNGATE_GATEWAY_KEY}
	}
	respond "through"`, control)
	writeSite(t, dir, fmt.Sprintf(`{
	admin off
}
:%d {
	bind 127.0.0.1
	%s
	handle_errors {
		respond "custom {http.auth.deny.reason} {http.auth.deny.error} {http.auth.deny.error_description}" {http.error.status_code}
	}
}
:%d {
	bind 127.0.0.1
	%s
}
:%d {
	bind 127.0.0.1
	connection_control {
		store bolt %s
		api_key admin {env.CONNGATE_ADMIN_KEY}
		api_key gateway {env.CONNGATE_GATEWAY_KEY}
	}
}
`, custom, gate, plain, gate, ctl, filepath.Join(dir, "conngate.db")))
	adminKey := controltest.RandomKey()
	env := IsolatedEnv(dir, "CONNGATE_ADMIN_KEY="+adminKey, "CONNGATE_GATEWAY_KEY="+controltest.RandomKey())
	startCaddy(t, dir, env, control+"/.well-known/jwks.json")

	admin := func(method, path, body string) map[string]any {
		t.Helper()
		req, _ := http.NewRequest(method, control+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+adminKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode >= 300 {
			t.Fatalf("%s %s: %d %v", method, path, resp.StatusCode, err)
		}
		return out
	}
	create := func() (token, id string) {
		t.Helper()
		c := admin("POST", "/v1/connections", `{"name":"App","org_id":"org-1","user_id":"user-1"}`)
		return c["access_token"].(string), c["connection"].(map[string]any)["id"].(string)
	}
	active, _ := create()
	disabled, id := create()
	admin("POST", "/v1/connections/"+id+"/disable", "")

	type answer struct {
		status                               int
		body, challenge, ctype, cacheControl string
	}
	call := func(port int, token string) answer {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/data", port), nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return answer{resp.StatusCode, string(b), resp.Header.Get("WWW-Authenticate"), resp.Header.Get("Content-Type"),
			resp.Header.Get("Cache-Control")}
	}
	// The gateways fetch their keys once the control endpoint in the same
	// Caddy listens: wait until both let an active connection through.
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if call(custom, active).status == 200 && call(plain, active).status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("an active connection is not let through: %+v %+v", call(custom, active), call(plain, active))
		}
	}

	disabledChallenge := `Bearer realm="conngate", error="invalid_token", error_description="connection disabled"`
	tests := []struct {
		name      string
		port      int
		token     string
		status    int
		body      string
		challenge string
	}{
		{"handle_errors, no token", custom, "", 401, "custom token_missing unauthorized ", `Bearer realm="conngate"`},
		{"handle_errors, malformed", custom, "a b", 400, "custom authorization_malformed invalid_request more than one token",
			`Bearer realm="conngate", error="invalid_request", error_description="more than one token"`},
		{"handle_errors, disabled connection", custom, disabled, 401, "custom connection_disabled invalid_token connection disabled", disabledChallenge},
		{"handle_errors, active connection", custom, active, 200, "through", ""},
		{"default, no token", plain, "", 401, `{"error":"unauthorized","reason":"token_missing"}` + "\n", `Bearer realm="conngate"`},
		{"default, disabled connection", plain, disabled, 401,
			`{"error":"invalid_token","error_description":"connection disabled","reason":"connection_disabled"}` + "\n", disabledChallenge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := call(tt.port, tt.token)
			if got.status != tt.status || got.body != tt.body || got.challenge != tt.challenge {
				t.Fatalf("got %d %q WWW-Authenticate %q; want %d %q WWW-Authenticate %q", got.status, got.body, got.challenge, tt.status, tt.body, tt.challenge)
			}
			if tt.status == 200 {
				return
			}
			if got.cacheControl != "no-store" {
				t.Errorf("Cache-Control %q", got.cacheControl)
			}
			if isJSON := strings.HasPrefix(tt.body, "{"); isJSON != (got.ctype == "application/json") {
				t.Errorf("Content-Type %q", got.ctype)
			}
		})
	}
}
