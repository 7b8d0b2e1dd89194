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
)

// InvalidError says which input field is unusable and why.
type InvalidError struct {
	Field  string
	Reason string
}

func (e *InvalidError) Error() string { return fmt.Sprintf("%s %s", e.Field, e.Reason) }

// Unwrap lets errors.Is(err, ErrInvalid) match.
func (e *InvalidError) Unwrap() error { return ErrInvalid }
