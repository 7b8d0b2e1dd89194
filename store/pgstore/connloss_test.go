package pgstore

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// An ended session (pg_terminate_backend: 57P01) is a lost connection, so
// the API answers 503 store_unavailable, not 500; a refused statement is
// not.
func TestConnectionLost(t *testing.T) {
	for _, tt := range []struct {
		err  error
		lost bool
	}{
		{&pgconn.PgError{Code: "57P01", Message: "terminating connection due to administrator command"}, true},
		{fmt.Errorf("applying: %w", &pgconn.PgError{Code: "08006"}), true},
		{io.ErrUnexpectedEOF, true},
		{&pgconn.PgError{Code: "23505"}, false}, // unique violation
		{&pgconn.PgError{Code: "40001"}, false}, // serialization failure
		{errors.New("connection not found"), false},
		{nil, false},
	} {
		if got := connectionLost(tt.err); got != tt.lost {
			t.Errorf("connectionLost(%v) = %v, want %v", tt.err, got, tt.lost)
		}
	}
}
