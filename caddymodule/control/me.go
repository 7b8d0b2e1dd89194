package control

import (
	"net/http"

	"github.com/conngate/conngate/caddymodule/controlapi"
)

// getMe tells a client (the Connections List page) who its key belongs to
// and what it may do.
func (c *Control) getMe(w http.ResponseWriter, r *http.Request) error {
	p := principalOf(r)
	roles := make(map[string]string, len(p.roles))
	for org, role := range p.roles {
		roles[org] = string(role)
	}
	writeJSON(w, http.StatusOK, controlapi.Me{ID: p.id, Admin: p.admin, Gateway: p.gateway, Roles: roles})
	return nil
}
