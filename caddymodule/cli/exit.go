package cli

import (
	"net/http"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

// Exit codes scripts can rely on.
const (
	exitOK           = 0
	exitFailed       = 1 // the endpoint could not be reached, or answered an error not below
	exitUsage        = 2 // wrong arguments or flags, or an invalid request (400)
	exitNotFound     = 3 // 404: no such connection (or not yours to see)
	exitConflict     = 4 // 409: the connection is deleted, or a public app has no secret to rotate
	exitUnauthorized = 5 // 401 or 403: no key, a wrong key, or a missing right
	exitAborted      = 6 // delete or secret rotation not confirmed
)

// exitForStatus is the exit code for an error answer's HTTP status.
func exitForStatus(status int) int {
	switch status {
	case http.StatusBadRequest:
		return exitUsage
	case http.StatusUnauthorized, http.StatusForbidden:
		return exitUnauthorized
	case http.StatusNotFound:
		return exitNotFound
	case http.StatusConflict:
		return exitConflict
	}
	return exitFailed
}

// exitWith returns what a command hands back to Caddy for caddycmd.Main to
// exit with code, err being the failure's cause (nil when code is exitOK).
// Main exits 1 on any error, and with another code only for the error that
// caddycmd.WrapCommandFuncForCobra builds; the CLI prints its own messages
// (to the command's stderr, once), so none is given to the wrapper, which
// would log it again.
func exitWith(cmd *cobra.Command, code int, err error) error {
	if code == exitFailed {
		return err
	}
	return caddycmd.WrapCommandFuncForCobra(func(caddycmd.Flags) (int, error) { return code, nil })(cmd, nil)
}
