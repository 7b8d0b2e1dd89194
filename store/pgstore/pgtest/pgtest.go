// Package pgtest gives tests a PostgreSQL schema of their own in the test
// database, so that tests running at once (in one process or several) do
// not see each other's data. The database is named by
// CONNGATE_TEST_POSTGRES_DSN; without it the tests skip, saying how to run
// them.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
)

// EnvDSN names the environment variable that holds the test database's DSN.
const EnvDSN = "CONNGATE_TEST_POSTGRES_DSN"

// DSN returns the test database's DSN, or skips t with the command that
// runs it: goTest, with the DSN set.
func DSN(t testing.TB, goTest string) string {
	t.Helper()
	dsn := os.Getenv(EnvDSN)
	if dsn == "" {
		t.Skip("no PostgreSQL to test against; run with " + EnvDSN + "=postgres://postgres@127.0.0.1:5432/test?sslmode=disable " + goTest)
	}
	return dsn
}

// Schema creates an empty schema for t in the database of dsn, dropped when
// t ends (after the cleanups registered later, such as stopping the
// processes that use it), and returns a DSN whose search_path is that
// schema.
func Schema(t testing.TB, dsn string) string {
	t.Helper()
	named, drop, err := CreateSchema(dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := drop(); err != nil {
			t.Error(err)
		}
	})
	return named
}

// CreateSchema is Schema for setups that outlive one test: it returns the
// schema's DSN and the function that drops it.
func CreateSchema(dsn string) (named string, drop func() error, err error) {
	var b [8]byte
	rand.Read(b[:])
	schema := "conngate_test_" + hex.EncodeToString(b[:])
	exec := func(sql string) error {
		ctx := context.Background()
		admin, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return fmt.Errorf("connecting to the test database: %w", err)
		}
		defer admin.Close(ctx)
		if _, err := admin.Exec(ctx, sql); err != nil {
			return fmt.Errorf("%s: %w", sql, err)
		}
		return nil
	}
	if err := exec("CREATE SCHEMA " + schema); err != nil {
		return "", nil, err
	}
	drop = func() error { return exec("DROP SCHEMA " + schema + " CASCADE") }
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		return dsn + " search_path=" + schema, drop, nil // a key=value DSN
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), drop, nil
}
