package pgstore

import (
	"errors"
	"io"
	"net"

	"github.com/jackc/pgx/v5/pgconn"
)

// connectionLost reports whether err means the connection to PostgreSQL is
// gone, not that the statement was refused: it could not connect, the
// network failed, or the server ended the session (SQLSTATE class 08,
// connection exception; 57P01-57P03, an administrator's
// pg_terminate_backend, a shutdown or a restart). The server rolls back the
// transaction of a session it ends.
func connectionLost(err error) bool {
	if err == nil {
		return false
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	if errors.As(err, &connectErr) || errors.As(err, &netErr) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case len(pgErr.Code) == 5 && pgErr.Code[:2] == "08",
			pgErr.Code == "57P01", pgErr.Code == "57P02", pgErr.Code == "57P03":
			return true
		}
	}
	return false
}
