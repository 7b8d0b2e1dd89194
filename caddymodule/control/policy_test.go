package control

import (
	"errors"
	"testing"

	"github.com/conngate/conngate/caddymodule/controlapi"
	"github.com/conngate/conngate/store"
)

// The parts of the policy that decide what a read covers rather than whether
// it is allowed: which organisation and whose connections a list or the
// audit log is about, which changes a stream carries, and which gateway a
// stream counts as. TestRoleMatrix (roles_test.go) is the rest, through HTTP.
func TestPolicyScopes(t *testing.T) {
	admin := &principal{id: "api_key:admin", admin: true}
	gateway := &principal{id: "edge-1", named: true, gateway: true}
	sharedGateway := &principal{id: "api_key:gateway", gateway: true}
	owner := &principal{id: "olga", named: true, roles: map[string]orgRole{"org-1": roleOwner}}
	developer := &principal{id: "dev", named: true, roles: map[string]orgRole{"org-1": roleDeveloper}}
	twoOrgs := &principal{id: "vic", named: true, roles: map[string]orgRole{"org-1": roleViewer, "org-2": roleViewer}}

	scopes := []struct {
		name       string
		who        *principal
		org        string
		want       right
		wantScope  listScope
		wantStatus int // 0: allowed
	}{
		{"admin without org_id reads every organisation", admin, "", rightList, listScope{}, 0},
		{"admin with org_id reads that one", admin, "org-9", rightAudit, listScope{org: "org-9"}, 0},
		{"owner without org_id reads their only organisation", owner, "", rightList, listScope{org: "org-1"}, 0},
		{"owner of another organisation", owner, "org-2", rightList, listScope{}, 403},
		{"developer lists only their own", developer, "org-1", rightList, listScope{org: "org-1", userID: "dev"}, 0},
		{"developer without org_id", developer, "", rightList, listScope{org: "org-1", userID: "dev"}, 0},
		{"developer may not read the audit log", developer, "org-1", rightAudit, listScope{}, 403},
		{"two organisations need org_id", twoOrgs, "", rightList, listScope{}, 400},
		{"two organisations, one named", twoOrgs, "org-2", rightList, listScope{org: "org-2"}, 0},
		{"a gateway may not list", gateway, "", rightList, listScope{}, 403},
		{"developer lists only the apps they registered", developer, "", rightViewApps, listScope{org: "org-1", userID: "dev"}, 0},
		{"owner lists every app of the organisation", owner, "org-1", rightViewApps, listScope{org: "org-1"}, 0},
		{"admin without org_id lists every organisation's apps", admin, "", rightViewApps, listScope{}, 0},
		{"apps of another organisation", owner, "org-2", rightViewApps, listScope{}, 403},
		{"a gateway may not list apps", gateway, "", rightViewApps, listScope{}, 403},
	}
	for _, tt := range scopes {
		t.Run(tt.name, func(t *testing.T) {
			got, err := scopeOf(tt.who, tt.org, tt.want)
			var apiErr *controlapi.Error
			switch {
			case tt.wantStatus == 0 && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.wantStatus != 0 && (!errors.As(err, &apiErr) || apiErr.Status != tt.wantStatus):
				t.Fatalf("got %v, want a %d", err, tt.wantStatus)
			case tt.wantStatus == 0 && got != tt.wantScope:
				t.Fatalf("scope %+v, want %+v", got, tt.wantScope)
			}
		})
	}

	change := store.Change{ID: "c1", OrgID: "org-1", UserID: "someone"}
	own := store.Change{ID: "c2", OrgID: "org-1", UserID: "dev"}
	elsewhere := store.Change{ID: "c3", OrgID: "org-3", UserID: "dev"}
	for _, tt := range []struct {
		who  *principal
		c    store.Change
		sees bool
	}{
		{admin, elsewhere, true}, {gateway, elsewhere, true}, {sharedGateway, change, true},
		{owner, change, true}, {owner, elsewhere, false},
		{developer, change, false}, {developer, own, true}, {developer, elsewhere, false},
	} {
		if got := sees(tt.who, tt.c); got != tt.sees {
			t.Errorf("%s sees change of %s/%s: %v, want %v", tt.who.id, tt.c.OrgID, tt.c.UserID, got, tt.sees)
		}
	}

	for _, tt := range []struct {
		who         *principal
		asked, want string
	}{
		{gateway, "", "edge-1"}, {gateway, "edge-2", "edge-2"}, // the second is then refused by authorize
		{sharedGateway, "", ""}, {sharedGateway, "edge-7", "edge-7"},
		{owner, "", ""}, {admin, "", ""},
	} {
		if got := subscriberID(tt.who, tt.asked); got != tt.want {
			t.Errorf("subscriberID(%s, %q) = %q, want %q", tt.who.id, tt.asked, got, tt.want)
		}
	}
}
