package cli_test

import (
	"context"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/conngate/conngate/caddymodule/control"
	"github.com/conngate/conngate/caddymodule/control/controltest"
	"github.com/conngate/conngate/caddymodule/controlapi"
	"github.com/conngate/conngate/store"
)

func TestApps(t *testing.T) {
	dir := t.TempDir()
	srv := controltest.Start(t, controltest.Options{Dir: dir})
	ackingGateway(t, srv, "gw-1")
	// The server's own store (the bbolt file is shared in the process), for
	// what only the OAuth flow makes: connections authorised through an app.
	b := &control.BoltStore{Path: filepath.Join(dir, "conngate.db")}
	if err := b.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Cleanup() })
	register := func(method store.AuthMethod) controlapi.App {
		var app controlapi.App
		body := controlapi.NewApp{ClientName: "Zapier", RedirectURIs: []string{"https://zapier.example/cb"}, TokenEndpointAuthMethod: method, OrgID: "org-1"}
		if code := srv.Do(t, srv.AdminKey, "POST", controlapi.PathApps, body, &app); code != 201 {
			t.Fatalf("registering: %d", code)
		}
		return app
	}
	shown, public, toDelete := register(store.AuthSecretBasic), register(store.AuthNone), register(store.AuthSecretPost)
	through, err := b.Store().Create(context.Background(), store.NewConnection{Name: "via Zapier", OrgID: "org-1", UserID: "u-1", AppID: toDelete.ClientID}, store.Actor{ID: "u-1"})
	if err != nil {
		t.Fatal(err)
	}

	t.Setenv("CONNGATE_ENDPOINT", srv.URL)
	t.Setenv("CONNGATE_KEY", srv.AdminKey)
	t.Setenv("CONNGATE_ADMIN_KEY", "")
	secret := regexp.MustCompile(`(?m)^[A-Za-z0-9_-]{43}$`)

	tests := []cliCase{
		{name: "create prints the client secret once", args: []string{"apps", "create", "--name", "Slack", "--org", "org-1", "--redirect-uri", "https://slack.example/cb", "--redirect-uri", "http://127.0.0.1:8080/cb"},
			stdout: []string{"CLIENT ID", "Slack", "client_secret_basic", "client secret (shown once"},
			check: func(t *testing.T, stdout string) {
				if !secret.MatchString(stdout) {
					t.Errorf("no secret printed")
				}
			}},
		{name: "create a public app", args: []string{"apps", "create", "--name", "CLI", "--org", "org-1", "--redirect-uri", "http://localhost/cb", "--auth-method", "none"},
			stdout: []string{"none", "public app: no client secret"}, notStdout: []string{"client secret (shown once"}},
		{name: "create --json", args: []string{"apps", "create", "--name", "Slack", "--org", "org-1", "--redirect-uri", "https://slack.example/cb", "--auth-method", "client_secret_post", "--json"}, json: true,
			stdout: []string{`"client_secret": "`, `"token_endpoint_auth_method": "client_secret_post"`}},
		{name: "list prints a table without secrets", args: []string{"apps", "list", "--org", "org-1"},
			stdout: []string{"CLIENT ID", shown.ClientID, public.ClientID},
			check: func(t *testing.T, stdout string) {
				if secret.MatchString(stdout) {
					t.Errorf("a secret printed")
				}
			}},
		{name: "list --json", args: []string{"apps", "list", "--json"}, json: true,
			stdout: []string{`"apps": [`, `"client_id": "` + shown.ClientID + `"`}},
		{name: "list says how to get the next page", args: []string{"apps", "list", "--limit", "1"},
			stdout: []string{"more: --cursor " + shown.ClientID}},
		{name: "show prints the app and its redirect URIs", args: []string{"apps", "show", shown.ClientID},
			stdout: []string{shown.ClientID, "Zapier", "https://zapier.example/cb"}},
		{name: "secret rotation not confirmed", stdin: "no\n", args: []string{"apps", "secret", shown.ClientID}, code: 6,
			stderr: []string{"stops working at once", "error: not rotated"}},
		{name: "secret rotation", stdin: "yes\n", args: []string{"apps", "secret", shown.ClientID},
			stdout: []string{shown.ClientID, "client secret (shown once"},
			check: func(t *testing.T, stdout string) {
				if !secret.MatchString(stdout) {
					t.Errorf("no secret printed")
				}
			}},
		{name: "a public app has no secret to rotate", args: []string{"apps", "secret", public.ClientID, "--yes"}, code: 4,
			stderr: []string{"public_client"}},
		{name: "delete not confirmed", stdin: "no\n", args: []string{"apps", "delete", toDelete.ClientID}, code: 6,
			stderr: []string{"Every connection made through it is deleted too", "Type yes to delete", "error: not deleted"}},
		{name: "an unconfirmed delete deletes nothing", args: []string{"show", through.ID},
			stdout: []string{through.ID, "active"}},
		{name: "delete --wait deletes the app's connections on every gateway", args: []string{"apps", "delete", toDelete.ClientID, "--yes", "--wait"},
			stdout: []string{"connections deleted with it: 1", through.ID, "deleted", "gateways: 1 acknowledged of 1"}},
		{name: "the app's connection is deleted", args: []string{"show", through.ID},
			stdout: []string{through.ID, "deleted"}},
		{name: "delete --json", args: []string{"apps", "delete", public.ClientID, "--yes", "--json"}, json: true,
			stdout: []string{`"app": {`, `"connections": []`}},
		{name: "unknown app", args: []string{"apps", "show", "app_nope"}, code: 3,
			stderr: []string{"app_not_found"}},
		{name: "delete an unknown app", args: []string{"apps", "delete", toDelete.ClientID, "--yes"}, code: 3,
			stderr: []string{"app_not_found"}},
		{name: "an invalid redirect URI", args: []string{"apps", "create", "--name", "x", "--org", "org-1", "--redirect-uri", "http://x.example/cb"}, code: 2,
			stderr: []string{"invalid_request", "redirect_uris"}},
		{name: "missing flags", args: []string{"apps", "create", "--name", "x", "--org", "org-1"}, code: 2,
			stderr: []string{"--name, --org and --redirect-uri are required"}},
		{name: "wrong key", args: []string{"apps", "list", "--key", "not-the-admin-key"}, code: 5,
			stderr: []string{"unauthorized"}},
		{name: "no apps command", args: []string{"apps"}, code: 2,
			stderr: []string{"apps needs a command", "run 'caddy connections --help' for usage"}},
		{name: "unknown apps command", args: []string{"apps", "lst"}, code: 2,
			stderr: []string{`unknown command "lst"`}},
		{name: "unknown flag", args: []string{"apps", "list", "--bogus"}, code: 2,
			stderr: []string{"unknown flag: --bogus"}},
		{name: "missing argument", args: []string{"apps", "show"}, code: 2,
			stderr: []string{"accepts 1 arg(s), received 0"}},
		{name: "help lists the apps commands", args: []string{"apps", "--help"},
			stdout: []string{"list", "create", "delete", "secret"}},
	}
	runCases(t, tests)
}
