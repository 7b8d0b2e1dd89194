// Package storetest is the conformance suite every store.Store backend must
// pass: the state machine applied in the store, revisions, listing, secrets,
// durability across reopen and concurrent writers; apps, whose deletion
// deletes their connections; single-use codes and rotating refresh tokens.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/conngate/conngate/store"
)

// Opener opens the backend under test. Called twice with the same name it
// must open the same persistent data (after the first was closed); it must
// start empty for a name not used before in this test.
type Opener func(t *testing.T, name string) store.Store

// Run runs the whole suite. changeLogSize is the change log size the opener
// configures; keep it small so that the suite can fill it.
func Run(t *testing.T, open Opener, changeLogSize int) {
	t.Run("StateMachine", func(t *testing.T) { testStateMachine(t, open) })
	t.Run("Revisions", func(t *testing.T) { testRevisions(t, open) })
	t.Run("Persistence", func(t *testing.T) { testPersistence(t, open) })
	t.Run("List", func(t *testing.T) { testList(t, open) })
	t.Run("Secret", func(t *testing.T) { testSecret(t, open) })
	t.Run("ConcurrentWriters", func(t *testing.T) { testConcurrentWriters(t, open) })
	t.Run("InvalidInput", func(t *testing.T) { testInvalidInput(t, open) })
	t.Run("ChangeLog", func(t *testing.T) { testChangeLog(t, open, changeLogSize) })
	t.Run("ChangedSignal", func(t *testing.T) { testChangedSignal(t, open) })
	t.Run("Audit", func(t *testing.T) { testAudit(t, open) })
	t.Run("AuditReason", func(t *testing.T) { testAuditReason(t, open) })
	t.Run("CreateApp", func(t *testing.T) { testCreateApp(t, open) })
	t.Run("Apps", func(t *testing.T) { testApps(t, open) })
	t.Run("AppConnections", func(t *testing.T) { testAppConnections(t, open) })
	t.Run("DeleteApp", func(t *testing.T) { testDeleteApp(t, open) })
	t.Run("DeleteAppRace", func(t *testing.T) { testDeleteAppRace(t, open) })
	t.Run("Codes", func(t *testing.T) { testCodes(t, open) })
	t.Run("ConcurrentTakes", func(t *testing.T) { testConcurrentTakes(t, open) })
	t.Run("RedeemCode", func(t *testing.T) { testRedeemCode(t, open) })
	t.Run("ConcurrentRedemptions", func(t *testing.T) { testConcurrentRedemptions(t, open) })
	t.Run("RefreshTokens", func(t *testing.T) { testRefreshTokens(t, open) })
	t.Run("ConcurrentRotations", func(t *testing.T) { testConcurrentRotations(t, open) })
	t.Run("DeleteAppGrants", func(t *testing.T) { testDeleteAppGrants(t, open) })
	t.Run("Gateways", func(t *testing.T) { testGateways(t, open) })
	t.Run("Fingerprints", func(t *testing.T) { testFingerprints(t, open) })
}

// testActor is who the suite's changes are recorded as.
var testActor = store.Actor{ID: "storetest", RequestID: "req-1"}

func create(t *testing.T, s store.Store, org string) store.Connection {
	t.Helper()
	c, err := s.Create(context.Background(), store.NewConnection{Name: "app", OrgID: org, UserID: "user-1"}, testActor)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	return c
}

// put brings a fresh connection into status st through the public API.
func put(t *testing.T, s store.Store, st store.Status) store.Connection {
	t.Helper()
	c := create(t, s, "org-1")
	switch st {
	case store.StatusDisabled:
		c, _, _ = s.Apply(context.Background(), c.ID, store.ActionDisable, testActor)
	case store.StatusDeleted:
		c, _, _ = s.Apply(context.Background(), c.ID, store.ActionDelete, testActor)
	}
	if c.Status != st {
		t.Fatalf("setup: status %s, want %s", c.Status, st)
	}
	return c
}

