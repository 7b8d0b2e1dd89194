package control

import "net/http"

// meBody tells a client (the Connections List page) who its key belongs to
// and what it may do.
type meBody struct {
	ID      string             `json:"id"`
	Admin   bool               `json:"admin"`
	Gateway bool               `json:"gateway"`
	Roles   map[string]orgRole `json:"roles"`
}

func (c *Control) getMe(w http.ResponseWriter, r *http.Request) {
	p := principalOf(r)
	roles := p.roles
	if roles == nil {
		roles = map[string]orgRole{}
	}
	writeJSON(w, http.StatusOK, meBody{ID: p.id, Admin: p.admin, Gateway: p.gateway, Roles: roles})
}
