package store

import (
	"context"
	"errors"
	"time"
)

// An AuthCode is an OAuth 2.0 authorisation code (RFC 6749 section 4.1.2):
// issued when a person approves an app, redeemed once for tokens. Only the
// sha-256 of the code is stored. Approving stores only the code: the
// connection is created when the code is redeemed (RedeemCode), so that a
// flow abandoned after the approval leaves no connection behind.
type AuthCode struct {
	Hash        []byte `json:"hash"`
	AppID       string `json:"app_id"`
	RedirectURI string `json:"redirect_uri"`
	// Challenge is the PKCE S256 code_challenge (RFC 7636).
	Challenge string    `json:"challenge"`
	Scope     string    `json:"scope,omitempty"`
	ExpiresAt time.Time `json:"expires_at"`
	// Connection is what redeeming the code creates, as the person
	// approved it: named after the app, for that person, in the
	// organisation they chose. Its AppID is the code's.
	Connection NewConnection `json:"connection"`
	// ApprovedBy is who approved (with the approval's request id and why):
	// the actor of the connection's creation in the audit log.
	ApprovedBy Actor `json:"approved_by"`
	// ConnectionID is the connection made when the code was redeemed;
	// empty until then. A code saved with it set was approved by a release
	// that created the connection at approval: it is taken with TakeCode,
	// never redeemed.
	ConnectionID string `json:"connection_id,omitempty"`
}

// Redeemable returns the connection that redeeming c creates, or the
// *InvalidError that says why c cannot be redeemed with first as that
// connection's refresh token. Every store checks it in its RedeemCode.
func (c AuthCode) Redeemable(first RefreshToken) (NewConnection, error) {
	if c.ConnectionID != "" {
		return NewConnection{}, &InvalidError{Field: "code", Reason: "has its connection already (created at approval): take it, do not redeem it"}
	}
	n := c.Connection
	n.AppID = c.AppID
	if err := n.Validate(); err != nil {
		return NewConnection{}, err
	}
	if first.AppID != c.AppID {
		return NewConnection{}, &InvalidError{Field: "refresh token", Reason: "must be of the code's app"}
	}
	return n, nil
}

// A RefreshToken lets an app get new access tokens for a connection. Only
// its sha-256 is stored. Tokens rotate: each use replaces the token with a
// new one, and the used one is kept (with RotatedAt) so that a reuse can be
// recognised.
type RefreshToken struct {
	Hash         []byte    `json:"hash"`
	AppID        string    `json:"app_id"`
	ConnectionID string    `json:"connection_id"`
	Scope        string    `json:"scope,omitempty"`
	IssuedAt     time.Time `json:"issued_at"`
	// RotatedAt is when the token was used and replaced; zero while it is
	// the connection's current token.
	RotatedAt time.Time `json:"rotated_at,omitempty"`
	// ReplacedBy is the hash of the token that replaced it.
	ReplacedBy []byte `json:"replaced_by,omitempty"`
}

// Errors of the grant store.
var (
	// ErrGrantNotFound: no code or refresh token has this hash (or it has
	// been dropped since its connection or app went away).
	ErrGrantNotFound = errors.New("grant not found")
	// ErrCodeUsed: the code was exchanged before. The code is still
	// returned, so that the caller can end what the first exchange issued.
	ErrCodeUsed = errors.New("authorisation code already used")
	// ErrRefreshReused: a rotated refresh token was presented again outside
	// the overlap. The token is still returned, so that the caller can end
	// the grant.
	ErrRefreshReused = errors.New("refresh token already rotated")
)

// GrantStore keeps authorisation codes and refresh tokens.
type GrantStore interface {
	// SaveCode stores a new code.
	SaveCode(ctx context.Context, c AuthCode) error
	// GetCode returns the code without taking it, with ErrCodeUsed when it
	// was taken, or ErrGrantNotFound. The token endpoint checks a code with
	// it before taking it, so that a failed attempt (a wrong verifier, the
	// wrong client) does not use the code up.
	GetCode(ctx context.Context, hash []byte) (AuthCode, error)
	// TakeCode marks the code used and returns it. A second take returns
	// the code with ErrCodeUsed; an unknown one ErrGrantNotFound. Expiry is
	// the caller's to check.
	TakeCode(ctx context.Context, hash []byte) (AuthCode, error)
	// RedeemCode takes an unused code and creates the connection it grants,
	// in one transaction, so that no interleaving, failure or crash leaves
	// a taken code without its connection or a connection without its
	// taken code: the connection (the code's Connection, for its app) is
	// stored active, as Create stores one, with its change log entry and
	// its audit entry by the code's ApprovedBy; first is stored as the
	// connection's refresh token (its ConnectionID set to the new
	// connection's; it must be of the code's app); and the code is marked
	// used with the connection's id. It returns the code as it is then and
	// the connection. A code taken before is returned (with the connection
	// of its redemption) with ErrCodeUsed and nothing changes; an unknown
	// code, or one whose app is gone, is ErrGrantNotFound. A code without a
	// valid Connection (one with a ConnectionID, see AuthCode) is an
	// *InvalidError. Expiry is the caller's to check.
	RedeemCode(ctx context.Context, hash []byte, first RefreshToken) (AuthCode, Connection, error)
	// SaveRefreshToken stores a new current refresh token.
	SaveRefreshToken(ctx context.Context, t RefreshToken) error
	// GetRefreshToken returns the token with this hash, current or rotated.
	GetRefreshToken(ctx context.Context, hash []byte) (RefreshToken, error)
	// RotateRefreshToken replaces the token with hash by next, in one
	// transaction. A current token is replaced. A rotated one is replaced
	// only if it was rotated at most overlap before now and its replacement
	// is still current (the retry of a client that lost the answer, or
	// another worker of the app refreshing with the same token); then that
	// replacement is rotated too and the presented token's replacement is
	// next, so it may be retried again within its overlap. Otherwise it
	// returns the presented token with ErrRefreshReused and changes nothing.
	RotateRefreshToken(ctx context.Context, hash []byte, next RefreshToken, now time.Time, overlap time.Duration) (RefreshToken, error)
}