// Every status x every action, through the store: the result must agree with
// store.Next and be what a later Get returns.
func testStateMachine(t *testing.T, open Opener) {
	s := open(t, "sm")
	ctx := context.Background()
	for _, from := range []store.Status{store.StatusActive, store.StatusDisabled, store.StatusDeleted} {
		for _, action := range []store.Action{store.ActionEnable, store.ActionDisable, store.ActionDelete} {
			t.Run(fmt.Sprintf("%s/%s", from, action), func(t *testing.T) {
				before := put(t, s, from)
				wantTo, wantChanged, wantErr := store.Next(from, action)
				got, changed, err := s.Apply(ctx, before.ID, action, testActor)
				if !errors.Is(err, wantErr) || (err == nil) != (wantErr == nil) {
					t.Fatalf("Apply err = %v, want %v", err, wantErr)
				}
				if changed != wantChanged {
					t.Errorf("changed = %v, want %v", changed, wantChanged)
				}
				stored, err := s.Get(ctx, before.ID)
				if err != nil {
					t.Fatal(err)
				}
				if stored.Status != wantTo {
					t.Errorf("stored status %s, want %s", stored.Status, wantTo)
				}
				if wantErr == nil && got.Status != wantTo {
					t.Errorf("returned status %s, want %s", got.Status, wantTo)
				}
				if wantChanged && stored.Revision <= before.Revision {
					t.Errorf("revision did not grow: %d -> %d", before.Revision, stored.Revision)
				}
				if !wantChanged && stored.Revision != before.Revision {
					t.Errorf("no-op changed revision: %d -> %d", before.Revision, stored.Revision)
				}
			})
		}
	}
	if _, _, err := s.Apply(ctx, "conn_missing", store.ActionDisable, testActor); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Apply on unknown id: %v, want ErrNotFound", err)
	}
	if _, err := s.Get(ctx, "conn_missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get unknown id: %v, want ErrNotFound", err)
	}
}

func testRevisions(t *testing.T, open Opener) {
	s := open(t, "rev")
	ctx := context.Background()
	var last uint64
	check := func(c store.Connection) {
		t.Helper()
		if c.Revision <= last {
			t.Fatalf("revision %d not above previous %d", c.Revision, last)
		}
		last = c.Revision
	}
	a := create(t, s, "org-1")
	check(a)
	b := create(t, s, "org-2")
	check(b)
	for _, step := range []struct {
		id     string
		action store.Action
	}{{a.ID, store.ActionDisable}, {b.ID, store.ActionDisable}, {a.ID, store.ActionEnable}, {b.ID, store.ActionDelete}} {
		c, _, err := s.Apply(ctx, step.id, step.action, testActor)
		if err != nil {
			t.Fatal(err)
		}
		check(c)
	}
	if got, _ := s.Get(ctx, a.ID); got.UpdatedAt.Before(got.CreatedAt) {
		t.Errorf("updated_at %v before created_at %v", got.UpdatedAt, got.CreatedAt)
	}
}

func testPersistence(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, "persist")
	a := put(t, s, store.StatusDisabled)
	d := put(t, s, store.StatusDeleted)
	key, err := s.Secret(ctx, "k", func() ([]byte, error) { return []byte("first"), nil })
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, "persist")
	for _, want := range []store.Connection{a, d} {
		got, err := s.Get(ctx, want.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != want.Status || got.Revision != want.Revision || got.Name != want.Name ||
			!got.CreatedAt.Equal(want.CreatedAt) || !got.UpdatedAt.Equal(want.UpdatedAt) {
			t.Errorf("after reopen got %+v, want %+v", got, want)
		}
	}
	if _, _, err := s.Apply(ctx, d.ID, store.ActionEnable, testActor); !errors.Is(err, store.ErrDeleted) {
		t.Errorf("enable deleted after reopen: %v, want ErrDeleted", err)
	}
	again, _ := s.Secret(ctx, "k", func() ([]byte, error) { return []byte("second"), nil })
	if string(again) != string(key) {
		t.Errorf("secret after reopen %q, want %q", again, key)
	}
	c := create(t, s, "org-1")
	if c.Revision <= d.Revision {
		t.Errorf("revision went back after reopen: %d <= %d", c.Revision, d.Revision)
	}
	if log, err := s.Changes(ctx, 0, 100); err != nil || uint64(len(log)) != c.Revision {
		t.Errorf("change log after reopen: %d changes, %v; want %d", len(log), err, c.Revision)
	}
}

