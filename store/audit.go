package store

import "time"

// Actor is who makes a change, recorded in the audit log with it.
type Actor struct {
	// ID of the principal (or API key role) that asked for the change.
	ID string
	// RequestID ties the entry to the request's logs.
	RequestID string
	// Reason says why, when the change was not a person's decision (an
	// app revoking its grant, a refresh token reused).
	Reason string
}

// AuditEntry records one change: written in the same transaction as the
// change, and only when something changed.
type AuditEntry struct {
	// ID is the revision of the change: unique and ordered.
	ID           uint64    `json:"id"`
	Time         time.Time `json:"time"`
	ActorID      string    `json:"actor_id"`
	OrgID        string    `json:"org_id"`
	ConnectionID string    `json:"connection_id"`
	// Action is "create", "disable", "enable" or "delete".
	Action     string `json:"action"`
	FromStatus Status `json:"from_status,omitempty"`
	ToStatus   Status `json:"to_status"`
	RequestID  string `json:"request_id,omitempty"`
	Reason     string `json:"reason,omitempty"`
}

// AuditQuery filters and pages the audit log, newest first. Zero values
// mean "any".
type AuditQuery struct {
	OrgID        string
	ConnectionID string
	// Limit is the page size; 0 means DefaultListLimit.
	Limit int
	// Before is the cursor returned by the previous page: entries with a
	// lower id come next.
	Before uint64
}
