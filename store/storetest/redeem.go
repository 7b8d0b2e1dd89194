package storetest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/conngate/conngate/store"
)

// approver is who approves the suite's codes: the creator of their
// connections.
var approver = store.Actor{ID: "dana", RequestID: "req-approve", Reason: "authorised through OAuth"}

// approvedCode is a code as the consent page saves it: no connection yet,
// the one to create when it is redeemed.
func approvedCode(app store.App, name string) store.AuthCode {
	return store.AuthCode{Hash: sha(name), AppID: app.ID, RedirectURI: app.RedirectURIs[0],
		Challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", Scope: "read", ExpiresAt: time.Now().Add(time.Minute),
		Connection: store.NewConnection{Name: app.Name, OrgID: app.OrgID, UserID: approver.ID}, ApprovedBy: approver}
}

func firstToken(app store.App, name string) store.RefreshToken {
	return store.RefreshToken{Hash: sha(name), AppID: app.ID, Scope: "read", IssuedAt: t0}
}

// appConnections lists the connections made through app.
func appConnections(t *testing.T, s store.Store, app store.App) []store.Connection {
	t.Helper()
	conns, _, err := s.List(context.Background(), store.ListQuery{AppID: app.ID})
	if err != nil {
		t.Fatal(err)
	}
	return conns
}