func testList(t *testing.T, open Opener) {
	s := open(t, "list")
	ctx := context.Background()
	var org1 []store.Connection
	for i := range 7 {
		org1 = append(org1, create(t, s, "org-1"))
		create(t, s, "org-2")
		if i%3 == 0 {
			s.Apply(ctx, org1[i].ID, store.ActionDisable, testActor)
		}
	}
	// Page through org-1 two at a time: every connection once, in id order.
	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("pagination does not end")
		}
		page, next, err := s.List(ctx, store.ListQuery{OrgID: "org-1", Limit: 2, After: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range page {
			if c.OrgID != "org-1" {
				t.Fatalf("org filter leaked %s", c.OrgID)
			}
			got = append(got, c.ID)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if len(got) != len(org1) {
		t.Fatalf("listed %d, want %d", len(got), len(org1))
	}
	for i := range got {
		if got[i] != org1[i].ID {
			t.Fatalf("order: got[%d]=%s, want %s", i, got[i], org1[i].ID)
		}
	}

	disabled, next, err := s.List(ctx, store.ListQuery{OrgID: "org-1", Statuses: []store.Status{store.StatusDisabled}})
	if err != nil || next != "" {
		t.Fatalf("List disabled: %v next=%q", err, next)
	}
	if len(disabled) != 3 {
		t.Errorf("disabled in org-1: %d, want 3", len(disabled))
	}
	if both, _, _ := s.List(ctx, store.ListQuery{OrgID: "org-1", Statuses: []store.Status{store.StatusDisabled, store.StatusActive}}); len(both) != 7 {
		t.Errorf("active or disabled in org-1: %d, want 7", len(both))
	}
	all, _, _ := s.List(ctx, store.ListQuery{Limit: 100})
	if len(all) != 14 {
		t.Errorf("all: %d, want 14", len(all))
	}
	found, _, _ := s.List(ctx, store.ListQuery{OrgID: "org-1", Search: org1[2].ID[:len(org1[2].ID)-2]})
	if len(found) == 0 || found[0].ID != org1[2].ID {
		t.Errorf("search by id prefix: %+v", found)
	}
	if named, _, _ := s.List(ctx, store.ListQuery{Search: "APP"}); len(named) != 14 {
		t.Errorf("search by name, any case: %d, want 14", len(named))
	}
	if none, _, _ := s.List(ctx, store.ListQuery{Search: "zapier"}); len(none) != 0 {
		t.Errorf("search for an absent name: %d", len(none))
	}
	none, next, _ := s.List(ctx, store.ListQuery{OrgID: "org"}) // a prefix of real org ids
	if len(none) != 0 || next != "" {
		t.Errorf("org prefix matched %d connections", len(none))
	}
}

func testSecret(t *testing.T, open Opener) {
	s := open(t, "secret")
	ctx := context.Background()
	calls := 0
	gen := func() ([]byte, error) { calls++; return []byte{1, 2, 3}, nil }
	a, err := s.Secret(ctx, "signing", gen)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := s.Secret(ctx, "signing", gen)
	if calls != 1 || string(a) != string(b) {
		t.Errorf("secret created %d times, %v vs %v", calls, a, b)
	}
	boom := errors.New("boom")
	if _, err := s.Secret(ctx, "other", func() ([]byte, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Errorf("create error not returned: %v", err)
	}
}

// Many goroutines toggling and deleting the same connections: every change
// gets a distinct revision, and no connection comes back from deleted.
func testConcurrentWriters(t *testing.T, open Opener) {
	s := open(t, "concurrent")
	ctx := context.Background()
	conns := []store.Connection{create(t, s, "org-1"), create(t, s, "org-1"), create(t, s, "org-1")}
	var (
		mu        sync.Mutex
		revisions = map[uint64]bool{}
		wg        sync.WaitGroup
	)
	actions := []store.Action{store.ActionDisable, store.ActionEnable, store.ActionDisable, store.ActionEnable, store.ActionDelete}
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 40 {
				c := conns[(w+i)%len(conns)]
				got, changed, err := s.Apply(ctx, c.ID, actions[(w*7+i)%len(actions)], testActor)
				if err != nil && !errors.Is(err, store.ErrDeleted) {
					t.Error(err)
					return
				}
				if changed {
					mu.Lock()
					if revisions[got.Revision] {
						t.Errorf("revision %d given twice", got.Revision)
					}
					revisions[got.Revision] = true
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	for _, c := range conns {
		got, _ := s.Get(ctx, c.ID)
		if got.Status != store.StatusDeleted {
			t.Errorf("%s ended %s; every connection was deleted at some point and must stay deleted", c.ID, got.Status)
		}
	}
}

func testInvalidInput(t *testing.T, open Opener) {
	s := open(t, "invalid")
	_, err := s.Create(context.Background(), store.NewConnection{Name: "", OrgID: "o", UserID: "u"}, testActor)
	if !errors.Is(err, store.ErrInvalid) {
		t.Errorf("empty name: %v, want ErrInvalid", err)
	}
	all, _, _ := s.List(context.Background(), store.ListQuery{})
	if len(all) != 0 {
		t.Errorf("invalid create stored %d connections", len(all))
	}
}

func testChangeLog(t *testing.T, open Opener, logSize int) {
	s := open(t, "changelog")
	ctx := context.Background()
	if rev, err := s.Revision(ctx); err != nil || rev != 0 {
		t.Fatalf("empty store revision %d, %v", rev, err)
	}
	if got, err := s.Changes(ctx, 0, 10); err != nil || len(got) != 0 {
		t.Fatalf("empty store changes %v, %v", got, err)
	}
	a := create(t, s, "org-1")
	s.Apply(ctx, a.ID, store.ActionDisable, testActor)
	s.Apply(ctx, a.ID, store.ActionDisable, testActor) // no-op: not logged
	b := create(t, s, "org-2")
	s.Apply(ctx, b.ID, store.ActionDelete, testActor)

	got, err := s.Changes(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		id     string
		status store.Status
	}{{a.ID, store.StatusActive}, {a.ID, store.StatusDisabled}, {b.ID, store.StatusActive}, {b.ID, store.StatusDeleted}}
	if len(got) != len(want) {
		t.Fatalf("log %+v, want %d changes", got, len(want))
	}
	for i, w := range want {
		if got[i].ID != w.id || got[i].Status != w.status || got[i].Revision != uint64(i+1) || got[i].ChangedAt.IsZero() || got[i].OrgID == "" || got[i].UserID == "" {
			t.Errorf("change %d = %+v, want %s %s at revision %d", i, got[i], w.id, w.status, i+1)
		}
	}
	if page, _ := s.Changes(ctx, 1, 2); len(page) != 2 || page[0].Revision != 2 || page[1].Revision != 3 {
		t.Errorf("Changes(after 1, limit 2) = %+v", page)
	}
	if rest, err := s.Changes(ctx, 4, 10); err != nil || len(rest) != 0 {
		t.Errorf("Changes at the latest revision: %v, %v", rest, err)
	}
	if _, err := s.Changes(ctx, 5, 10); !errors.Is(err, store.ErrReplayUnavailable) {
		t.Errorf("Changes after a future revision: %v, want ErrReplayUnavailable", err)
	}

	// Fill past the log's size: the oldest changes go, replay from before
	// them is refused, replay from what is kept still works.
	for range logSize {
		s.Apply(ctx, a.ID, store.ActionEnable, testActor)
		s.Apply(ctx, a.ID, store.ActionDisable, testActor)
	}
	latest, _ := s.Revision(ctx)
	if _, err := s.Changes(ctx, 0, 10); !errors.Is(err, store.ErrReplayUnavailable) {
		t.Errorf("replay from 0 after compaction: %v, want ErrReplayUnavailable", err)
	}
	from := latest - uint64(logSize)
	kept, err := s.Changes(ctx, from, logSize+10)
	if err != nil || len(kept) != logSize || kept[len(kept)-1].Revision != latest {
		t.Errorf("replay of the kept %d changes: %d changes, %v", logSize, len(kept), err)
	}
}

// Changed wakes watchers on a committed change and not on a no-op.
func testChangedSignal(t *testing.T, open Opener) {
	s := open(t, "changed")
	ctx := context.Background()
	c := create(t, s, "org-1")
	ch := s.Changed()
	s.Apply(ctx, c.ID, store.ActionEnable, testActor) // no-op
	select {
	case <-ch:
		t.Fatal("a no-op woke watchers")
	case <-time.After(20 * time.Millisecond):
	}
	s.Apply(ctx, c.ID, store.ActionDisable, testActor)
	select {
	case <-ch:
	case <-time.After(time.Second):
		t.Fatal("a change did not wake watchers")
	}
	ch = s.Changed()
	create(t, s, "org-1")
	select {
	case <-ch:
	case <-time.After(time.Second):
		t.Fatal("a creation did not wake watchers")
	}
}

// The audit log: one entry per change, written with it, none for no-ops or
// refused actions; filtered by organisation or connection, newest first.
func testAudit(t *testing.T, open Opener) {
	s := open(t, "audit")
	ctx := context.Background()
	alice := store.Actor{ID: "alice", RequestID: "r-1"}
	a, err := s.Create(ctx, store.NewConnection{Name: "a", OrgID: "org-1", UserID: "u"}, alice)
	if err != nil {
		t.Fatal(err)
	}
	b := create(t, s, "org-2")
	s.Apply(ctx, a.ID, store.ActionDisable, store.Actor{ID: "bob", RequestID: "r-2"})
	s.Apply(ctx, a.ID, store.ActionDisable, alice) // no-op: no entry
	s.Apply(ctx, a.ID, store.ActionDelete, alice)
	if _, _, err := s.Apply(ctx, a.ID, store.ActionEnable, alice); !errors.Is(err, store.ErrDeleted) {
		t.Fatalf("enable deleted: %v", err) // refused: no entry
	}
	s.Apply(ctx, b.ID, store.ActionDisable, testActor)

	org1, next, err := s.Audit(ctx, store.AuditQuery{OrgID: "org-1"})
	if err != nil || next != 0 {
		t.Fatalf("Audit: %v, next %d", err, next)
	}
	want := []struct {
		action   string
		from, to store.Status
		actor    string
	}{{"delete", store.StatusDisabled, store.StatusDeleted, "alice"}, {"disable", store.StatusActive, store.StatusDisabled, "bob"}, {"create", "", store.StatusActive, "alice"}}
	if len(org1) != len(want) {
		t.Fatalf("org-1 audit %+v, want %d entries", org1, len(want))
	}
	for i, w := range want {
		e := org1[i]
		if e.Action != w.action || e.FromStatus != w.from || e.ToStatus != w.to || e.ActorID != w.actor || e.ConnectionID != a.ID || e.OrgID != "org-1" || e.Time.IsZero() {
			t.Errorf("entry %d = %+v, want %+v", i, e, w)
		}
	}
	if org1[1].RequestID != "r-2" {
		t.Errorf("request id %q", org1[1].RequestID)
	}
	got, _ := s.Get(ctx, a.ID)
	if org1[0].ID != got.Revision {
		t.Errorf("entry id %d, want the change's revision %d", org1[0].ID, got.Revision)
	}

	byConn, _, _ := s.Audit(ctx, store.AuditQuery{ConnectionID: b.ID})
	if len(byConn) != 2 || byConn[0].Action != "disable" || byConn[1].Action != "create" {
		t.Errorf("by connection: %+v", byConn)
	}
	if other, _, _ := s.Audit(ctx, store.AuditQuery{OrgID: "org-1", ConnectionID: b.ID}); len(other) != 0 {
		t.Errorf("org filter leaked another organisation's entries: %+v", other)
	}
	var all []uint64
	var cursor uint64
	for range 10 {
		page, next, err := s.Audit(ctx, store.AuditQuery{Limit: 2, Before: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page {
			all = append(all, e.ID)
		}
		if next == 0 {
			break
		}
		cursor = next
	}
	if len(all) != 5 {
		t.Fatalf("paged audit ids %v, want 5", all)
	}
	for i := 1; i < len(all); i++ {
		if all[i] >= all[i-1] {
			t.Fatalf("audit not newest first: %v", all)
		}
	}
}
