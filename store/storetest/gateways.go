package storetest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/conngate/conngate/store"
)

// testGateways: seen gateways are kept per gateway id and instance, survive
// a reopen, are replaced by a newer save, and are forgotten when older than
// the cut-off or on request.
func testGateways(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, "gateways")
	if got, err := s.Gateways(ctx, time.Time{}); err != nil || len(got) != 0 {
		t.Fatalf("Gateways on a new store = %v, %v; want none", got, err)
	}
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	seen := []store.GatewaySeen{
		{GatewayID: "gw-1", Instance: "a", AppliedRevision: 7, SeenAt: t0},
		{GatewayID: "gw-1", Instance: "b", AppliedRevision: 5, SeenAt: t0.Add(time.Minute)},
		{GatewayID: "gw-2", Instance: "a", AppliedRevision: 9, SeenAt: t0.Add(2 * time.Minute)},
	}
	if err := s.SaveGateways(ctx, seen, time.Time{}); err != nil {
		t.Fatalf("SaveGateways: %v", err)
	}
	s.Close()
	s = open(t, "gateways")
	defer s.Close()
	got, err := s.Gateways(ctx, time.Time{})
	if err != nil || !slices.EqualFunc(got, seen, sameGateway) {
		t.Fatalf("Gateways after reopen = %v, %v; want %v", got, err, seen)
	}
	if got, _ := s.Gateways(ctx, t0.Add(time.Minute)); len(got) != 2 || got[0].Instance != "b" {
		t.Fatalf("Gateways since t0+1m = %v; want gw-1/b and gw-2/a", got)
	}

	// A newer save replaces; the cut-off forgets the older ones.
	update := store.GatewaySeen{GatewayID: "gw-1", Instance: "b", AppliedRevision: 11, SeenAt: t0.Add(3 * time.Minute)}
	if err := s.SaveGateways(ctx, []store.GatewaySeen{update}, t0.Add(90*time.Second)); err != nil {
		t.Fatalf("SaveGateways: %v", err)
	}
	want := []store.GatewaySeen{update, seen[2]}
	if got, err := s.Gateways(ctx, time.Time{}); err != nil || !slices.EqualFunc(got, want, sameGateway) {
		t.Fatalf("Gateways after update = %v, %v; want %v", got, err, want)
	}
	if err := s.ForgetGateway(ctx, "gw-2", "a"); err != nil {
		t.Fatalf("ForgetGateway: %v", err)
	}
	if err := s.ForgetGateway(ctx, "gw-2", "never-seen"); err != nil {
		t.Fatalf("ForgetGateway of an unknown gateway: %v", err)
	}
	if got, _ := s.Gateways(ctx, time.Time{}); !slices.EqualFunc(got, want[:1], sameGateway) {
		t.Fatalf("Gateways after forgetting gw-2 = %v; want %v", got, want[:1])
	}
}

func sameGateway(a, b store.GatewaySeen) bool {
	return a.GatewayID == b.GatewayID && a.Instance == b.Instance && a.AppliedRevision == b.AppliedRevision && a.SeenAt.Equal(b.SeenAt)
}

// testFingerprints: a change read back from the log has the fingerprint of
// the change as it was written, so that a stream position taken from one
// read is recognised by the next; and two changes never share one.
func testFingerprints(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, "fingerprints")
	defer s.Close()
	c := create(t, s, "org-1")
	d, _, err := s.Apply(ctx, c.ID, store.ActionDisable, testActor)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	changes, err := s.Changes(ctx, 0, 10)
	if err != nil || len(changes) != 2 {
		t.Fatalf("Changes = %v, %v; want 2", changes, err)
	}
	written := store.Change{Revision: d.Revision, ID: d.ID, Status: d.Status, ChangedAt: d.UpdatedAt, OrgID: d.OrgID, UserID: d.UserID}
	if changes[1].Fingerprint() != written.Fingerprint() {
		t.Errorf("fingerprint read back %s != written %s (%+v vs %+v)", changes[1].Fingerprint(), written.Fingerprint(), changes[1], written)
	}
	if changes[0].Fingerprint() == changes[1].Fingerprint() {
		t.Errorf("two changes share the fingerprint %s", changes[0].Fingerprint())
	}
}
