package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/conngate/conngate/store"
)

func sha(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// validApp is a confidential registration that every field check starts from.
func validApp(org string) store.NewApp {
	return store.NewApp{Name: "Zapier", RedirectURIs: []string{"https://zapier.example/callback"},
		AuthMethod: store.AuthSecretBasic, SecretHash: sha("secret"), OrgID: org}
}

func createApp(t *testing.T, s store.Store, org string) store.App {
	t.Helper()
	a, err := s.CreateApp(context.Background(), validApp(org), store.Actor{ID: "dev-1"})
	if err != nil {
		t.Fatalf("CreateApp: %v", err)
	}
	return a
}

// createFor creates a connection the way the OAuth flow does, for app.
func createFor(t *testing.T, s store.Store, app store.App, org string) store.Connection {
	t.Helper()
	c, err := s.Create(context.Background(), store.NewConnection{Name: app.Name, OrgID: org, UserID: "user-1", AppID: app.ID}, testActor)
	if err != nil {
		t.Fatalf("Create for %s: %v", app.ID, err)
	}
	return c
}

func sameApp(a, b store.App) bool {
	return a.ID == b.ID && a.Name == b.Name && slices.Equal(a.RedirectURIs, b.RedirectURIs) && a.AuthMethod == b.AuthMethod &&
		bytes.Equal(a.SecretHash, b.SecretHash) && a.OrgID == b.OrgID && a.CreatedBy == b.CreatedBy && a.CreatedAt.Equal(b.CreatedAt)
}

// Registration: every unusable field refused with an *InvalidError naming
// it and nothing stored; what is accepted is stored as given.
func testCreateApp(t *testing.T, open Opener) {
	s := open(t, "create-app")
	ctx := context.Background()
	tests := []struct {
		name   string
		change func(n *store.NewApp)
		field  string // empty: accepted
	}{
		{"confidential, basic", func(n *store.NewApp) {}, ""},
		{"confidential, post", func(n *store.NewApp) { n.AuthMethod = store.AuthSecretPost }, ""},
		{"public with loopback and native redirects", func(n *store.NewApp) {
			n.AuthMethod, n.SecretHash = store.AuthNone, nil
			n.RedirectURIs = []string{"http://127.0.0.1:8080/cb", "http://localhost/cb", "http://[::1]:9000/cb", "https://app.example/cb?x=1"}
		}, ""},
		{"no name", func(n *store.NewApp) { n.Name = "" }, "client_name"},
		{"name with a control character", func(n *store.NewApp) { n.Name = "Zap\nier" }, "client_name"},
		{"name too long", func(n *store.NewApp) { n.Name = strings.Repeat("z", store.MaxNameLength+1) }, "client_name"},
		{"no organisation", func(n *store.NewApp) { n.OrgID = "" }, "org_id"},
		{"organisation with a slash", func(n *store.NewApp) { n.OrgID = "org/1" }, "org_id"},
		{"unknown auth method", func(n *store.NewApp) { n.AuthMethod = "private_key_jwt" }, "token_endpoint_auth_method"},
		{"no auth method", func(n *store.NewApp) { n.AuthMethod = "" }, "token_endpoint_auth_method"},
		{"confidential without a secret", func(n *store.NewApp) { n.SecretHash = nil }, "client secret"},
		{"public with a secret", func(n *store.NewApp) { n.AuthMethod = store.AuthNone }, "client secret"},
		{"no redirect URI", func(n *store.NewApp) { n.RedirectURIs = nil }, "redirect_uris"},
		{"too many redirect URIs", func(n *store.NewApp) {
			n.RedirectURIs = nil
			for i := range store.MaxRedirectURIs + 1 {
				n.RedirectURIs = append(n.RedirectURIs, fmt.Sprintf("https://app.example/cb%d", i))
			}
		}, "redirect_uris"},
		{"http to a public host", func(n *store.NewApp) { n.RedirectURIs = []string{"http://app.example/cb"} }, "redirect_uris"},
		{"relative redirect URI", func(n *store.NewApp) { n.RedirectURIs = []string{"/cb"} }, "redirect_uris"},
		{"redirect URI with a fragment", func(n *store.NewApp) { n.RedirectURIs = []string{"https://app.example/cb#x"} }, "redirect_uris"},
		{"redirect URI host with a semicolon", func(n *store.NewApp) { n.RedirectURIs = []string{"https://a.example;sandbox/cb"} }, "redirect_uris"},
		{"redirect URI host with a wildcard", func(n *store.NewApp) { n.RedirectURIs = []string{"https://*/cb"} }, "redirect_uris"},
		{"redirect URI host with a comma", func(n *store.NewApp) { n.RedirectURIs = []string{"https://a,b/cb"} }, "redirect_uris"},
		{"redirect URI with user information", func(n *store.NewApp) { n.RedirectURIs = []string{"https://u:p@app.example/cb"} }, "redirect_uris"},
		{"custom scheme", func(n *store.NewApp) { n.RedirectURIs = []string{"com.example.app:/cb"} }, "redirect_uris"},
		{"redirect URI too long", func(n *store.NewApp) {
			n.RedirectURIs = []string{"https://app.example/" + strings.Repeat("a", store.MaxRedirectURILength)}
		}, "redirect_uris"},
		{"one bad redirect URI among good ones", func(n *store.NewApp) {
			n.RedirectURIs = []string{"https://app.example/cb", "http://evil.example/cb"}
		}, "redirect_uris"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := validApp(fmt.Sprintf("org-%d", i))
			tt.change(&n)
			by := store.Actor{ID: "dev-1", RequestID: "r-1"}
			a, err := s.CreateApp(ctx, n, by)
			if tt.field != "" {
				var invalid *store.InvalidError
				if !errors.As(err, &invalid) || invalid.Field != tt.field || !errors.Is(err, store.ErrInvalid) {
					t.Fatalf("CreateApp: %v, want an *InvalidError for %s", err, tt.field)
				}
				if apps, _, err := s.ListApps(ctx, store.AppQuery{OrgID: n.OrgID}); n.OrgID != "" && (err != nil || len(apps) != 0) {
					t.Errorf("a refused registration stored %d apps (%v)", len(apps), err)
				}
				return
			}
			if err != nil {
				t.Fatalf("CreateApp: %v", err)
			}
			want := store.App{ID: a.ID, Name: n.Name, RedirectURIs: n.RedirectURIs, AuthMethod: n.AuthMethod, SecretHash: n.SecretHash,
				OrgID: n.OrgID, CreatedBy: by.ID, CreatedAt: a.CreatedAt}
			if !strings.HasPrefix(a.ID, "app_") || a.CreatedAt.IsZero() || !sameApp(a, want) {
				t.Errorf("CreateApp = %+v, want %+v with an app_ id and a creation time", a, want)
			}
			got, err := s.GetApp(ctx, a.ID)
			if err != nil || !sameApp(got, a) {
				t.Errorf("GetApp = %+v, %v; want %+v", got, err, a)
			}
		})
	}
	if rev, _ := s.Revision(ctx); rev != 0 {
		t.Errorf("registering apps made revision %d: an app is not a connection change", rev)
	}
}

