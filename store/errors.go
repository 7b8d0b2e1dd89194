package store

import (
	"errors"
	"fmt"
)

// Sentinel errors callers branch on.
var (
	// ErrNotFound: no connection has this id.
	ErrNotFound = errors.New("connection not found")
	// ErrDeleted: the connection is deleted, which is terminal; it can
	// never be enabled or disabled again.
	ErrDeleted = errors.New("connection is deleted")
	// ErrInvalid wraps every *InvalidError.
	ErrInvalid = errors.New("invalid input")
	// ErrUnavailable: the store cannot be reached (a database server that
	// is down or cut off). Nothing was written; the call may be retried.
	ErrUnavailable = errors.New("the store is unavailable")
	// ErrOutcomeUnknown: the connection to the store was lost while a
	// write was being committed; it may or may not have been applied.
	ErrOutcomeUnknown = errors.New("the store's connection was lost during the commit")
)

// InvalidError says which input field is unusable and why.
type InvalidError struct {
	Field  string
	Reason string
}

func (e *InvalidError) Error() string { return fmt.Sprintf("%s %s", e.Field, e.Reason) }

// Unwrap lets errors.Is(err, ErrInvalid) match.
func (e *InvalidError) Unwrap() error { return ErrInvalid }
