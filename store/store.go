package store

import "context"

// Store persists connections, and the OAuth apps and grants that make
// them. Every implementation must:
//   - apply a status change with Next inside the same transaction as the
//     write, so that no interleaving can resurrect a deleted connection;
//   - give every change (creation or status change) a store-wide revision
//     greater than every earlier one, recorded on the connection;
//   - have a change durable before the call returns;
//   - record every change in a change log and an audit log, in the same
//     transaction, so the log can be replayed in revision order and misses
//     nothing, and every change is traceable to who made it (and why, with
//     Actor.Reason);
//   - delete an app's connections as such changes, and drop its codes and
//     refresh tokens, in the transaction that removes the app; and refuse
//     (ErrAppNotFound) to create a connection, save a code or save a
//     refresh token for an app that does not exist, checked in the creating
//     transaction, so that nothing made through an app outlives it.
//
// storetest.Run checks all of this for a backend.
type Store interface {
	AppStore
	GrantStore
	GatewayStore

	// Create stores a new active connection, and its audit entry. With
	// n.AppID set the app must exist, else ErrAppNotFound.
	Create(ctx context.Context, n NewConnection, by Actor) (Connection, error)
	// Get returns ErrNotFound for an unknown id.
	Get(ctx context.Context, id string) (Connection, error)
	// List returns connections in id order (creation order), and the cursor
	// to pass for the next page, empty on the last page.
	List(ctx context.Context, q ListQuery) (conns []Connection, next string, err error)
	// Apply performs action on the connection, and writes its audit entry.
	// changed is false when the connection was already in the resulting
	// status; then nothing is written and the revision stays.
	Apply(ctx context.Context, id string, action Action, by Actor) (c Connection, changed bool, err error)
	// Audit lists audit entries, newest first, and the cursor of the next
	// page (0 on the last).
	Audit(ctx context.Context, q AuditQuery) (entries []AuditEntry, next uint64, err error)
	// Changes returns up to limit changes with a revision above after,
	// oldest first. It returns ErrReplayUnavailable when that is not the
	// complete list: some of them have been dropped from the log, or after
	// is above the latest revision.
	Changes(ctx context.Context, after uint64, limit int) ([]Change, error)
	// Revision returns the latest revision (0 for an empty store).
	Revision(ctx context.Context) (uint64, error)
	// Changed returns a channel that is closed once a change commits after
	// the call, so that watchers can wait for changes without polling.
	Changed() <-chan struct{}
	// Secret returns the value stored under name, creating it with create on
	// first use. It keeps generated key material (such as the token signing
	// key) with the data it signs for, so it survives restarts.
	Secret(ctx context.Context, name string, create func() ([]byte, error)) ([]byte, error)
	Close() error
}

// ListQuery filters and pages a listing. Zero values mean "any".
type ListQuery struct {
	OrgID string
	// Statuses keeps connections in any of these statuses; empty keeps all.
	Statuses []Status
	// UserID keeps only the connections made for this user.
	UserID string
	// AppID keeps only the connections authorised for this app.
	AppID string
	// Search keeps the connections whose name contains it (ignoring case)
	// or whose id starts with it.
	Search string
	// Limit is the page size; 0 means DefaultListLimit.
	Limit int
	// After is the cursor returned by the previous page.
	After string
}

// Page size bounds for List.
const (
	DefaultListLimit = 50
	MaxListLimit     = 500
)
