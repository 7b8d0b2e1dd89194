package tests

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// cli runs `caddy connections ...` against the demo's control endpoint and
// returns its output and exit code.
func (d *demo) cli(t *testing.T, stdin string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(caddyBin, append([]string{"connections"}, args...)...)
	cmd.Env = append(isolatedEnv(d.dir), "CONNGATE_ENDPOINT="+d.control, "CONNGATE_KEY="+d.adminKey)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &exit):
		return out.String(), exit.ExitCode()
	}
	t.Fatal(err)
	return "", -1
}

// The CLI, as the real binary's subcommand, against a running endpoint.
func TestCLI(t *testing.T) {
	d := newDemo(t)
	d.start(t)

	out, code := d.cli(t, "", "create", "--name", "Zapier", "--org", "org-1", "--user", "user-1", "--json")
	if code != 0 {
		t.Fatalf("create: %d %s", code, out)
	}
	var created struct {
		Connection  struct{ ID string }
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal([]byte(out), &created); err != nil || created.AccessToken == "" {
		t.Fatalf("create --json: %v %s", err, out)
	}
	id := created.Connection.ID

	if out, code := d.cli(t, "", "list", "--org", "org-1"); code != 0 || !strings.Contains(out, id) || !strings.Contains(out, "STATUS") {
		t.Fatalf("list: %d %s", code, out)
	}
	if out, code := d.cli(t, "", "disable", id, "--wait"); code != 0 || !strings.Contains(out, "disabled") || !strings.Contains(out, "1 acknowledged of 1") {
		t.Fatalf("disable --wait: %d %s", code, out)
	}
	if code, _ := d.call(t, created.AccessToken); code != 401 {
		t.Fatalf("gateway after CLI disable: %d", code)
	}
	if out, code := d.cli(t, "", "show", id); code != 0 || !strings.Contains(out, "disabled") {
		t.Fatalf("show: %d %s", code, out)
	}

	// delete asks, says it cannot be undone, and does nothing without "yes".
	out, code = d.cli(t, "no\n", "delete", id)
	if code != 6 || !strings.Contains(out, "cannot be undone") {
		t.Fatalf("delete answered no: %d %s", code, out)
	}
	if out, _ := d.cli(t, "", "show", id); !strings.Contains(out, "disabled") {
		t.Fatalf("unconfirmed delete deleted: %s", out)
	}
	if out, code := d.cli(t, "", "delete", id, "--yes"); code != 0 || !strings.Contains(out, "deleted") {
		t.Fatalf("delete --yes: %d %s", code, out)
	}

	for _, tt := range []struct {
		name string
		args []string
		code int
	}{
		{"enable a deleted connection", []string{"enable", id}, 4},
		{"show an unknown connection", []string{"show", "conn_nope"}, 3},
		{"wrong key", []string{"list", "--org", "org-1", "--key", "not-the-admin-key-at-all"}, 5},
		{"missing flags", []string{"create", "--name", "x"}, 2},
		{"missing argument", []string{"show"}, 2},
		{"unknown command", []string{"lst"}, 2},
		{"no command", []string{}, 2},
		{"unknown flag", []string{"list", "--bogus"}, 2},
		{"bad flag value", []string{"list", "--limit", "abc"}, 2},
		{"unreachable endpoint", []string{"list", "--endpoint", "http://127.0.0.1:1"}, 1},
	} {
		if out, code := d.cli(t, "", tt.args...); code != tt.code {
			t.Errorf("%s: exit %d, want %d\n%s", tt.name, code, tt.code, out)
		}
	}

	noKey := exec.Command(caddyBin, "connections", "list", "--org", "org-1")
	noKey.Env = append(isolatedEnv(d.dir), "CONNGATE_ENDPOINT="+d.control)
	if out, err := noKey.CombinedOutput(); noKey.ProcessState.ExitCode() != 5 || !strings.Contains(string(out), "no API key") {
		t.Errorf("no key: exit %d, %v\n%s", noKey.ProcessState.ExitCode(), err, out)
	}

	if out, code := d.cli(t, "", "audit", "--connection", id); code != 0 || strings.Count(out, id) != 3 || !strings.Contains(out, "api_key:admin") {
		t.Fatalf("audit: %d %s", code, out)
	}

	out, code = d.cli(t, "", "new-key", "--id", "alice", "--name", "Alice")
	key := regexp.MustCompile(`(?m)^[0-9a-f]{64}$`).FindString(out)
	sum := sha256.Sum256([]byte(key))
	if code != 0 || key == "" || !strings.Contains(out, hex.EncodeToString(sum[:])) || !strings.Contains(out, `"id":"alice"`) {
		t.Fatalf("new-key: %d %s", code, out)
	}
}
