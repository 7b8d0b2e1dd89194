package control

import (
	"context"
	"net/http"
	"slices"

	"github.com/conngate/conngate/caddymodule/controlapi"
	"github.com/conngate/conngate/store"
)

// This file is the whole authorization policy of the control API: which
// principal may do what, which organisation and whose connections a list is
// about, under which gateway id a stream counts, and which changes a stream
// carries. Handlers ask; they never decide. policy_test.go holds the matrix.

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

	rightRegisterApps  right = "register apps"
	rightViewApps      right = "view apps"
	rightDeleteApps    right = "delete apps"
	rightRotateSecrets right = "rotate app secrets"
)

// rightFor is the right a status change needs.
var rightFor = map[store.Action]right{
	store.ActionDisable: rightDisable,
	store.ActionEnable:  rightEnable,
	store.ActionDelete:  rightDelete,
}

// gatewayRights are all a gateway may do.
var gatewayRights = []right{rightReadStatus, rightEvents, rightAck}

// access is what a request asks: a right, and what it is about. Fields that
// do not apply stay zero.
type access struct {
	want right
	// org is the organisation an organisation-wide request (a list, the
	// audit log, a create) is about.
	org string
	// conn is the connection the request is about.
	conn *store.Connection
	// app is the app the request is about.
	app *store.App
	// newFor is the user a create is for.
	newFor string
	// gatewayID is the gateway a change stream or an acknowledgement is for.
	gatewayID string
}

// authorize decides whether p may do a. Another organisation's connection or
// app is not found rather than forbidden, so that its existence is not
// revealed.
// The refusal is a *controlapi.Error naming what is missing.
func authorize(p *principal, a access) error {
	if a.gatewayID != "" {
		if err := mayActAsGateway(p, a); err != nil {
			return err
		}
	}
	switch {
	case p.admin:
		return nil
	case p.gateway:
		if slices.Contains(gatewayRights, a.want) {
			return nil
		}
		return forbid("A gateway may only read connection statuses and the change stream; it may not " + string(a.want) + ".")
	case a.want == rightEvents:
		return nil // filtered per change by sees
	case slices.Contains(gatewayRights, a.want) || a.want == rightGateways:
		return forbid("Only gateways and administrators may " + string(a.want) + ".")
	}
	org := a.org
	switch {
	case a.conn != nil:
		org = a.conn.OrgID
	case a.app != nil:
		org = a.app.OrgID
	}
	role, ok := p.roles[org]
	if !ok {
		if a.conn != nil {
			return connectionNotFound(a.conn.ID)
		}
		if a.app != nil {
			return appNotFound(a.app.ID)
		}
		return forbid("You have no role in organisation " + org + ", so you may not " + string(a.want) + " there.")
	}
	// A developer sees only the connections made for them, and the apps
	// they registered.
	if a.conn != nil && role == roleDeveloper && a.conn.UserID != p.id {
		return connectionNotFound(a.conn.ID)
	}
	if a.app != nil && role == roleDeveloper && a.app.CreatedBy != p.id {
		return appNotFound(a.app.ID)
	}
	switch a.want {
	case rightViewApps:
		return nil
	case rightRegisterApps:
		if role.manages() || role == roleDeveloper {
			return nil
		}
		return forbid("Your role " + string(role) + " in " + org + " does not include the right to " + string(a.want) +
			"; Developer Portal access (role developer) or an owner, manager or administrator role in the organisation has it.")
	case rightDeleteApps, rightRotateSecrets:
		// A developer reaches here only for an app they registered.
		if role.manages() || role == roleDeveloper {
			return nil
		}
		return forbid("Your role " + string(role) + " in " + org + " does not include the right to " + string(a.want) +
			"; the developer who registered the app and the organisation's owners, managers and administrators have it.")
	case rightList, rightView:
		return nil
	case rightCreate:
		if role.manages() || role == roleDeveloper && a.newFor == p.id {
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
	return forbid("Your role " + string(role) + " in " + org + " does not include the right to " + string(a.want) + "; an owner, manager or administrator of the organisation has it.")
}

// mayActAsGateway decides who may subscribe or acknowledge under a gateway
// id: gateways and administrators only, and a gateway of the principals file
// only as itself, so that one gateway cannot acknowledge changes for another.
// A shared gateway api_key may act as any.
func mayActAsGateway(p *principal, a access) error {
	if !p.gateway && !p.admin {
		return forbid("Only gateways subscribe or acknowledge with a gateway id.")
	}
	if p.named && p.id != a.gatewayID {
		verb := "subscribe"
		if a.want == rightAck {
			verb = "acknowledge"
		}
		return forbid("Gateway " + p.id + " may " + verb + " only as itself, not as " + a.gatewayID + ".")
	}
	return nil
}

// authorisableOrgs are the organisations in which p may authorise an app to
// act for them (Developer Portal access: the right to create a connection
// for themselves), sorted.
func authorisableOrgs(p *principal) []string {
	var orgs []string
	for org := range p.roles {
		if authorize(p, access{want: rightCreate, org: org, newFor: p.id}) == nil {
			orgs = append(orgs, org)
		}
	}
	slices.Sort(orgs)
	return orgs
}

// subscriberID is the gateway id a change stream counts as: the one asked
// for, or a named gateway's own when it asks for none.
func subscriberID(p *principal, asked string) string {
	if asked == "" && p.named && p.gateway {
		return p.id
	}
	return asked
}

// listScope is what an organisation-wide read (a list, the audit log) covers.
type listScope struct {
	org string
	// userID, when set, keeps only that user's connections, or the apps
	// that user registered.
	userID string
}

// scopeOf settles an organisation-wide read: the organisation as asked, or
// the only one the caller has a role in (an administrator key without
// org_id reads every organisation); and, for a list, a developer's own
// connections (or apps) only.
func scopeOf(p *principal, org string, want right) (listScope, error) {
	if org == "" && !p.gateway {
		sole, ok := soleOrg(p)
		if !ok {
			return listScope{}, invalid("org_id is required: say which organisation you mean, to " + string(want) + ".")
		}
		org = sole
	}
	if err := authorize(p, access{want: want, org: org}); err != nil {
		return listScope{}, err
	}
	s := listScope{org: org}
	if (want == rightList || want == rightViewApps) && !p.admin && p.roles[org] == roleDeveloper {
		s.userID = p.id
	}
	return s, nil
}

// soleOrg is the organisation a request without org_id is about: the only
// one the principal has a role in, or every one ("") for an administrator.
// ok is false when that is ambiguous.
func soleOrg(p *principal) (org string, ok bool) {
	if p.admin || len(p.roles) != 1 {
		return "", p.admin
	}
	for org := range p.roles {
		return org, true
	}
	return "", false
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

func forbid(message string) *controlapi.Error {
	return &controlapi.Error{Status: http.StatusForbidden, Code: controlapi.CodeForbidden, Message: message}
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

// allow applies authorize to the request's principal.
func allow(r *http.Request, a access) error {
	return authorize(principalOf(r), a)
}
