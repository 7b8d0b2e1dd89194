// Package cli is `caddy connections`: the control API from a terminal or a
// script, over HTTP.
package cli

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/conngate/conngate/caddymodule/controlapi"
	"github.com/conngate/conngate/store"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "connections",
		Usage: "list|show|create|disable|enable|delete|audit|apps|new-key [flags]",
		Short: "Manages conngate connections through a control endpoint",
		Long: `Manages conngate connections through the control endpoint's REST API.

The endpoint and key come from --endpoint and --key, or from the environment:
CONNGATE_ENDPOINT (default http://127.0.0.1:9180) and CONNGATE_KEY (falling back
to CONNGATE_ADMIN_KEY). Output is a table; --json prints the API's JSON.

'caddy connections apps' registers and manages the OAuth 2.0 apps through which
people authorise connections.

Exit codes: 0 done, 1 failed (endpoint unreachable or an unexpected answer),
2 usage or invalid request, 3 not found, 4 the connection is deleted (or the
app is public: it has no secret to rotate), 5 no key, wrong key or missing
right, 6 delete (or secret rotation) not confirmed.`,
		CobraFunc: setUp,
	})
}

func setUp(cmd *cobra.Command) {
	// Every failure is printed here, once, and its exit code handed back to
	// Caddy (see exitWith); cobra prints nothing of its own.
	cmd.SilenceErrors = true
	// Usage errors exit 2 and say so: an unknown subcommand, a wrong number
	// of arguments, a bad flag. (Left to cobra, a typo would print help and
	// exit 0, and a bad flag would exit 1.)
	usageError := func(c *cobra.Command, err error) error {
		fmt.Fprintln(c.ErrOrStderr(), "error:", err)
		fmt.Fprintln(c.ErrOrStderr(), "run 'caddy connections --help' for usage")
		return exitWith(c, exitUsage, err)
	}
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(c *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usageError(c, fmt.Errorf("unknown command %q", args[0]))
		}
		return usageError(c, errors.New("a command is required: list, show, create, disable, enable, delete, audit, apps or new-key"))
	}
	cmd.SetFlagErrorFunc(usageError)
	pf := cmd.PersistentFlags()
	pf.String("endpoint", "", "control endpoint URL (env CONNGATE_ENDPOINT, default http://127.0.0.1:9180)")
	pf.String("key", "", "API key (env CONNGATE_KEY, then CONNGATE_ADMIN_KEY)")
	pf.Bool("json", false, "print JSON instead of a table")

	addTo := func(parent *cobra.Command, use, short string, args cobra.PositionalArgs, run func(*session, []string) (int, error), flags func(*cobra.Command)) {
		sub := &cobra.Command{Use: use, Short: short, SilenceUsage: true, SilenceErrors: true}
		sub.Args = func(c *cobra.Command, a []string) error {
			if err := args(c, a); err != nil {
				return usageError(c, err)
			}
			return nil
		}
		sub.SetFlagErrorFunc(usageError)
		if flags != nil {
			flags(sub)
		}
		sub.RunE = func(c *cobra.Command, argv []string) error {
			s, code, err := newSession(c)
			if err == nil {
				code, err = run(s, argv)
			}
			if err != nil {
				fmt.Fprintln(c.ErrOrStderr(), "error:", err)
			}
			return exitWith(c, code, err)
		}
		parent.AddCommand(sub)
	}
	add := func(use, short string, args cobra.PositionalArgs, run func(*session, []string) (int, error), flags func(*cobra.Command)) {
		addTo(cmd, use, short, args, run, flags)
	}
	waitFlag := func(c *cobra.Command) {
		c.Flags().Bool("wait", false, "return once every gateway has applied the change")
	}

	add("list", "List connections", cobra.NoArgs, list, func(c *cobra.Command) {
		c.Flags().String("org", "", "organisation id")
		c.Flags().String("status", "", "active, disabled or deleted")
		c.Flags().Int("limit", 0, "page size (1-500)")
		c.Flags().String("cursor", "", "next_cursor of a previous page")
	})
	add("show <id>", "Show one connection", cobra.ExactArgs(1), show, nil)
	add("create", "Create a connection and print its access token", cobra.NoArgs, create, func(c *cobra.Command) {
		c.Flags().String("name", "", "name of the app (required)")
		c.Flags().String("org", "", "organisation id (required)")
		c.Flags().String("user", "", "user id the connection acts for (required)")
	})
	add("disable <id>", "Disable a connection: its token stops working at once", cobra.ExactArgs(1), change(store.ActionDisable), waitFlag)
	add("enable <id>", "Enable a connection: the same token works again", cobra.ExactArgs(1), change(store.ActionEnable), waitFlag)
	add("delete <id>", "Delete a connection for good (asks first)", cobra.ExactArgs(1), change(store.ActionDelete), func(c *cobra.Command) {
		waitFlag(c)
		c.Flags().Bool("yes", false, "do not ask for confirmation")
	})
	add("audit", "Show the audit log, newest first", cobra.NoArgs, audit, func(c *cobra.Command) {
		c.Flags().String("org", "", "organisation id")
		c.Flags().String("connection", "", "connection id")
		c.Flags().Int("limit", 0, "page size (1-500)")
		c.Flags().String("cursor", "", "next_cursor of a previous page")
	})
	setUpApps(cmd, usageError, addTo)
	add("new-key", "Print a new random key and its principals_file entry", cobra.NoArgs, newKey, func(c *cobra.Command) {
		c.Flags().String("id", "", "principal id for the entry (required)")
		c.Flags().String("name", "", "display name for the entry")
	})
}