// Redeeming a code creates its connection, as Create does (revision,
// change log, audit entry by the approver, watchers woken), with its first
// refresh token, and uses the code up, all at once: before it there is no
// connection; a second redemption, a failed one, or one of a code that
// cannot be redeemed creates nothing.
func testRedeemCode(t *testing.T, open Opener) {
	s := open(t, "redeem")
	ctx := context.Background()
	app := createApp(t, s, "org-1")
	code := approvedCode(app, "code-1")
	if err := s.SaveCode(ctx, code); err != nil {
		t.Fatalf("SaveCode: %v", err)
	}
	if got, err := s.GetCode(ctx, code.Hash); err != nil || !sameCode(got, code) || got.Connection != code.Connection || got.ApprovedBy != approver {
		t.Fatalf("GetCode = %+v, %v; want %+v", got, err, code)
	}
	if conns := appConnections(t, s, app); len(conns) != 0 {
		t.Fatalf("a saved code made %d connections, want none until it is redeemed", len(conns))
	}
	before, err := s.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}

	changed := s.Changed()
	taken, conn, err := s.RedeemCode(ctx, code.Hash, firstToken(app, "refresh-1"))
	if err != nil {
		t.Fatalf("RedeemCode: %v", err)
	}
	select {
	case <-changed:
	case <-time.After(time.Second):
		t.Error("a redemption did not wake watchers")
	}
	want := store.Connection{ID: conn.ID, Name: app.Name, OrgID: "org-1", UserID: approver.ID, AppID: app.ID, Status: store.StatusActive}
	if conn.ID == "" || conn.Name != want.Name || conn.OrgID != want.OrgID || conn.UserID != want.UserID || conn.AppID != want.AppID ||
		conn.Status != want.Status || conn.Revision != before+1 || conn.CreatedAt.IsZero() || !conn.UpdatedAt.Equal(conn.CreatedAt) {
		t.Errorf("redeemed connection %+v, want %+v at revision %d", conn, want, before+1)
	}
	if taken.ConnectionID != conn.ID || !sameCodeBut(taken, code) {
		t.Errorf("RedeemCode returned the code %+v, want %+v with connection %s", taken, code, conn.ID)
	}
	if got, err := s.Get(ctx, conn.ID); err != nil || !sameConnection(got, conn) {
		t.Errorf("Get of the redeemed connection = %+v, %v; want %+v", got, err, conn)
	}
	if conns := appConnections(t, s, app); len(conns) != 1 || !sameConnection(conns[0], conn) {
		t.Errorf("after the redemption the app's connections are %+v, want only %+v", conns, conn)
	}
	changes, err := s.Changes(ctx, before, 10)
	if err != nil || len(changes) != 1 || changes[0].ID != conn.ID || changes[0].Revision != conn.Revision || changes[0].Status != store.StatusActive {
		t.Errorf("change log after the redemption: %+v, %v", changes, err)
	}
	entries, _, err := s.Audit(ctx, store.AuditQuery{ConnectionID: conn.ID})
	if err != nil || len(entries) != 1 {
		t.Fatalf("audit of the redeemed connection: %+v, %v", entries, err)
	}
	if e := entries[0]; e.ID != conn.Revision || e.Action != "create" || e.ActorID != approver.ID || e.RequestID != approver.RequestID ||
		e.Reason != approver.Reason || e.OrgID != "org-1" || e.ToStatus != store.StatusActive || e.FromStatus != "" {
		t.Errorf("audit entry of the redemption %+v, want a create by %+v", e, approver)
	}
	wantToken := firstToken(app, "refresh-1")
	wantToken.ConnectionID = conn.ID
	if got, err := s.GetRefreshToken(ctx, wantToken.Hash); err != nil || !sameToken(got, wantToken) {
		t.Errorf("the first refresh token = %+v, %v; want %+v", got, err, wantToken)
	}

	// Used up: every later redemption, take or read says so, with the
	// connection the first made (to end it), and changes nothing.
	for i := range 2 {
		got, again, err := s.RedeemCode(ctx, code.Hash, firstToken(app, "refresh-again"))
		if !errors.Is(err, store.ErrCodeUsed) || got.ConnectionID != conn.ID || again != (store.Connection{}) {
			t.Errorf("redemption %d = %+v, %+v, %v; want the code of %s with ErrCodeUsed", i+2, got, again, err, conn.ID)
		}
	}
	if got, err := s.GetCode(ctx, code.Hash); !errors.Is(err, store.ErrCodeUsed) || got.ConnectionID != conn.ID {
		t.Errorf("GetCode after the redemption = %+v, %v", got, err)
	}
	if _, err := s.TakeCode(ctx, code.Hash); !errors.Is(err, store.ErrCodeUsed) {
		t.Errorf("TakeCode after the redemption: %v, want ErrCodeUsed", err)
	}
	if _, err := s.GetRefreshToken(ctx, sha("refresh-again")); !errors.Is(err, store.ErrGrantNotFound) {
		t.Errorf("a refused redemption stored its refresh token: %v", err)
	}
	if rev, _ := s.Revision(ctx); rev != conn.Revision {
		t.Errorf("revision %d after refused redemptions, want %d", rev, conn.Revision)
	}

	unused := approvedCode(app, "code-2")
	legacy := approvedCode(app, "code-legacy")
	legacy.Connection, legacy.ConnectionID = store.NewConnection{}, conn.ID
	invalid := approvedCode(app, "code-invalid")
	invalid.Connection.UserID = "no spaces allowed"
	other := createApp(t, s, "org-1")
	for _, c := range []store.AuthCode{unused, legacy, invalid} {
		if err := s.SaveCode(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SaveRefreshToken(ctx, store.RefreshToken{Hash: sha("taken hash"), AppID: app.ID, ConnectionID: conn.ID, IssuedAt: t0}); err != nil {
		t.Fatal(err)
	}
	refused := []struct {
		name  string
		code  []byte
		first store.RefreshToken
		want  error
	}{
		{"unknown code", sha("never issued"), firstToken(app, "refresh-2"), store.ErrGrantNotFound},
		{"code approved with its connection", legacy.Hash, firstToken(app, "refresh-2"), store.ErrInvalid},
		{"code of a connection that cannot be", invalid.Hash, firstToken(app, "refresh-2"), store.ErrInvalid},
		{"refresh token of another app", unused.Hash, firstToken(other, "refresh-2"), store.ErrInvalid},
		{"refresh token without a hash", unused.Hash, store.RefreshToken{AppID: app.ID}, store.ErrInvalid},
		// The connection is created before the token is stored: this one
		// fails at the last step, and nothing of it may stay.
		{"refresh token hash in use", unused.Hash, firstToken(app, "taken hash"), nil},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			_, got, err := s.RedeemCode(ctx, tt.code, tt.first)
			if err == nil || tt.want != nil && !errors.Is(err, tt.want) || got != (store.Connection{}) {
				t.Errorf("RedeemCode = %+v, %v; want %v", got, err, tt.want)
			}
			if rev, _ := s.Revision(ctx); rev != conn.Revision {
				t.Errorf("a refused redemption took revision %d", rev)
			}
			if conns := appConnections(t, s, app); len(conns) != 1 {
				t.Errorf("a refused redemption left %d connections, want the 1 before it", len(conns))
			}
		})
	}
	for _, c := range []store.AuthCode{unused, legacy, invalid} {
		if _, err := s.GetCode(ctx, c.Hash); err != nil {
			t.Errorf("a refused redemption used the code up: %v", err)
		}
	}
	if _, err := s.GetRefreshToken(ctx, sha("refresh-2")); !errors.Is(err, store.ErrGrantNotFound) {
		t.Errorf("a refused redemption stored its refresh token: %v", err)
	}

	if _, err := s.DeleteApp(ctx, app.ID, testActor); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.RedeemCode(ctx, unused.Hash, firstToken(app, "refresh-3")); !errors.Is(err, store.ErrGrantNotFound) {
		t.Errorf("RedeemCode after DeleteApp: %v, want ErrGrantNotFound", err)
	}

	// Durable: after a reopen the code is still used, its connection there.
	kept := approvedCode(other, "code-kept")
	if err := s.SaveCode(ctx, kept); err != nil {
		t.Fatal(err)
	}
	_, keptConn, err := s.RedeemCode(ctx, kept.Hash, firstToken(other, "refresh-kept"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, "redeem")
	if got, err := s.GetCode(ctx, kept.Hash); !errors.Is(err, store.ErrCodeUsed) || got.ConnectionID != keptConn.ID {
		t.Errorf("a redeemed code after reopen = %+v, %v", got, err)
	}
	if got, err := s.Get(ctx, keptConn.ID); err != nil || !sameConnection(got, keptConn) {
		t.Errorf("a redeemed connection after reopen = %+v, %v", got, err)
	}
}

