package store

import (
	"errors"
	"time"
)

// Change is one entry of the change log: the status a connection took at a
// revision. A creation is a change too (to active), so that gateways that
// cached "unknown" for a brand-new id learn of it.
type Change struct {
	Revision  uint64    `json:"revision"`
	ID        string    `json:"id"`
	Status    Status    `json:"status"`
	ChangedAt time.Time `json:"changed_at"`
	// OrgID and UserID let a subscriber see only the changes it may: a
	// person's stream carries only their organisations' connections.
	OrgID  string `json:"org_id"`
	UserID string `json:"user_id"`
}

// ErrReplayUnavailable: the change log cannot replay from the asked revision,
// because the changes after it are no longer kept, or because the revision
// is from the future (another store, or a store restored from a backup).
// A subscriber must drop whatever it derived from the log and start over.
var ErrReplayUnavailable = errors.New("the change log cannot replay from this revision")