// Getting, paging by organisation, rotating the secret, and apps surviving
// a reopen.
func testApps(t *testing.T, open Opener) {
	s := open(t, "apps")
	ctx := context.Background()
	if _, err := s.GetApp(ctx, "app_missing"); !errors.Is(err, store.ErrAppNotFound) {
		t.Errorf("GetApp unknown: %v, want ErrAppNotFound", err)
	}
	var org1 []store.App
	for range 5 {
		org1 = append(org1, createApp(t, s, "org-1"))
		createApp(t, s, "org-2")
	}
	var got []store.App
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
		page, next, err := s.ListApps(ctx, store.AppQuery{OrgID: "org-1", Limit: 2, After: cursor})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, page...)
		if next == "" {
			break
		}
		cursor = next
	}
	if len(got) != len(org1) {
		t.Fatalf("listed %d apps of org-1, want %d", len(got), len(org1))
	}
	for i := range got {
		if !sameApp(got[i], org1[i]) {
			t.Errorf("app %d = %+v, want %+v (oldest first)", i, got[i], org1[i])
		}
	}
	for _, org := range []string{"org", "org-3"} { // a prefix of real ids, an organisation without apps
		if apps, next, err := s.ListApps(ctx, store.AppQuery{OrgID: org}); err != nil || len(apps) != 0 || next != "" {
			t.Errorf("ListApps(%s) = %d apps, next %q, %v; want none", org, len(apps), next, err)
		}
	}

	rotated, err := s.SetAppSecret(ctx, org1[0].ID, sha("second secret"))
	if err != nil || !bytes.Equal(rotated.SecretHash, sha("second secret")) {
		t.Fatalf("SetAppSecret = %+v, %v", rotated, err)
	}
	if stored, _ := s.GetApp(ctx, org1[0].ID); !bytes.Equal(stored.SecretHash, sha("second secret")) || !stored.CreatedAt.Equal(org1[0].CreatedAt) {
		t.Errorf("after rotation the stored app is %+v", stored)
	}
	public, err := s.CreateApp(ctx, store.NewApp{Name: "CLI", RedirectURIs: []string{"http://127.0.0.1/cb"}, AuthMethod: store.AuthNone, OrgID: "org-1"}, testActor)
	if err != nil {
		t.Fatal(err)
	}
	refused := []struct {
		name string
		id   string
		hash []byte
		want error
	}{
		{"public app", public.ID, sha("x"), store.ErrInvalid},
		{"empty secret", org1[1].ID, nil, store.ErrInvalid},
		{"unknown app", "app_missing", sha("x"), store.ErrAppNotFound},
	}
	for _, tt := range refused {
		if _, err := s.SetAppSecret(ctx, tt.id, tt.hash); !errors.Is(err, tt.want) {
			t.Errorf("SetAppSecret, %s: %v, want %v", tt.name, err, tt.want)
		}
	}
	if stored, _ := s.GetApp(ctx, org1[1].ID); !bytes.Equal(stored.SecretHash, org1[1].SecretHash) {
		t.Errorf("a refused rotation changed the secret")
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, "apps")
	if stored, err := s.GetApp(ctx, org1[0].ID); err != nil || !sameApp(stored, rotated) {
		t.Errorf("after reopen GetApp = %+v, %v; want %+v", stored, err, rotated)
	}
}

