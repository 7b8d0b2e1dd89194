package control_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/conngate/conngate/caddymodule/control"
	"github.com/conngate/conngate/caddymodule/control/controltest"
	"github.com/conngate/conngate/caddymodule/controlapi"
	"github.com/conngate/conngate/store"
)

// writePrincipals writes a principals file with one principal per role in
// org-1 and a gateway, and returns each one's key.
func writePrincipals(t *testing.T) (path string, keys map[string]string) {
	keys = map[string]string{}
	var entries []map[string]any
	for _, role := range []string{"owner", "manager", "administrator", "developer", "viewer"} {
		keys[role] = controltest.RandomKey()
		sum := sha256.Sum256([]byte(keys[role]))
		entries = append(entries, map[string]any{"id": role, "name": role, "key_sha256": hex.EncodeToString(sum[:]), "roles": map[string]string{"org-1": role}})
	}
	keys["gateway"] = controltest.RandomKey()
	sum := sha256.Sum256([]byte(keys["gateway"]))
	entries = append(entries, map[string]any{"id": "edge-1", "name": "Gateway", "key_sha256": hex.EncodeToString(sum[:]), "gateway": true})
	b, _ := json.Marshal(map[string]any{"principals": entries})
	path = filepath.Join(t.TempDir(), "principals.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, keys
}

// The role matrix: every role x every action x own / other organisation,
// through HTTP against the real handler and store.
func TestRoleMatrix(t *testing.T) {
	path, keys := writePrincipals(t)
	s, st := startWithStore(t, controltest.Options{PrincipalsFile: path})
	keys["admin"] = s.AdminKey

	type cell struct{ own, other int }
	manage := map[string]cell{
		"create for another user": {201, 403}, "create for themselves": {201, 403}, "list": {200, 403},
		"view": {200, 404}, "view their own": {200, 404}, "disable": {200, 404}, "enable": {200, 404}, "delete": {200, 404},
		"audit": {200, 403}, "status": {403, 403}, "gateways": {403, 403},
		"stream": {200, 200}, "stream as itself": {403, 403}, "stream as another gateway": {403, 403}, "ack as another gateway": {403, 403},
		"register an app": {201, 403}, "list apps": {200, 403}, "view an app": {200, 404}, "view their own app": {200, 404},
		"delete an app": {200, 404}, "delete their own app": {200, 404}, "rotate a secret": {200, 404}, "rotate their own secret": {200, 404},
	}
	matrix := map[string]map[string]cell{
		"owner": manage, "manager": manage, "administrator": manage,
		"developer": {
			"create for another user": {403, 403}, "create for themselves": {201, 403}, "list": {200, 403},
			"view": {404, 404}, "view their own": {200, 404}, "disable": {403, 404}, "enable": {403, 404}, "delete": {403, 404},
			"audit": {403, 403}, "status": {403, 403}, "gateways": {403, 403},
			"stream": {200, 200}, "stream as itself": {403, 403}, "stream as another gateway": {403, 403}, "ack as another gateway": {403, 403},
			// Developer Portal access: their own apps only; others' are not found.
			"register an app": {201, 403}, "list apps": {200, 403}, "view an app": {404, 404}, "view their own app": {200, 404},
			"delete an app": {404, 404}, "delete their own app": {200, 404}, "rotate a secret": {404, 404}, "rotate their own secret": {200, 404},
		},
		"viewer": {
			"create for another user": {403, 403}, "create for themselves": {403, 403}, "list": {200, 403},
			"view": {200, 404}, "view their own": {200, 404}, "disable": {403, 404}, "enable": {403, 404}, "delete": {403, 404},
			"audit": {403, 403}, "status": {403, 403}, "gateways": {403, 403},
			"stream": {200, 200}, "stream as itself": {403, 403}, "stream as another gateway": {403, 403}, "ack as another gateway": {403, 403},
			// Sees every app of the organisation, changes none, not even one
			// registered in its name.
			"register an app": {403, 403}, "list apps": {200, 403}, "view an app": {200, 404}, "view their own app": {200, 404},
			"delete an app": {403, 404}, "delete their own app": {403, 404}, "rotate a secret": {403, 404}, "rotate their own secret": {403, 404},
		},
		"gateway": {
			"create for another user": {403, 403}, "create for themselves": {403, 403}, "list": {403, 403},
			"view": {403, 403}, "view their own": {403, 403}, "disable": {403, 403}, "enable": {403, 403}, "delete": {403, 403},
			"audit": {403, 403}, "status": {200, 200}, "gateways": {403, 403},
			"stream": {200, 200}, "stream as itself": {200, 200}, "stream as another gateway": {403, 403}, "ack as another gateway": {403, 403},
			"register an app": {403, 403}, "list apps": {403, 403}, "view an app": {403, 403}, "view their own app": {403, 403},
			"delete an app": {403, 403}, "delete their own app": {403, 403}, "rotate a secret": {403, 403}, "rotate their own secret": {403, 403},
		},
		"admin": {
			"create for another user": {201, 201}, "create for themselves": {201, 201}, "list": {200, 200},
			"view": {200, 200}, "view their own": {200, 200}, "disable": {200, 200}, "enable": {200, 200}, "delete": {200, 200},
			"audit": {200, 200}, "status": {200, 200}, "gateways": {200, 200},
			// An administrator key may act as any gateway; one that is not
			// subscribed has nothing to acknowledge.
			"stream": {200, 200}, "stream as itself": {200, 200}, "stream as another gateway": {200, 200}, "ack as another gateway": {404, 404},
			"register an app": {201, 201}, "list apps": {200, 200}, "view an app": {200, 200}, "view their own app": {200, 200},
			"delete an app": {200, 200}, "delete their own app": {200, 200}, "rotate a secret": {200, 200}, "rotate their own secret": {200, 200},
		},
	}
	// id is the principal's id, the user_id of "their own" connections.
	id := func(role string) string {
		switch role {
		case "gateway":
			return "edge-1"
		case "admin":
			return "api_key:admin"
		}
		return role
	}
	// newConn makes a connection in org for user, with the admin key.
	newConn := func(org, user string) string {
		var c controlapi.Created
		if code := s.Do(t, s.AdminKey, "POST", "/v1/connections", store.NewConnection{Name: "x", OrgID: org, UserID: user}, &c); code != 201 {
			t.Fatalf("setup create: %d", code)
		}
		return c.Connection.ID
	}
	// newApp registers a confidential app in org in the name of principal
	// by, through the store: nobody but the admin key may register in
	// another organisation.
	newApp := func(org, by string) string {
		a, err := st.CreateApp(context.Background(), store.NewApp{Name: "x", RedirectURIs: []string{"https://x.example/cb"},
			AuthMethod: store.AuthSecretBasic, SecretHash: make([]byte, 32), OrgID: org}, store.Actor{ID: by})
		if err != nil {
			t.Fatalf("setup app: %v", err)
		}
		return a.ID
	}
	do := func(role, action, org string) int {
		key, me := keys[role], id(role)
		var out json.RawMessage
		switch action {
		case "create for another user":
			return s.Do(t, key, "POST", "/v1/connections", store.NewConnection{Name: "x", OrgID: org, UserID: "someone"}, &out)
		case "create for themselves":
			return s.Do(t, key, "POST", "/v1/connections", store.NewConnection{Name: "x", OrgID: org, UserID: me}, &out)
		case "list":
			return s.Do(t, key, "GET", "/v1/connections?org_id="+org, nil, &out)
		case "view":
			return s.Do(t, key, "GET", "/v1/connections/"+newConn(org, "someone"), nil, &out)
		case "view their own":
			return s.Do(t, key, "GET", "/v1/connections/"+newConn(org, me), nil, &out)
		case "disable", "enable":
			return s.Do(t, key, "POST", "/v1/connections/"+newConn(org, me)+"/"+action, nil, &out)
		case "delete":
			return s.Do(t, key, "DELETE", "/v1/connections/"+newConn(org, me), nil, &out)
		case "audit":
			return s.Do(t, key, "GET", "/v1/audit?org_id="+org, nil, &out)
		case "status":
			return s.Do(t, key, "GET", "/v1/connections/"+newConn(org, me)+"/status", nil, &out)
		case "gateways":
			return s.Do(t, key, "GET", "/v1/gateways", nil, &out)
		// Streams are answered with their headers and closed at once.
		case "stream":
			return s.Do(t, key, "GET", "/v1/events", nil, nil)
		case "stream as itself":
			return s.Do(t, key, "GET", "/v1/events?gateway_id="+me, nil, nil)
		case "stream as another gateway":
			return s.Do(t, key, "GET", "/v1/events?gateway_id=edge-9", nil, nil)
		case "register an app":
			return s.Do(t, key, "POST", "/v1/apps", controlapi.NewApp{ClientName: "x", RedirectURIs: []string{"https://x.example/cb"}, OrgID: org}, &out)
		case "list apps":
			return s.Do(t, key, "GET", "/v1/apps?org_id="+org, nil, &out)
		case "view an app":
			return s.Do(t, key, "GET", "/v1/apps/"+newApp(org, "someone"), nil, &out)
		case "view their own app":
			return s.Do(t, key, "GET", "/v1/apps/"+newApp(org, me), nil, &out)
		case "delete an app":
			return s.Do(t, key, "DELETE", "/v1/apps/"+newApp(org, "someone"), nil, &out)
		case "delete their own app":
			return s.Do(t, key, "DELETE", "/v1/apps/"+newApp(org, me), nil, &out)
		case "rotate a secret":
			return s.Do(t, key, "POST", "/v1/apps/"+newApp(org, "someone")+"/secret", nil, &out)
		case "rotate their own secret":
			return s.Do(t, key, "POST", "/v1/apps/"+newApp(org, me)+"/secret", nil, &out)
		case "ack as another gateway":
			// Not edge-9: a stream of that id may still be closing.
			return s.Do(t, key, "POST", "/v1/gateways/edge-never/ack", controlapi.Ack{Revision: 1, Stream: "00112233445566778899aabbccddeeff"}, &out)
		}
		t.Fatalf("unknown action %s", action)
		return 0
	}
	for role, row := range matrix {
		if len(row) != len(manage) {
			t.Fatalf("row %s has %d cells, want %d", role, len(row), len(manage))
		}
		for action, want := range row {
			t.Run(fmt.Sprintf("%s/%s", role, action), func(t *testing.T) {
				if got := do(role, action, "org-1"); got != want.own {
					t.Errorf("own organisation: %d, want %d", got, want.own)
				}
				if got := do(role, action, "org-2"); got != want.other {
					t.Errorf("other organisation: %d, want %d", got, want.other)
				}
			})
		}
	}
}

// Lists show only what the caller may see; the audit log names the actor.
func TestListScopeAndActor(t *testing.T) {
	path, keys := writePrincipals(t)
	s := controltest.Start(t, controltest.Options{PrincipalsFile: path})
	for _, user := range []string{"developer", "someone", "developer"} {
		s.Do(t, s.AdminKey, "POST", "/v1/connections", store.NewConnection{Name: "x", OrgID: "org-1", UserID: user}, nil)
	}
	s.Do(t, s.AdminKey, "POST", "/v1/connections", store.NewConnection{Name: "x", OrgID: "org-2", UserID: "developer"}, nil)
	var list struct{ Connections []store.Connection }
	for role, want := range map[string]int{"developer": 2, "viewer": 3, "owner": 3} {
		// No org_id: each has a role in org-1 only.
		if code := s.Do(t, keys[role], "GET", "/v1/connections", nil, &list); code != 200 || len(list.Connections) != want {
			t.Errorf("%s lists %d (status %d), want %d", role, len(list.Connections), code, want)
		}
		for _, c := range list.Connections {
			if c.OrgID != "org-1" || role == "developer" && c.UserID != "developer" {
				t.Errorf("%s sees %+v", role, c)
			}
		}
	}
	var c controlapi.Created
	s.Do(t, keys["owner"], "POST", "/v1/connections", store.NewConnection{Name: "x", OrgID: "org-1", UserID: "u"}, &c)
	var audit struct{ Entries []store.AuditEntry }
	s.Do(t, keys["owner"], "GET", "/v1/audit?connection_id="+c.Connection.ID, nil, &audit)
	if len(audit.Entries) != 1 || audit.Entries[0].ActorID != "owner" {
		t.Fatalf("audit %+v", audit.Entries)
	}
}

func TestPrincipalsFileErrors(t *testing.T) {
	sum := sha256.Sum256([]byte("k"))
	digest := hex.EncodeToString(sum[:])
	tests := []struct{ name, json string }{
		{"not JSON", `{`},
		{"unknown field", `{"principals": [], "extra": 1}`},
		{"bad digest", `{"principals": [{"id": "a", "key_sha256": "abc"}]}`},
		{"bad role", `{"principals": [{"id": "a", "key_sha256": "` + digest + `", "roles": {"org-1": "king"}}]}`},
		{"duplicate id", `{"principals": [{"id": "a", "key_sha256": "` + digest + `"}, {"id": "a", "key_sha256": "` + hex.EncodeToString(make([]byte, 32)) + `"}]}`},
		{"same key twice", `{"principals": [{"id": "a", "key_sha256": "` + digest + `"}, {"id": "b", "key_sha256": "` + digest + `"}]}`},
		{"gateway with roles", `{"principals": [{"id": "a", "key_sha256": "` + digest + `", "gateway": true, "roles": {"o": "owner"}}]}`},
		{"reserved id", `{"principals": [{"id": "api_key:x", "key_sha256": "` + digest + `"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "p.json")
			os.WriteFile(path, []byte(tt.json), 0o600)
			if err := controltest.Provision(t, controltest.Options{PrincipalsFile: path}); err == nil {
				t.Fatal("provisioned")
			}
		})
	}
}

// A principals file that does not exist yet grants nothing: the admin key
// works, no person's key does; once the file exists, a reload (a new
// provisioning) reads it.
func TestPrincipalsFileNotThereYet(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "principals.json")
	s := controltest.Start(t, controltest.Options{Dir: dir, PrincipalsFile: path})
	key := controltest.RandomKey()
	if code := s.Do(t, key, "GET", "/v1/me", nil, nil); code != 401 {
		t.Fatalf("a person's key without a principals file: %d", code)
	}
	if code := s.Do(t, s.AdminKey, "GET", "/v1/me", nil, nil); code != 200 {
		t.Fatalf("admin key: %d", code)
	}
	sum := sha256.Sum256([]byte(key))
	os.WriteFile(path, []byte(`{"principals": [{"id": "dana", "key_sha256": "`+hex.EncodeToString(sum[:])+`", "roles": {"org-1": "developer"}}]}`), 0o600)
	s.Stop()
	s = controltest.Start(t, controltest.Options{Dir: dir, PrincipalsFile: path, AdminKey: s.AdminKey, GatewayKey: s.GatewayKey})
	var me controlapi.Me
	if code := s.Do(t, key, "GET", "/v1/me", nil, &me); code != 200 || me.ID != "dana" {
		t.Fatalf("after the file appeared: %d %+v", code, me)
	}
}

// Two keys of one role (a rotation) both work, and the audit log tells them
// apart.
func TestTwoKeysOfOneRole(t *testing.T) {
	first, second := controltest.RandomKey(), controltest.RandomKey()
	keys := []control.APIKey{{Role: "admin", Key: first}, {Role: "admin", Key: second}}
	ring, err := control.NewKeyringForTest(keys)
	if err != nil {
		t.Fatalf("two admin keys refused: %v", err)
	}
	if a, b := ring[first], ring[second]; a == b || a == "" || b == "" {
		t.Errorf("principal ids %q and %q", a, b)
	}
}

// A gateway of the principals file subscribes and acknowledges only as
// itself.
func TestNamedGatewayOnlyAsItself(t *testing.T) {
	path, keys := writePrincipals(t)
	s := controltest.Start(t, controltest.Options{PrincipalsFile: path})
	if es := s.Events(t, keys["gateway"], "?gateway_id=someone-else", nil); es.Resp.StatusCode != 403 {
		t.Errorf("subscribing as another gateway: %d", es.Resp.StatusCode)
	}
	es := s.Events(t, keys["gateway"], "", nil) // as itself, implicitly
	if es.Resp.StatusCode != 200 {
		t.Fatalf("subscribing as itself: %d", es.Resp.StatusCode)
	}
	var e errorBody
	if code := s.Do(t, keys["gateway"], "POST", "/v1/gateways/someone-else/ack", map[string]int{"revision": 1}, &e); code != 403 {
		t.Errorf("acknowledging for another gateway: %d", code)
	}
}

// A person's change stream carries only the connections they may view.
func TestPersonEventsAreFiltered(t *testing.T) {
	path, keys := writePrincipals(t)
	s := controltest.Start(t, controltest.Options{PrincipalsFile: path})
	owner := s.Events(t, keys["owner"], "", nil)
	developer := s.Events(t, keys["developer"], "", nil)
	for _, es := range []*controltest.EventStream{owner, developer} {
		if ev := es.Next(t, wait, false); ev.Name != "sync" {
			t.Fatalf("first event %+v", ev)
		}
	}
	if es := s.Events(t, keys["owner"], "?gateway_id=owner", nil); es.Resp.StatusCode != 403 {
		t.Errorf("a person subscribing as a gateway: %d", es.Resp.StatusCode)
	}
	create := func(org, user string) string {
		var c controlapi.Created
		s.Do(t, s.AdminKey, "POST", "/v1/connections", store.NewConnection{Name: "x", OrgID: org, UserID: user}, &c)
		return c.Connection.ID
	}
	otherOrg := create("org-2", "developer")
	someone := create("org-1", "someone")
	mine := create("org-1", "developer")
	s.Act(t, otherOrg, store.ActionDisable)
	s.Act(t, someone, store.ActionDisable)

	// The owner sees org-1's two creations and one disable, in order.
	var got []string
	for range 3 {
		c := change(t, owner.Next(t, wait, false))
		got = append(got, c.ID+" "+string(c.Status))
	}
	want := []string{someone + " active", mine + " active", someone + " disabled"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("owner's stream %v, want %v", got, want)
	}
	// The developer sees only their own connection.
	if c := change(t, developer.Next(t, wait, false)); c.ID != mine {
		t.Errorf("developer's stream brought %s, want only %s", c.ID, mine)
	}
	s.Act(t, mine, store.ActionDisable)
	if c := change(t, developer.Next(t, wait, false)); c.ID != mine || c.Status != store.StatusDisabled {
		t.Errorf("developer's stream brought %+v", c)
	}
}
