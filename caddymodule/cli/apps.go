package cli

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/conngate/conngate/caddymodule/controlapi"
	"github.com/conngate/conngate/store"
)

// adder adds a subcommand to parent, as setUp does for every command.
type adder func(parent *cobra.Command, use, short string, args cobra.PositionalArgs, run func(*session, []string) (int, error), flags func(*cobra.Command))

// setUpApps adds `caddy connections apps list|show|create|delete|secret`.
func setUpApps(cmd *cobra.Command, usageError func(*cobra.Command, error) error, add adder) {
	apps := &cobra.Command{
		Use:   "apps",
		Short: "Manage the OAuth 2.0 apps through which people authorise connections",
		Args:  cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError(c, fmt.Errorf("unknown command %q for apps", args[0]))
			}
			return usageError(c, errors.New("apps needs a command: list, show, create, delete or secret"))
		},
		SilenceUsage: true, SilenceErrors: true,
	}
	apps.SetFlagErrorFunc(usageError)
	cmd.AddCommand(apps)

	add(apps, "list", "List apps", cobra.NoArgs, listApps, func(c *cobra.Command) {
		c.Flags().String("org", "", "organisation id")
		c.Flags().Int("limit", 0, "page size (1-500)")
		c.Flags().String("cursor", "", "next_cursor of a previous page")
	})
	add(apps, "show <client_id>", "Show one app", cobra.ExactArgs(1), showApp, nil)
	add(apps, "create", "Register an app and print its client secret", cobra.NoArgs, createApp, func(c *cobra.Command) {
		c.Flags().String("name", "", "name shown to people when they authorise it (required)")
		c.Flags().String("org", "", "organisation id (required)")
		c.Flags().StringArray("redirect-uri", nil, "redirect URI, compared exactly (required; repeat for several)")
		c.Flags().String("auth-method", "", "client_secret_basic (default), client_secret_post or none (a public app: no secret, PKCE only)")
	})
	add(apps, "delete <client_id>", "Delete an app and every connection made through it (asks first)", cobra.ExactArgs(1), deleteApp, func(c *cobra.Command) {
		c.Flags().Bool("wait", false, "return once every gateway has applied the deletions")
		c.Flags().Bool("yes", false, "do not ask for confirmation")
	})
	add(apps, "secret <client_id>", "Rotate an app's client secret and print the new one (asks first)", cobra.ExactArgs(1), rotateSecret, func(c *cobra.Command) {
		c.Flags().Bool("yes", false, "do not ask for confirmation")
	})
}

func listApps(s *session, _ []string) (int, error) {
	var page controlapi.AppPage
	raw, code, err := s.call(http.MethodGet, s.pagePath(controlapi.PathApps, map[string]string{"org": "org_id"}), nil, &page)
	if err != nil {
		return code, err
	}
	if s.json {
		return s.print(raw)
	}
	s.table(appRows(page.Apps...)...)
	if page.NextCursor != "" {
		fmt.Fprintln(s.out, "more: --cursor", page.NextCursor)
	}
	return exitOK, nil
}

func showApp(s *session, args []string) (int, error) {
	var app controlapi.App
	raw, code, err := s.call(http.MethodGet, controlapi.AppPath(args[0]), nil, &app)
	if err != nil {
		return code, err
	}
	if s.json {
		return s.print(raw)
	}
	s.table(appRows(app)...)
	fmt.Fprintln(s.out, "\nredirect URIs:")
	for _, u := range app.RedirectURIs {
		fmt.Fprintln(s.out, " ", u)
	}
	return exitOK, nil
}

func createApp(s *session, _ []string) (int, error) {
	var n controlapi.NewApp
	n.ClientName, _ = s.cmd.Flags().GetString("name")
	n.OrgID, _ = s.cmd.Flags().GetString("org")
	n.RedirectURIs, _ = s.cmd.Flags().GetStringArray("redirect-uri")
	method, _ := s.cmd.Flags().GetString("auth-method")
	n.TokenEndpointAuthMethod = store.AuthMethod(method)
	if n.ClientName == "" || n.OrgID == "" || len(n.RedirectURIs) == 0 {
		return exitUsage, errors.New("--name, --org and --redirect-uri are required")
	}
	return s.appAnswer(http.MethodPost, controlapi.PathApps, n)
}

func deleteApp(s *session, args []string) (int, error) {
	id := args[0]
	if !s.confirmed(fmt.Sprintf("Delete app %s? Every connection made through it is deleted too, for good: their tokens stop working and they cannot be restored.\nType yes to delete: ", id)) {
		return exitAborted, errors.New("not deleted")
	}
	path := controlapi.AppPath(id)
	wait, _ := s.cmd.Flags().GetBool("wait")
	if wait {
		path += "?wait=applied"
	}
	var body controlapi.AppDeleted
	raw, code, err := s.call(http.MethodDelete, path, nil, &body)
	if err != nil {
		return code, err
	}
	if s.json {
		return s.print(raw)
	}
	fmt.Fprintf(s.out, "app %s deleted; connections deleted with it: %d\n", body.App.ClientID, body.ConnectionsDeleted)
	if len(body.Connections) > 0 {
		s.table(connectionRows(body.Connections...)...)
	}
	if body.Propagation != nil {
		fmt.Fprintf(s.out, "\ngateways: %d acknowledged of %d", body.Acknowledged, body.Gateways)
		if len(body.Pending) > 0 {
			fmt.Fprintf(s.out, " (pending: %s)", strings.Join(body.Pending, ", "))
		}
		fmt.Fprintln(s.out)
	}
	return exitOK, nil
}

func rotateSecret(s *session, args []string) (int, error) {
	id := args[0]
	if !s.confirmed(fmt.Sprintf("Rotate the client secret of app %s? Its current secret stops working at once.\nType yes to rotate: ", id)) {
		return exitAborted, errors.New("not rotated")
	}
	return s.appAnswer(http.MethodPost, controlapi.AppSecretPath(id), nil)
}

// appAnswer sends a request answered with an app and prints the app, with
// its client secret when the answer carries one.
func (s *session) appAnswer(method, path string, body any) (int, error) {
	var app controlapi.App
	raw, code, err := s.call(method, path, body, &app)
	if err != nil {
		return code, err
	}
	if s.json {
		return s.print(raw)
	}
	s.table(appRows(app)...)
	printSecret(s, app)
	return exitOK, nil
}

func printSecret(s *session, app controlapi.App) {
	if app.ClientSecret == "" {
		fmt.Fprintln(s.out, "\npublic app: no client secret (it proves itself with PKCE)")
		return
	}
	fmt.Fprintln(s.out, "\nclient secret (shown once; only its hash is kept):")
	fmt.Fprintln(s.out, app.ClientSecret)
}

func appRows(apps ...controlapi.App) [][]string {
	rows := [][]string{{"CLIENT ID", "NAME", "ORG", "AUTH METHOD", "REDIRECT URIS", "CREATED BY", "CREATED"}}
	for _, a := range apps {
		rows = append(rows, []string{a.ClientID, a.ClientName, a.OrgID, string(a.TokenEndpointAuthMethod), strconv.Itoa(len(a.RedirectURIs)),
			a.CreatedBy, a.CreatedAt.Format("2006-01-02 15:04:05")})
	}
	return rows
}