// Connections made through an app carry its id, are listed by it (in any
// organisation), and cannot be made for an app that does not exist.
func testAppConnections(t *testing.T, open Opener) {
	s := open(t, "app-conns")
	ctx := context.Background()
	app, other := createApp(t, s, "org-1"), createApp(t, s, "org-1")
	var mine []store.Connection
	for i := range 5 {
		mine = append(mine, createFor(t, s, app, fmt.Sprintf("org-%d", 1+i%2)))
		createFor(t, s, other, "org-1")
		create(t, s, "org-1")
	}
	s.Apply(ctx, mine[0].ID, store.ActionDisable, testActor)
	if got, err := s.Get(ctx, mine[1].ID); err != nil || got.AppID != app.ID {
		t.Errorf("Get = %+v, %v; want app_id %s", got, err, app.ID)
	}
	if plain := create(t, s, "org-1"); plain.AppID != "" {
		t.Errorf("a connection made through the API has app_id %q", plain.AppID)
	}

	ids := func(conns []store.Connection) []string {
		var out []string
		for _, c := range conns {
			out = append(out, c.ID)
		}
		return out
	}
	tests := []struct {
		name string
		q    store.ListQuery
		want []store.Connection
	}{
		{"by app", store.ListQuery{AppID: app.ID}, mine},
		{"by app and organisation", store.ListQuery{AppID: app.ID, OrgID: "org-2"}, []store.Connection{mine[1], mine[3]}},
		{"by app and status", store.ListQuery{AppID: app.ID, Statuses: []store.Status{store.StatusDisabled}}, mine[:1]},
		{"by app, after a cursor", store.ListQuery{AppID: app.ID, After: mine[2].ID}, mine[3:]},
		{"unknown app", store.ListQuery{AppID: "app_missing"}, nil},
		{"a prefix of the app's id", store.ListQuery{AppID: app.ID[:len(app.ID)-1]}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, next, err := s.List(ctx, tt.q)
			if err != nil || next != "" || !slices.Equal(ids(got), ids(tt.want)) {
				t.Errorf("List = %v, next %q, %v; want %v", ids(got), next, err, ids(tt.want))
			}
		})
	}
	var paged []store.Connection
	cursor := ""
	for range len(mine) + 1 {
		page, next, err := s.List(ctx, store.ListQuery{AppID: app.ID, Limit: 2, After: cursor})
		if err != nil {
			t.Fatal(err)
		}
		paged = append(paged, page...)
		if cursor = next; next == "" {
			break
		}
	}
	if !slices.Equal(ids(paged), ids(mine)) {
		t.Errorf("paged by app: %v, want %v", ids(paged), ids(mine))
	}

	before, _ := s.Revision(ctx)
	all, _, _ := s.List(ctx, store.ListQuery{Limit: store.MaxListLimit})
	_, err := s.Create(ctx, store.NewConnection{Name: "x", OrgID: "org-1", UserID: "u", AppID: "app_missing"}, testActor)
	if !errors.Is(err, store.ErrAppNotFound) {
		t.Errorf("Create for an unknown app: %v, want ErrAppNotFound", err)
	}
	after, _ := s.Revision(ctx)
	if still, _, _ := s.List(ctx, store.ListQuery{Limit: store.MaxListLimit}); len(still) != len(all) || after != before {
		t.Errorf("a refused Create stored something: %d connections (was %d), revision %d (was %d)", len(still), len(all), after, before)
	}
}

