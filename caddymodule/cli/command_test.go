package cli_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strings"
	"testing"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	_ "github.com/conngate/conngate/caddymodule/cli"
	"github.com/conngate/conngate/caddymodule/control/controltest"
	"github.com/conngate/conngate/store"
)

// run runs `caddy connections args...` in-process, its command tree built
// as caddycmd builds it from the registered command, and returns what it
// printed and the code caddycmd.Main would exit with.
func run(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	registered, ok := caddycmd.Commands()["connections"]
	if !ok {
		t.Fatal("connections is not registered")
	}
	cmd := &cobra.Command{Use: registered.Name + " " + registered.Usage, Short: registered.Short, Long: registered.Long}
	registered.CobraFunc(cmd)
	root := &cobra.Command{Use: "caddy", SilenceUsage: true} // as caddycmd's root
	root.AddCommand(cmd)
	root.SetArgs(append([]string{"connections"}, args...))
	var out, errOut bytes.Buffer
	root.SetIn(strings.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(&errOut)
	code = exitCode(t, root.Execute())
	return out.String(), errOut.String(), code
}

// exitCode is what caddycmd.Main exits with for err: the ExitCode of
// Caddy's exit error (its type is unexported, hence reflect), else 1 for
// an error and 0 for none.
func exitCode(t *testing.T, err error) int {
	t.Helper()
	if err == nil {
		return 0
	}
	for e := err; e != nil; e = errors.Unwrap(e) {
		typ := reflect.TypeOf(e)
		if typ.Kind() == reflect.Pointer && typ.Elem().PkgPath() == "github.com/caddyserver/caddy/v2/cmd" && typ.Elem().Name() == "exitError" {
			return int(reflect.ValueOf(e).Elem().FieldByName("ExitCode").Int())
		}
	}
	return 1
}

// ackingGateway subscribes a gateway that acknowledges every change.
func ackingGateway(t *testing.T, srv *controltest.Server, id string) {
	srv.Gateway(t, id, id+"-1")
}

func TestConnections(t *testing.T) {
	srv := controltest.Start(t, controltest.Options{})
	ackingGateway(t, srv, "gw-1")
	shown := srv.Create(t, "org-1").Connection
	toDisable := srv.Create(t, "org-1").Connection
	toEnable := srv.Create(t, "org-1").Connection
	srv.Act(t, toEnable.ID, store.ActionDisable)
	toDelete := srv.Create(t, "org-1").Connection
	deleted := srv.Create(t, "org-1").Connection
	srv.Act(t, deleted.ID, store.ActionDelete)
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()

	// The endpoint and key come from the environment unless a case's env or
	// flags say otherwise.
	t.Setenv("CONNGATE_ENDPOINT", srv.URL)
	t.Setenv("CONNGATE_KEY", srv.AdminKey)
	t.Setenv("CONNGATE_ADMIN_KEY", "")

	tests := []cliCase{
		{name: "list prints a table", args: []string{"list", "--org", "org-1"},
			stdout: []string{"ID", "STATUS", shown.ID, deleted.ID}},
		{name: "list --json prints the API's page", args: []string{"list", "--org", "org-1", "--json"}, json: true,
			stdout: []string{`"connections": [`, `"id": "` + shown.ID + `"`}},
		{name: "list says how to get the next page", args: []string{"list", "--org", "org-1", "--limit", "1"},
			stdout: []string{"more: --cursor "}},
		{name: "show prints the connection", args: []string{"show", shown.ID},
			stdout: []string{shown.ID, "active", "Test app"}},
		{name: "show --json", args: []string{"show", shown.ID, "--json"}, json: true,
			stdout: []string{`"connection": {`, `"id": "` + shown.ID + `"`}},
		{name: "create prints the access token", args: []string{"create", "--name", "Zapier", "--org", "org-2", "--user", "user-1"},
			stdout: []string{"Zapier", "org-2", "access token (shown once"}},
		{name: "create --json", args: []string{"create", "--name", "Zapier", "--org", "org-2", "--user", "user-1", "--json"}, json: true,
			stdout: []string{`"access_token": "`}},
		{name: "disable --wait prints the gateways' acknowledgement", args: []string{"disable", toDisable.ID, "--wait"},
			stdout: []string{"disabled", "gateways: 1 acknowledged of 1"}},
		{name: "enable without --wait prints no gateway line", args: []string{"enable", toEnable.ID},
			stdout: []string{"active"}, notStdout: []string{"gateways:"}},
		{name: "delete not confirmed", stdin: "no\n", args: []string{"delete", toDelete.ID}, code: 6,
			stderr: []string{"cannot be undone", "Type yes to delete", "error: not deleted"}},
		{name: "an unconfirmed delete deletes nothing", args: []string{"show", toDelete.ID},
			stdout: []string{toDelete.ID, "active"}},
		{name: "delete confirmed", stdin: "yes\n", args: []string{"delete", toDelete.ID},
			stdout: []string{toDelete.ID, "deleted"}},
		{name: "audit prints the log", args: []string{"audit", "--connection", toEnable.ID},
			stdout: []string{"ACTOR", "api_key:admin", "disable", "enable"}},
		{name: "audit --json", args: []string{"audit", "--json"}, json: true,
			stdout: []string{`"entries": [`}},
		{name: "new-key prints a key and its entry", args: []string{"new-key", "--id", "alice", "--name", "Alice"},
			stdout: []string{`"id":"alice"`, `"name":"Alice"`},
			check: func(t *testing.T, stdout string) {
				key := regexp.MustCompile(`(?m)^[0-9a-f]{64}$`).FindString(stdout)
				sum := sha256.Sum256([]byte(key))
				if key == "" || !strings.Contains(stdout, `"key_sha256":"`+hex.EncodeToString(sum[:])+`"`) {
					t.Errorf("no key whose sha-256 is in the entry:\n%s", stdout)
				}
			}},
		{name: "new-key needs no endpoint key", env: map[string]string{"CONNGATE_KEY": ""}, args: []string{"new-key", "--id", "bob"},
			stdout: []string{`"id":"bob"`}},
		{name: "help", args: []string{"--help"}, stdout: []string{"Exit codes"}},

		{name: "not found", args: []string{"show", "conn_nope"}, code: 3,
			stderr: []string{"connection_not_found"}},
		{name: "disable a deleted connection", args: []string{"disable", deleted.ID}, code: 4,
			stderr: []string{"connection_deleted"}},
		{name: "enable a deleted connection", args: []string{"enable", deleted.ID, "--wait"}, code: 4,
			stderr: []string{"connection_deleted"}},
		{name: "wrong key", args: []string{"list", "--key", "not-the-admin-key"}, code: 5,
			stderr: []string{"unauthorized"}},
		{name: "missing key", env: map[string]string{"CONNGATE_KEY": ""}, args: []string{"list"}, code: 5,
			stderr: []string{"no API key"}},
		{name: "invalid request", args: []string{"list", "--limit", "100000"}, code: 2,
			stderr: []string{"invalid_request"}},
		{name: "missing flags", args: []string{"create", "--name", "x"}, code: 2,
			stderr: []string{"--name, --org and --user are required"}},
		{name: "new-key without --id", args: []string{"new-key"}, code: 2,
			stderr: []string{"--id"}},
		{name: "unknown flag", args: []string{"list", "--bogus"}, code: 2,
			stderr: []string{"unknown flag: --bogus", "run 'caddy connections --help' for usage"}},
		{name: "bad flag value", args: []string{"list", "--limit", "abc"}, code: 2,
			stderr: []string{`invalid argument "abc"`, "run 'caddy connections --help' for usage"}},
		{name: "unknown persistent flag", args: []string{"--bogus"}, code: 2,
			stderr: []string{"unknown flag: --bogus", "run 'caddy connections --help' for usage"}},
		{name: "unknown command", args: []string{"lst"}, code: 2,
			stderr: []string{`unknown command "lst"`, "run 'caddy connections --help' for usage"}},
		{name: "no command", args: nil, code: 2,
			stderr: []string{"a command is required", "run 'caddy connections --help' for usage"}},
		{name: "missing argument", args: []string{"show"}, code: 2,
			stderr: []string{"accepts 1 arg(s), received 0", "run 'caddy connections --help' for usage"}},
		{name: "extra argument", args: []string{"list", "org-1"}, code: 2,
			stderr: []string{"unknown command \"org-1\"", "run 'caddy connections --help' for usage"}},
		{name: "unreachable endpoint", args: []string{"list", "--endpoint", gone.URL}, code: 1,
			stderr: []string{"reaching " + gone.URL}},
	}
	runCases(t, tests)
}

// cliCase is one command run and what it must print and exit with.
type cliCase struct {
	name      string
	env       map[string]string
	stdin     string
	args      []string
	code      int
	stdout    []string // each printed to stdout
	notStdout []string // none printed to stdout
	stderr    []string // each printed to stderr
	json      bool     // stdout is JSON
	check     func(t *testing.T, stdout string)
}

// runCases runs each case as a subtest.
func runCases(t *testing.T, tests []cliCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			stdout, stderr, code := run(t, tt.stdin, tt.args...)
			if code != tt.code {
				t.Errorf("exit code %d, want %d", code, tt.code)
			}
			for _, s := range tt.stdout {
				if !strings.Contains(stdout, s) {
					t.Errorf("stdout lacks %q", s)
				}
			}
			for _, s := range tt.notStdout {
				if strings.Contains(stdout, s) {
					t.Errorf("stdout has %q", s)
				}
			}
			for _, s := range tt.stderr {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr lacks %q", s)
				}
			}
			if tt.json && !json.Valid([]byte(stdout)) {
				t.Errorf("stdout is not JSON")
			}
			// A failure is said once, on stderr; a success says nothing there
			// but the delete prompt.
			if n := strings.Count(stderr, "error:"); tt.code != 0 && n != 1 || tt.code == 0 && n != 0 {
				t.Errorf("%d error messages for exit code %d", n, tt.code)
			}
			if tt.check != nil {
				tt.check(t, stdout)
			}
			if t.Failed() {
				t.Logf("stdout:\n%s\nstderr:\n%s", stdout, stderr)
			}
		})
	}
}
