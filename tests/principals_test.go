package tests

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/conngate/conngate/caddymodule/control/controltest"
)

// Principals and roles through the real binary: an owner manages its own
// organisation, a viewer may only look, another organisation's connection
// is not found, and a reload picks up a changed principals file.
func TestPrincipalsThroughTheBinary(t *testing.T) {
	dir := t.TempDir()
	owner, viewer := controltest.RandomKey(), controltest.RandomKey()
	writeFile := func(viewerRole string) {
		digest := func(k string) string { s := sha256.Sum256([]byte(k)); return hex.EncodeToString(s[:]) }
		body := fmt.Sprintf(`{"principals": [
			{"id": "olivia", "name": "Olivia", "key_sha256": %q, "roles": {"org-1": "owner"}},
			{"id": "victor", "name": "Victor", "key_sha256": %q, "roles": {"org-1": %q}}]}`, digest(owner), digest(viewer), viewerRole)
		if err := os.WriteFile(filepath.Join(dir, "principals.json"), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeFile("viewer")
	ctl, adm := freePort(t), freePort(t)
	d := &demo{control: fmt.Sprintf("http://127.0.0.1:%d", ctl), adminKey: controltest.RandomKey()}
	caddyfile := fmt.Sprintf(`{
	admin 127.0.0.1:%d
}
:%d {
	bind 127.0.0.1
	connection_control {
		store bolt %s
		api_key admin {env.CONNGATE_ADMIN_KEY}
		principals_file %s
	}
}
`, adm, ctl, filepath.Join(dir, "conngate.db"), filepath.Join(dir, "principals.json"))
	writeSite(t, dir, caddyfile)
	startCaddy(t, dir, IsolatedEnv(dir, "CONNGATE_ADMIN_KEY="+d.adminKey), d.control+"/.well-known/jwks.json")

	as := func(key, method, path, body string) (int, map[string]any) {
		req, _ := http.NewRequest(method, d.control+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		return do(t, req)
	}
	code, created := as(owner, "POST", "/v1/connections", `{"name":"App","org_id":"org-1","user_id":"u-1"}`)
	if code != 201 {
		t.Fatalf("owner create: %d %v", code, created)
	}
	id := created["connection"].(map[string]any)["id"].(string)
	_, other := d.api(t, "POST", "/v1/connections", `{"name":"App","org_id":"org-2","user_id":"u-2"}`)
	otherID := other["connection"].(map[string]any)["id"].(string)

	for _, tt := range []struct {
		who, key, method, path string
		want                   int
	}{
		{"viewer views", viewer, "GET", "/v1/connections/" + id, 200},
		{"viewer disables", viewer, "POST", "/v1/connections/" + id + "/disable", 403},
		{"owner views another organisation's", owner, "GET", "/v1/connections/" + otherID, 404},
		{"owner disables another organisation's", owner, "POST", "/v1/connections/" + otherID + "/disable", 404},
		{"owner disables", owner, "POST", "/v1/connections/" + id + "/disable", 200},
		{"owner reads the audit log", owner, "GET", "/v1/audit", 200},
	} {
		if code, body := as(tt.key, tt.method, tt.path, ""); code != tt.want {
			t.Errorf("%s: %d %v, want %d", tt.who, code, body, tt.want)
		}
	}

	// Promote Victor and reload: the new role applies.
	writeFile("manager")
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/load", adm), strings.NewReader(caddyfile))
	req.Header.Set("Content-Type", "text/caddyfile")
	req.Header.Set("Cache-Control", "must-revalidate")
	if code, body := do(t, req); code != 200 {
		t.Fatalf("reload: %d %v", code, body)
	}
	// The old config's server closed its connections; do not reuse one.
	// For a moment after /load answers, the old server may still accept a
	// connection on the shared listener and then close it unanswered (a
	// CI run saw "connection reset by peer"): retry what never got an
	// answer, as any client would.
	http.DefaultClient.CloseIdleConnections()
	var resp *http.Response
	var err error
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		req, _ := http.NewRequest(http.MethodPost, d.control+"/v1/connections/"+id+"/enable", nil)
		req.Header.Set("Authorization", "Bearer "+viewer)
		if resp, err = http.DefaultClient.Do(req); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("after promotion and reload: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("after promotion and reload: %s", resp.Status)
	}
}