// Deleting an app deletes its connections as any delete does, in one go:
// revisions, change log, audit entries with the actor and reason, watchers
// woken; nothing else changes.
func testDeleteApp(t *testing.T, open Opener) {
	s := open(t, "delete-app")
	ctx := context.Background()
	app, other := createApp(t, s, "org-1"), createApp(t, s, "org-1")
	active := createFor(t, s, app, "org-1")
	disabled := createFor(t, s, app, "org-2")
	s.Apply(ctx, disabled.ID, store.ActionDisable, testActor)
	gone := createFor(t, s, app, "org-1")
	s.Apply(ctx, gone.ID, store.ActionDelete, testActor)
	untouched := []store.Connection{createFor(t, s, other, "org-1"), create(t, s, "org-1")}
	gone, _ = s.Get(ctx, gone.ID)

	before, _ := s.Revision(ctx)
	changed := s.Changed()
	by := store.Actor{ID: "dev-1", RequestID: "r-9", Reason: "app deleted"}
	deleted, err := s.DeleteApp(ctx, app.ID, by)
	if err != nil {
		t.Fatalf("DeleteApp: %v", err)
	}
	select {
	case <-changed:
	case <-time.After(time.Second):
		t.Error("deleting an app's connections did not wake watchers")
	}

	from := map[string]store.Status{active.ID: store.StatusActive, disabled.ID: store.StatusDisabled}
	if len(deleted) != len(from) {
		t.Fatalf("DeleteApp returned %+v, want the %d connections it deleted", deleted, len(from))
	}
	revisions := map[uint64]bool{}
	for _, c := range deleted {
		stored, err := s.Get(ctx, c.ID)
		if _, ok := from[c.ID]; !ok || err != nil || c.Status != store.StatusDeleted || stored.Status != store.StatusDeleted ||
			stored.Revision != c.Revision || c.Revision <= before || revisions[c.Revision] || c.AppID != app.ID {
			t.Errorf("deleted %+v, stored %+v (%v); want a distinct new revision above %d", c, stored, err, before)
		}
		revisions[c.Revision] = true
		entries, _, err := s.Audit(ctx, store.AuditQuery{ConnectionID: c.ID, Limit: 1})
		if err != nil || len(entries) != 1 {
			t.Fatalf("audit of %s: %+v, %v", c.ID, entries, err)
		}
		e := entries[0]
		if e.ID != c.Revision || e.Action != "delete" || e.FromStatus != from[c.ID] || e.ToStatus != store.StatusDeleted ||
			e.ActorID != by.ID || e.RequestID != by.RequestID || e.Reason != by.Reason || e.OrgID != c.OrgID {
			t.Errorf("audit entry %+v, want a delete from %s by %+v", e, from[c.ID], by)
		}
	}
	log, err := s.Changes(ctx, before, 100)
	if err != nil || len(log) != len(deleted) {
		t.Fatalf("change log after %d: %+v, %v; want %d deletes", before, log, err, len(deleted))
	}
	for _, ch := range log {
		if _, ok := from[ch.ID]; !ok || ch.Status != store.StatusDeleted || !revisions[ch.Revision] {
			t.Errorf("change %+v is not one of the app's deletes", ch)
		}
	}
	for _, c := range append(untouched, gone) {
		if stored, _ := s.Get(ctx, c.ID); stored.Status != c.Status || stored.Revision != c.Revision {
			t.Errorf("%s went from %s at %d to %s at %d; it was not the deleted app's, or already deleted", c.ID, c.Status, c.Revision, stored.Status, stored.Revision)
		}
	}
	if tombstones, _, _ := s.List(ctx, store.ListQuery{AppID: app.ID}); len(tombstones) != 3 {
		t.Errorf("listing by the deleted app: %d connections, want its 3 tombstones", len(tombstones))
	}

	if _, err := s.GetApp(ctx, app.ID); !errors.Is(err, store.ErrAppNotFound) {
		t.Errorf("GetApp after DeleteApp: %v, want ErrAppNotFound", err)
	}
	if apps, _, _ := s.ListApps(ctx, store.AppQuery{OrgID: "org-1"}); len(apps) != 1 || apps[0].ID != other.ID {
		t.Errorf("apps of org-1 after the delete: %+v, want only %s", apps, other.ID)
	}
	latest, _ := s.Revision(ctx)
	if _, err := s.DeleteApp(ctx, app.ID, by); !errors.Is(err, store.ErrAppNotFound) {
		t.Errorf("second DeleteApp: %v, want ErrAppNotFound", err)
	}
	if _, err := s.Create(ctx, store.NewConnection{Name: "late", OrgID: "org-1", UserID: "u", AppID: app.ID}, testActor); !errors.Is(err, store.ErrAppNotFound) {
		t.Errorf("Create for a deleted app: %v, want ErrAppNotFound", err)
	}
	empty := createApp(t, s, "org-1")
	if deleted, err := s.DeleteApp(ctx, empty.ID, by); err != nil || len(deleted) != 0 {
		t.Errorf("DeleteApp of an app without connections: %+v, %v", deleted, err)
	}
	if rev, _ := s.Revision(ctx); rev != latest {
		t.Errorf("revision %d after deletes that changed no connection, want %d", rev, latest)
	}
}

