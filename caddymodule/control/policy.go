package control

import (
	"context"
	"net/http"
	"slices"

	"github.com/conngate/conngate/store"
)

// right is something a request asks to do.
type right string

const (
	rightCreate     right = "create connections"
	rightList       right = "list connections"
	rightView       right = "view connections"
	rightDisable    right = "disable connections"
	rightEnable     right = "enable connections"
	rightDelete     right = "delete connections"
	rightAudit      right = "read the audit log"
	rightReadStatus right = "read connection statuses"
	rightEvents     right = "read the change stream"
	rightAck        right = "acknowledge changes as a gateway"
	rightGateways   right = "list gateways"
)

// gatewayRights are all a gateway may do.
var gatewayRights = []right{rightReadStatus, rightEvents, rightAck}

// refusal is a denied request: the status and the sentence that says why.
type refusal struct {
	status  int
	code    string
	message string
}

// authorize is the one place that decides who may do what. org is the
// organisation the request is about; conn the connection, when there is one.
// Another organisation's connection is not found rather than forbidden, so
// that its existence is not revealed. newFor is the user a create is for.
func authorize(p *principal, want right, org string, conn *store.Connection, newFor string) *refusal {
	switch {
	case p.admin:
		return nil
	case p.gateway:
		if slices.Contains(gatewayRights, want) {
			return nil
		}
		return forbid("A gateway may only read connection statuses and the change stream; it may not " + string(want) + ".")
	case want == rightEvents:
		return nil // filtered per change by sees
	case slices.Contains(gatewayRights, want) || want == rightGateways:
		return forbid("Only gateways and administrators may " + string(want) + ".")
	}
	if conn != nil {
		org = conn.OrgID
	}
	role, ok := p.roles[org]
	if !ok {
		if conn != nil {
			return notFound(conn.ID)
		}
		return forbid("You have no role in organisation " + org + ", so you may not " + string(want) + " there.")
	}
	// A developer sees only the connections made for them.
	if conn != nil && role == roleDeveloper && conn.UserID != p.id {
		return notFound(conn.ID)
	}
	switch want {
	case rightList, rightView:
		return nil
	case rightCreate:
		if role.manages() || role == roleDeveloper && newFor == p.id {
			return nil
		}
		if role == roleDeveloper {
			return forbid("With Developer Portal access (role developer) you may create connections only for yourself (user_id " + p.id + ").")
		}
	case rightDisable, rightEnable, rightDelete, rightAudit:
		if role.manages() {
			return nil
		}
	}
	return forbid("Your role " + string(role) + " in " + org + " does not include the right to " + string(want) + "; an owner, manager or administrator of the organisation has it.")
}

func forbid(message string) *refusal {
	return &refusal{http.StatusForbidden, "forbidden", message}
}

func notFound(id string) *refusal {
	return &refusal{http.StatusNotFound, "connection_not_found", "No connection has id " + id + "."}
}

// principalKey carries the authenticated principal of a request.
type principalKey struct{}

func principalOf(r *http.Request) *principal {
	p, _ := r.Context().Value(principalKey{}).(*principal)
	return p
}

func withPrincipal(r *http.Request, p *principal) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), principalKey{}, p))
}

// allowed applies authorize to the request and answers a refusal; it
// reports whether the request may go on.
func allowed(w http.ResponseWriter, r *http.Request, want right, org string, conn *store.Connection, newFor string) bool {
	if no := authorize(principalOf(r), want, org, conn, newFor); no != nil {
		writeError(w, no.status, no.code, no.message)
		return false
	}
	return true
}

// sees reports whether p may learn of change c on the change stream: admins
// and gateways see every change, people only those of connections they may
// view.
func sees(p *principal, c store.Change) bool {
	if p.admin || p.gateway {
		return true
	}
	role, ok := p.roles[c.OrgID]
	return ok && (role != roleDeveloper || c.UserID == p.id)
}

// gatewayIDAllowed reports whether p may subscribe or acknowledge as gateway
// id: a gateway of the principals file only as itself, so that one gateway
// cannot acknowledge changes for another; a shared api_key as any.
func gatewayIDAllowed(p *principal, id string) bool {
	return !p.named || p.id == id
}

// soleOrg is the organisation a request without org_id is about: the only
// one the principal has a role in. ok is false when that is ambiguous.
func soleOrg(p *principal) (org string, ok bool) {
	if p.admin || len(p.roles) != 1 {
		return "", p.admin
	}
	for org := range p.roles {
		return org, true
	}
	return "", false
}
