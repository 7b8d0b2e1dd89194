package tests

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// load posts caddyfile to the demo's admin endpoint, as `caddy reload`
// does, and returns the status and the answer.
func (d *demo) load(t *testing.T, caddyfile string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, d.admin+"/load", bytes.NewReader([]byte(caddyfile)))
	req.Header.Set("Content-Type", "text/caddyfile")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	http.DefaultClient.CloseIdleConnections() // a reload closes the old servers' connections
	return resp.StatusCode, string(msg)
}

func (d *demo) createConnection(t *testing.T) (id, token string) {
	t.Helper()
	code, created := d.api(t, "POST", "/v1/connections", `{"name":"e2e","org_id":"org-1","user_id":"user-1"}`)
	if code != http.StatusCreated {
		t.Fatalf("create: %d %v", code, created)
	}
	return created["connection"].(map[string]any)["id"].(string), created["access_token"].(string)
}

// waitMetric waits until the demo's metrics have a line with series and
// returns every line of that metric's name.
func (d *demo) waitMetric(t *testing.T, series string) string {
	t.Helper()
	name, _, _ := strings.Cut(series, "{")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp, err := http.Get(d.admin + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), series) {
			return grepLines(string(b), name+"{")
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s in the metrics:\n%s", series, grepLines(string(b), name))
		}
	}
}

// A client's `Connection: X-Connection-Id` would make reverse_proxy drop the
// header the gate set; the upstream gets it all the same.
func TestConnectionHeaderDoesNotHideTheConnectionID(t *testing.T) {
	d := newDemo(t)
	d.start(t)
	id, token := d.createConnection(t)
	req, _ := http.NewRequest(http.MethodGet, d.gateway+"/v1/data", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Connection", "X-Connection-Id, X-User-Id")
	if code, body := do(t, req); code != 200 {
		t.Fatalf("gateway answered %d %v", code, body)
	}
	if seen := d.upstream.requests(); len(seen) != 1 || seen[0] != id {
		t.Fatalf("upstream saw X-Connection-Id %q, want %s", seen, id)
	}
}

// `caddy validate` of a gate's config on a host where the control endpoint
// runs: it exits 0 at once, and opens no stream (no gateway appears on the
// control endpoint) and fetches no key set.
func TestValidateStartsNothing(t *testing.T) {
	d := newDemo(t)
	d.start(t)
	var fetches atomic.Int32
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		io.WriteString(w, `{"keys":[]}`)
	}))
	defer jwks.Close()
	dir := t.TempDir()
	writeSite(t, dir, fmt.Sprintf(`{
	admin off
}
:%d {
	connection_gate {
		control_url %s
		control_key {env.CONNGATE_GATEWAY_KEY}
		jwks_url %s
		gateway_id validated-only
	}
	respond ok
}
`, freePort(t), d.control, jwks.URL))
	began := time.Now()
	out, err := runCaddy(t, dir, d.env, "validate", "--config", "Caddyfile", "--adapter", "caddyfile")
	took := time.Since(began)
	if err != nil || !strings.Contains(out, "Valid configuration") {
		t.Fatalf("validate: %v\n%s", err, out)
	}
	if took > 10*time.Second {
		t.Errorf("validate took %s", took)
	}
	if n := fetches.Load(); n != 0 {
		t.Errorf("validate fetched the key set %d times", n)
	}
	// The control endpoint keeps a gateway whose stream ended for a grace
	// period: had validate opened a stream, it would be listed now.
	_, gws := d.api(t, "GET", "/v1/gateways", "")
	if list, _ := gws["gateways"].([]any); len(list) != 1 || strings.Contains(fmt.Sprint(gws), "validated-only") {
		t.Errorf("gateways after validate: %v, want only the running one", gws)
	}

	// A control endpoint's config on the store the running Caddy holds:
	// validate cannot open it, and says so within seconds instead of
	// waiting for the lock.
	writeSite(t, dir, fmt.Sprintf(`{
	admin off
}
:%d {
	connection_control {
		store bolt %s
		api_key admin {env.CONNGATE_ADMIN_KEY}
	}
}
`, freePort(t), filepath.Join(d.dir, "data", "conngate.db")))
	began = time.Now()
	out, err = runCaddy(t, dir, d.env, "validate", "--config", "Caddyfile", "--adapter", "caddyfile")
	if took := time.Since(began); err == nil || !strings.Contains(out, "locked by another process") || took > 10*time.Second {
		t.Fatalf("validate of a store in use: %v after %s\n%s", err, took, out)
	}
}

// A reload that drops a stream drops its metric series. A reload keeps the
// change stream and the open store: one that changes their settings is
// refused with the setting named, and the running config goes on.
func TestReloadOfSharedSettings(t *testing.T) {
	d := newDemo(t)
	d.start(t)
	_, token := d.createConnection(t)
	const gateEnd = "\t\taudience conngate-demo\n\t}\n\treverse_proxy"
	current := d.caddyfile

	// First: after a refused reload, Caddy's /metrics serves the refused
	// config's registry, without the gate's collectors.
	t.Run("metric series of a stream that is gone", func(t *testing.T) {
		series := `conngate_stream_connected{control_url="` + d.control + `",gateway_id=`
		if got := d.waitMetric(t, series+`"`); strings.Count(got, series) != 1 {
			t.Fatalf("stream series before the reload:\n%s", got)
		}
		renamed := strings.Replace(current, gateEnd, "\t\taudience conngate-demo\n\t\tgateway_id renamed\n\t}\n\treverse_proxy", 1)
		if code, msg := d.load(t, renamed); code != 200 {
			t.Fatalf("reload: %d %s", code, msg)
		}
		current = renamed
		if got := d.waitMetric(t, series+`"renamed"`); strings.Count(got, series) != 1 {
			t.Fatalf("stream series after the reload renamed the gateway:\n%s\nwant only gateway_id=\"renamed\"", got)
		}
	})

	store := "store bolt " + filepath.Join(d.dir, "data", "conngate.db")
	reloads := []struct {
		name, old, new, want string
	}{
		{"stream_idle_timeout", "\t\tgateway_id renamed\n", "\t\tgateway_id renamed\n\t\tstream_idle_timeout 20s\n",
			"stream_idle_timeout 20s: the change stream to " + d.control},
		{"change_log_size", store, store + " {\n\t\t\tchange_log_size 5000\n\t\t}", "change_log_size 5000: store "},
	}
	for _, r := range reloads {
		t.Run(r.name, func(t *testing.T) {
			if strings.Count(current, r.old) != 1 {
				t.Fatalf("the demo's Caddyfile lacks %q", r.old)
			}
			code, msg := d.load(t, strings.Replace(current, r.old, r.new, 1))
			if code != http.StatusBadRequest || !strings.Contains(msg, r.want) {
				t.Fatalf("reload: %d %s, want 400 naming %q", code, msg, r.want)
			}
			if code, body := d.call(t, token); code != 200 {
				t.Fatalf("after the refused reload: %d %v", code, body)
			}
		})
	}
}