// Connections created while their app is being deleted: each is either
// refused or deleted with the app, never left active.
func testDeleteAppRace(t *testing.T, open Opener) {
	s := open(t, "delete-app-race")
	ctx := context.Background()
	app := createApp(t, s, "org-1")
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		created []string
	)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 15 {
				c, err := s.Create(ctx, store.NewConnection{Name: "x", OrgID: "org-1", UserID: "u", AppID: app.ID}, testActor)
				if errors.Is(err, store.ErrAppNotFound) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				created = append(created, c.ID)
				mu.Unlock()
			}
		}()
	}
	createFor(t, s, app, "org-1") // at least one before the delete
	if _, err := s.DeleteApp(ctx, app.ID, testActor); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for _, id := range created {
		if c, _ := s.Get(ctx, id); c.Status != store.StatusDeleted {
			t.Errorf("%s is %s after its app was deleted", id, c.Status)
		}
	}
}

// Actor.Reason reaches the audit entry, for creations and status changes.
func testAuditReason(t *testing.T, open Opener) {
	s := open(t, "audit-reason")
	ctx := context.Background()
	c, err := s.Create(ctx, store.NewConnection{Name: "a", OrgID: "org-1", UserID: "u"}, store.Actor{ID: "alice", Reason: "authorised through OAuth"})
	if err != nil {
		t.Fatal(err)
	}
	s.Apply(ctx, c.ID, store.ActionDisable, testActor)
	s.Apply(ctx, c.ID, store.ActionDelete, store.Actor{ID: "app:x", RequestID: "r-3", Reason: "rotated refresh token used again"})
	entries, _, err := s.Audit(ctx, store.AuditQuery{ConnectionID: c.ID})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ action, actor, reason string }{
		{"delete", "app:x", "rotated refresh token used again"}, {"disable", testActor.ID, ""}, {"create", "alice", "authorised through OAuth"},
	}
	if len(entries) != len(want) {
		t.Fatalf("audit %+v, want %d entries", entries, len(want))
	}
	for i, w := range want {
		if e := entries[i]; e.Action != w.action || e.ActorID != w.actor || e.Reason != w.reason {
			t.Errorf("entry %d = %+v, want %+v", i, e, w)
		}
	}
}