func sameConnection(a, b store.Connection) bool {
	return a.ID == b.ID && a.Name == b.Name && a.OrgID == b.OrgID && a.UserID == b.UserID && a.AppID == b.AppID &&
		a.Status == b.Status && a.CreatedAt.Equal(b.CreatedAt) && a.UpdatedAt.Equal(b.UpdatedAt) && a.Revision == b.Revision
}

// sameCodeBut compares the codes but for the connection made of them.
func sameCodeBut(a, b store.AuthCode) bool {
	a.ConnectionID, b.ConnectionID = "", ""
	return sameCode(a, b) && a.Connection == b.Connection && a.ApprovedBy == b.ApprovedBy
}

// Concurrent redemptions of one code, as by an app's retry on another
// replica: exactly one creates a connection; every other gets ErrCodeUsed
// with the winner's connection.
func testConcurrentRedemptions(t *testing.T, open Opener) {
	s := open(t, "redeem-race")
	app := createApp(t, s, "org-1")
	code := approvedCode(app, "code-1")
	if err := s.SaveCode(context.Background(), code); err != nil {
		t.Fatal(err)
	}
	type result struct {
		code store.AuthCode
		conn store.Connection
		err  error
	}
	results := make([]result, 8)
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() {
			r := &results[i]
			r.code, r.conn, r.err = s.RedeemCode(context.Background(), code.Hash, firstToken(app, "refresh-"+string(rune('a'+i))))
		})
	}
	wg.Wait()
	var winner store.Connection
	for _, r := range results {
		if r.err == nil {
			if winner.ID != "" {
				t.Fatalf("two redemptions succeeded: %s and %s", winner.ID, r.conn.ID)
			}
			winner = r.conn
		}
	}
	if winner.ID == "" {
		t.Fatalf("no redemption succeeded: %+v", results)
	}
	for _, r := range results {
		if r.err != nil && (!errors.Is(r.err, store.ErrCodeUsed) || r.code.ConnectionID != winner.ID) {
			t.Errorf("a losing redemption: %+v, %v; want ErrCodeUsed with %s", r.code, r.err, winner.ID)
		}
	}
	if conns := appConnections(t, s, app); len(conns) != 1 || conns[0].ID != winner.ID {
		t.Errorf("after concurrent redemptions the app has %+v, want only %s", conns, winner.ID)
	}
	tokens := 0
	for i := range results {
		if tok, err := s.GetRefreshToken(context.Background(), sha("refresh-"+string(rune('a'+i)))); err == nil {
			tokens++
			if tok.ConnectionID != winner.ID {
				t.Errorf("a refresh token of %s, want %s", tok.ConnectionID, winner.ID)
			}
		}
	}
	if tokens != 1 {
		t.Errorf("%d refresh tokens stored by concurrent redemptions, want 1", tokens)
	}
}
