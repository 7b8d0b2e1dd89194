package store

import (
	"context"
	"errors"
	"time"
)

// An AuthCode is an OAuth 2.0 authorisation code (RFC 6749 section 4.1.2):
// issued when a person approves an app, exchanged once for tokens. Only the
// sha-256 of the code is stored.
type AuthCode struct {
	Hash         []byte `json:"hash"`
	AppID        string `json:"app_id"`
	ConnectionID string `json:"connection_id"`
	RedirectURI  string `json:"redirect_uri"`
	// Challenge is the PKCE S256 code_challenge (RFC 7636).
	Challenge string    `json:"challenge"`
	Scope     string    `json:"scope,omitempty"`
	ExpiresAt time.Time `json:"expires_at"`
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
