package control_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/conngate/conngate/caddymodule/control/controltest"
	"github.com/conngate/conngate/caddymodule/controlapi"
	"github.com/conngate/conngate/store"
)

func sha256Of(s string) []byte {
	sum := sha256.Sum256([]byte(s))
	return sum[:]
}

// audit lists the audit entries of a connection, newest first.
func (f *oauthFixture) audit(t *testing.T, connectionID string) []store.AuditEntry {
	t.Helper()
	var page controlapi.AuditPage
	if code := f.s.Do(t, f.s.AdminKey, http.MethodGet, controlapi.PathAudit+"?org_id=org-1&connection_id="+connectionID, nil, &page); code != http.StatusOK {
		t.Fatalf("audit of %s: %d", connectionID, code)
	}
	return page.Entries
}

// A connection exists only once its code is redeemed: approving makes a
// code and nothing else, so an app that never comes back for its tokens
// (the code expires, the flow is abandoned) leaves no connection on the
// Connections List. The redemption creates exactly one, audited as the
// person who approved, and its tokens act through it.
func TestOAuthConnectionCreatedOnRedemption(t *testing.T) {
	f := newOAuthFixture(t)
	ctx := context.Background()
	for _, cfg := range []oauth2.Config{f.public, f.conf} {
		t.Run(cfg.ClientID, func(t *testing.T) {
			code, verifier := f.authorize(t, cfg, "developer")
			if conns := f.appConnections(t, cfg.ClientID); len(conns) != 0 {
				t.Fatalf("after the approval, before the redemption: %d connections, want none", len(conns))
			}
			tok, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatalf("exchange: %v", err)
			}
			conns := f.appConnections(t, cfg.ClientID)
			if len(conns) != 1 {
				t.Fatalf("after the redemption: %d connections, want 1", len(conns))
			}
			conn := conns[0]
			if conn.UserID != "developer" || conn.OrgID != "org-1" || conn.AppID != cfg.ClientID || conn.Status != store.StatusActive ||
				conn.Name == "" {
				t.Errorf("the redeemed connection: %+v", conn)
			}
			if in := f.introspect(t, tok.AccessToken); !in.Active || in.ConnectionID != conn.ID {
				t.Errorf("the access token acts through %q (active %v), want %s", in.ConnectionID, in.Active, conn.ID)
			}
			if in := f.introspect(t, tok.RefreshToken); !in.Active || in.ConnectionID != conn.ID {
				t.Errorf("the refresh token acts through %q (active %v), want %s", in.ConnectionID, in.Active, conn.ID)
			}
			entries := f.audit(t, conn.ID)
			if len(entries) != 1 {
				t.Fatalf("audit of the connection: %+v, want one create", entries)
			}
			if e := entries[0]; e.Action != "create" || e.ActorID != "developer" || e.Reason != "authorised "+cfg.ClientID+" through OAuth" ||
				e.ID != conn.Revision {
				t.Errorf("the create's audit entry %+v, want one by the person who approved", e)
			}
		})
	}
}

// An approval whose code is never redeemed, or redeemed too late, leaves
// nothing; a refused exchange (wrong verifier) does not create either.
func TestOAuthAbandonedApprovalLeavesNoConnection(t *testing.T) {
	f := newOAuthFixture(t)
	ctx := context.Background()
	for range 3 {
		f.authorize(t, f.public, "developer") // the app never comes back
	}
	code, verifier := f.authorize(t, f.public, "developer")
	if _, err := f.public.Exchange(ctx, code, oauth2.VerifierOption(oauth2.GenerateVerifier())); oauthCode(err) != "invalid_grant" {
		t.Errorf("wrong verifier: %v", err)
	}
	f.clock.Add(int64(61 * time.Second))
	defer f.clock.Store(0)
	if _, err := f.public.Exchange(ctx, code, oauth2.VerifierOption(verifier)); oauthCode(err) != "invalid_grant" {
		t.Errorf("expired code: %v", err)
	}
	if conns := f.appConnections(t, f.public.ClientID); len(conns) != 0 {
		t.Errorf("approvals never redeemed left %d connections, want none", len(conns))
	}
	var audit controlapi.AuditPage
	if code := f.s.Do(t, f.s.AdminKey, http.MethodGet, controlapi.PathAudit+"?org_id=org-1", nil, &audit); code != http.StatusOK || len(audit.Entries) != 0 {
		t.Errorf("approvals never redeemed wrote audit entries: %d %+v", code, audit.Entries)
	}
}