func list(s *session, _ []string) (int, error) {
	var page controlapi.ConnectionPage
	path := s.pagePath(controlapi.PathConnections, map[string]string{"org": "org_id", "status": "status"})
	raw, code, err := s.call(http.MethodGet, path, nil, &page)
	if err != nil {
		return code, err
	}
	if s.json {
		return s.print(raw)
	}
	s.table(connectionRows(page.Connections...)...)
	if page.NextCursor != "" {
		fmt.Fprintln(s.out, "more: --cursor", page.NextCursor)
	}
	return exitOK, nil
}

func show(s *session, args []string) (int, error) {
	var body controlapi.ConnectionBody
	raw, code, err := s.call(http.MethodGet, controlapi.ConnectionPath(args[0]), nil, &body)
	if err != nil {
		return code, err
	}
	if s.json {
		return s.print(raw)
	}
	s.table(connectionRows(body.Connection)...)
	return exitOK, nil
}

func create(s *session, _ []string) (int, error) {
	var n store.NewConnection
	n.Name, _ = s.cmd.Flags().GetString("name")
	n.OrgID, _ = s.cmd.Flags().GetString("org")
	n.UserID, _ = s.cmd.Flags().GetString("user")
	if n.Name == "" || n.OrgID == "" || n.UserID == "" {
		return exitUsage, errors.New("--name, --org and --user are required")
	}
	var body controlapi.Created
	raw, code, err := s.call(http.MethodPost, controlapi.PathConnections, n, &body)
	if err != nil {
		return code, err
	}
	if s.json {
		return s.print(raw)
	}
	s.table(connectionRows(body.Connection)...)
	fmt.Fprintln(s.out, "\naccess token (shown once; give it to the app):")
	fmt.Fprintln(s.out, body.AccessToken)
	return exitOK, nil
}

func change(action store.Action) func(*session, []string) (int, error) {
	return func(s *session, args []string) (int, error) {
		id := args[0]
		if action == store.ActionDelete && !s.confirmed(fmt.Sprintf("Delete connection %s? This cannot be undone: the connection cannot be restored and its app loses access for good.\nType yes to delete: ", id)) {
			return exitAborted, errors.New("not deleted")
		}
		method, path := http.MethodPost, controlapi.ActionPath(id, string(action))
		if action == store.ActionDelete {
			method, path = http.MethodDelete, controlapi.ConnectionPath(id)
		}
		wait, _ := s.cmd.Flags().GetBool("wait")
		if wait {
			path += "?wait=applied"
		}
		// Without ?wait the answer is a ConnectionBody, which decodes into
		// Applied with the gateway fields left empty (and not printed).
		var body controlapi.Applied
		raw, code, err := s.call(method, path, nil, &body)
		if err != nil {
			return code, err
		}
		if s.json {
			return s.print(raw)
		}
		s.table(connectionRows(body.Connection)...)
		if wait {
			fmt.Fprintf(s.out, "\ngateways: %d acknowledged of %d", body.Acknowledged, body.Gateways)
			if len(body.Pending) > 0 {
				fmt.Fprintf(s.out, " (pending: %s)", strings.Join(body.Pending, ", "))
			}
			fmt.Fprintln(s.out)
		}
		return exitOK, nil
	}
}

func audit(s *session, _ []string) (int, error) {
	var page controlapi.AuditPage
	path := s.pagePath(controlapi.PathAudit, map[string]string{"org": "org_id", "connection": "connection_id"})
	raw, code, err := s.call(http.MethodGet, path, nil, &page)
	if err != nil {
		return code, err
	}
	if s.json {
		return s.print(raw)
	}
	rows := [][]string{{"TIME", "ACTOR", "ACTION", "CONNECTION", "FROM", "TO", "REQUEST"}}
	for _, e := range page.Entries {
		rows = append(rows, []string{e.Time.Format("2006-01-02 15:04:05"), e.ActorID, e.Action, e.ConnectionID, string(e.FromStatus), string(e.ToStatus), e.RequestID})
	}
	s.table(rows...)
	if page.NextCursor != "" {
		fmt.Fprintln(s.out, "more: --cursor", page.NextCursor)
	}
	return exitOK, nil
}

func newKey(s *session, _ []string) (int, error) {
	id, _ := s.cmd.Flags().GetString("id")
	name, _ := s.cmd.Flags().GetString("name")
	if err := store.ValidateID("--id", id); err != nil {
		return exitUsage, err
	}
	b := make([]byte, 32)
	rand.Read(b) // never fails
	key := hex.EncodeToString(b)
	sum := sha256.Sum256([]byte(key))
	entry, _ := json.Marshal(map[string]any{"id": id, "name": name, "key_sha256": hex.EncodeToString(sum[:]), "roles": map[string]string{}})
	if s.json {
		out, _ := json.Marshal(map[string]any{"key": key, "principal": json.RawMessage(entry)})
		return s.print(out)
	}
	fmt.Fprintln(s.out, "key (give it to", id+"; it is not stored anywhere):")
	fmt.Fprintln(s.out, key)
	fmt.Fprintln(s.out, "\nprincipals_file entry (add the roles, then caddy reload):")
	fmt.Fprintln(s.out, string(entry))
	return exitOK, nil
}

func connectionRows(conns ...store.Connection) [][]string {
	rows := [][]string{{"ID", "NAME", "ORG", "USER", "STATUS", "CREATED", "UPDATED"}}
	for _, c := range conns {
		rows = append(rows, []string{c.ID, c.Name, c.OrgID, c.UserID, string(c.Status),
			c.CreatedAt.Format("2006-01-02 15:04:05"), c.UpdatedAt.Format("2006-01-02 15:04:05")})
	}
	return rows
}
