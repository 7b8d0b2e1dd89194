package store

import (
	"testing"
	"time"
)

func TestFingerprintCoversEveryField(t *testing.T) {
	base := Change{Revision: 7, ID: "c1", Status: StatusDisabled, ChangedAt: time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC), OrgID: "o", UserID: "u"}
	if base.Fingerprint() != base.Fingerprint() || len(base.Fingerprint()) != 16 {
		t.Fatalf("fingerprint %q is not stable or not 16 hex digits", base.Fingerprint())
	}
	local := base
	local.ChangedAt = base.ChangedAt.In(time.FixedZone("x", 3600))
	if local.Fingerprint() != base.Fingerprint() {
		t.Error("the same instant in another zone changed the fingerprint")
	}
	variants := []func(*Change){
		func(c *Change) { c.Revision++ },
		func(c *Change) { c.ID = "c2" },
		func(c *Change) { c.Status = StatusActive },
		func(c *Change) { c.ChangedAt = c.ChangedAt.Add(time.Microsecond) },
		func(c *Change) { c.OrgID = "o2" },
		func(c *Change) { c.UserID = "u2" },
		func(c *Change) { c.OrgID, c.UserID = "ou", "" }, // field boundaries count
	}
	for i, vary := range variants {
		c := base
		vary(&c)
		if c.Fingerprint() == base.Fingerprint() {
			t.Errorf("variant %d has the base's fingerprint", i)
		}
	}
}
