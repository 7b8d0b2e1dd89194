package tests

import (
	"bytes"
	"encoding/json"
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// cli runs `caddy connections ...` against the demo's control endpoint and
// returns its output and exit code.
func (d *demo) cli(t *testing.T, stdin string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(caddyBin, append([]string{"connections"}, args...)...)
	cmd.Env = append(IsolatedEnv(d.dir), "CONNGATE_ENDPOINT="+d.control, "CONNGATE_KEY="+d.adminKey)
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
	if out, code := d.cli(t, "", "delete", id, "--yes"); code != 0 || !strings.Contains(out, "deleted") {
		t.Fatalf("delete --yes: %d %s", code, out)
	}

	// Each exit code, as the caddy process ends with it, and its message
	// said once (the CLI's tests cover every case in-process).
	for _, tt := range []struct {
		name string
		args []string
		code int
	}{
		{"enable a deleted connection", []string{"enable", id}, 4},
		{"show an unknown connection", []string{"show", "conn_nope"}, 3},
		{"wrong key", []string{"list", "--org", "org-1", "--key", "not-the-admin-key-at-all"}, 5},
		{"unknown command", []string{"lst"}, 2},
		{"bad flag value", []string{"list", "--limit", "abc"}, 2},
		{"unreachable endpoint", []string{"list", "--endpoint", "http://127.0.0.1:1"}, 1},
	} {
		if out, code := d.cli(t, "", tt.args...); code != tt.code || strings.Count(out, "error:") != 1 {
			t.Errorf("%s: exit %d, want %d, and one error message\n%s", tt.name, code, tt.code, out)
		}
	}
}