// RFC 6749 section 4.1.2: a code used twice is refused, and what its first
// use issued is revoked: the connection it created is deleted (terminal,
// as for a reused refresh token or a revocation: a disabled connection
// could be enabled again with the leaked tokens), by the app, with the
// reason in the audit log. No second connection is made.
func TestOAuthCodeRedeemedTwice(t *testing.T) {
	f := newOAuthFixture(t)
	ctx := context.Background()
	code, verifier := f.authorize(t, f.conf, "developer")
	tok, err := f.conf.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.conf.Exchange(ctx, code, oauth2.VerifierOption(verifier)); oauthCode(err) != "invalid_grant" {
		t.Fatalf("second redemption: %v, want invalid_grant", err)
	}
	conns := f.appConnections(t, f.conf.ClientID)
	if len(conns) != 1 || conns[0].Status != store.StatusDeleted {
		t.Fatalf("after a second redemption the app's connections are %+v, want the first one, deleted", conns)
	}
	if e := f.audit(t, conns[0].ID)[0]; e.Action != "delete" || e.ActorID != "app:"+f.conf.ClientID || e.Reason != "authorisation code used twice" {
		t.Errorf("the delete's audit entry %+v", e)
	}
	if in := f.introspect(t, tok.AccessToken); in.Active {
		t.Error("the first redemption's access token is still active")
	}
	if _, err := refresh(f.conf, tok.RefreshToken); oauthCode(err) != "invalid_grant" {
		t.Errorf("the first redemption's refresh token: %v", err)
	}
	// Another app presenting the code ends nothing: only the app the code
	// was issued to can.
	code, verifier = f.authorize(t, f.conf, "developer")
	tok, err = f.conf.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.public.Exchange(ctx, code, oauth2.VerifierOption(verifier)); oauthCode(err) != "invalid_grant" {
		t.Errorf("another app's second use: %v", err)
	}
	if in := f.introspect(t, tok.AccessToken); !in.Active {
		t.Error("another app's use of a redeemed code ended the grant")
	}
	// Nor does the right client_id with the code alone: a redeemed code
	// that leaked (it travels in a redirect URL) without its verifier, or
	// sent to another redirect URI, is refused and ends nothing.
	for name, opts := range map[string][]oauth2.AuthCodeOption{
		"no matching verifier": {oauth2.VerifierOption(oauth2.GenerateVerifier())},
		"another redirect_uri": {oauth2.VerifierOption(verifier), oauth2.SetAuthURLParam("redirect_uri", "https://elsewhere.example/cb")},
	} {
		if _, err := f.conf.Exchange(ctx, code, opts...); oauthCode(err) != "invalid_grant" {
			t.Errorf("a replay with %s: %v, want invalid_grant", name, err)
		}
		if in := f.introspect(t, tok.AccessToken); !in.Active {
			t.Fatalf("a replay of a redeemed code with %s ended the grant", name)
		}
	}
}

// A code approved by an earlier release, which created the connection at
// approval (replicas of both releases sharing a store during an upgrade),
// is still redeemed, for that connection, without making another.
func TestOAuthCodeApprovedWithItsConnection(t *testing.T) {
	f := newOAuthFixture(t)
	ctx := context.Background()
	conn, err := f.store.Create(ctx, store.NewConnection{Name: "Public app", OrgID: "org-1", UserID: "developer", AppID: f.public.ClientID},
		store.Actor{ID: "developer", Reason: "authorised " + f.public.ClientID + " through OAuth"})
	if err != nil {
		t.Fatal(err)
	}
	verifier := oauth2.GenerateVerifier()
	code := "code-approved-by-the-previous-release-0123456789"
	err = f.store.SaveCode(ctx, store.AuthCode{Hash: sha256Of(code), AppID: f.public.ClientID, ConnectionID: conn.ID, RedirectURI: redirectURI,
		Challenge: oauth2.S256ChallengeFromVerifier(verifier), ExpiresAt: time.Now().Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := f.public.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	if in := f.introspect(t, tok.AccessToken); !in.Active || in.ConnectionID != conn.ID {
		t.Errorf("the token acts through %q, want %s", in.ConnectionID, conn.ID)
	}
	if conns := f.appConnections(t, f.public.ClientID); len(conns) != 1 {
		t.Errorf("%d connections, want the one made at approval", len(conns))
	}
	if _, err := f.public.Exchange(ctx, code, oauth2.VerifierOption(verifier)); oauthCode(err) != "invalid_grant" {
		t.Errorf("second use: %v", err)
	}
	if got, _ := f.store.Get(ctx, conn.ID); got.Status != store.StatusDeleted {
		t.Errorf("after a second use the connection is %s, want deleted", got.Status)
	}
}

// The key sign-in of the authorisation page is throttled as API keys are:
// past the wrong keys allowed, the page (its form still there) answers 429
// with Retry-After, even to the right key.
func TestOAuthSignInThrottled(t *testing.T) {
	f := newOAuthFixture(t)
	b := controltest.Browser(t)
	signin := controltest.Get(t, b, f.public.AuthCodeURL("st", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	try := func(key string) controltest.Page {
		form := signin.Form
		form.Set("key", key)
		return controltest.Post(t, b, f.s.URL, form)
	}
	wrong := 0
	for ; wrong < 100; wrong++ {
		p := try(fmt.Sprintf("wrong-key-%d", wrong))
		if p.Status == http.StatusTooManyRequests {
			break
		}
		if p.Status != http.StatusOK || p.Header.Get("Retry-After") != "" {
			t.Fatalf("wrong key %d: %d, Retry-After %q", wrong+1, p.Status, p.Header.Get("Retry-After"))
		}
	}
	if wrong == 0 || wrong == 100 {
		t.Fatalf("throttled after %d wrong keys", wrong)
	}
	for _, key := range []string{"wrong-key-again", f.keys["developer"]} {
		p := try(key)
		retry, err := strconv.Atoi(p.Header.Get("Retry-After"))
		if p.Status != http.StatusTooManyRequests || err != nil || retry < 1 || retry > 60 {
			t.Errorf("throttled, key %q: %d, Retry-After %q", key, p.Status, p.Header.Get("Retry-After"))
		}
		if !strings.Contains(p.Body, "Too many wrong") || p.Form.Get("csrf") == "" || strings.Contains(p.Header.Get("Set-Cookie"), "conngate_session") {
			t.Errorf("the throttled page, key %q: no message or no form, or a session:\n%s", key, p.Body)
		}
	}
}
