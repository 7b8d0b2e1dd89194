package pgstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// migrations are the schema's versions, in order: migration i brings the
// schema to version i+1. They are append-only and never destructive (no
// DROP, no data rewritten): a replica of the previous release keeps working
// on a schema migrated by the next one.
//
// Text keys are in the "C" collation, so that ids sort byte by byte as in
// bolt (time-ordered ids list in creation order whatever the database's
// locale). Codes and refresh tokens keep their record as JSON beside the
// columns they are looked up by, so that the caller's times come back to the
// nanosecond, as from bolt; connections, changes and audit entries take the
// store's times, already cut to the microsecond that timestamptz keeps.
var migrations = []string{
	`
CREATE TABLE store_revision (
	only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
	revision bigint NOT NULL
);
INSERT INTO store_revision (revision) VALUES (0);

CREATE TABLE connections (
	id         text COLLATE "C" PRIMARY KEY,
	name       text NOT NULL,
	org_id     text COLLATE "C" NOT NULL,
	user_id    text COLLATE "C" NOT NULL,
	app_id     text COLLATE "C" NOT NULL DEFAULT '',
	status     text NOT NULL,
	created_at timestamptz NOT NULL,
	updated_at timestamptz NOT NULL,
	revision   bigint NOT NULL
);
CREATE INDEX connections_by_org ON connections (org_id, id);
CREATE INDEX connections_by_app ON connections (app_id, id) WHERE app_id <> '';

CREATE TABLE changes (
	revision      bigint PRIMARY KEY,
	connection_id text COLLATE "C" NOT NULL,
	status        text NOT NULL,
	changed_at    timestamptz NOT NULL,
	org_id        text COLLATE "C" NOT NULL,
	user_id       text COLLATE "C" NOT NULL
);

CREATE TABLE audit (
	id            bigint PRIMARY KEY,
	time          timestamptz NOT NULL,
	actor_id      text NOT NULL,
	org_id        text COLLATE "C" NOT NULL,
	connection_id text COLLATE "C" NOT NULL,
	action        text NOT NULL,
	from_status   text NOT NULL,
	to_status     text NOT NULL,
	request_id    text NOT NULL,
	reason        text NOT NULL
);
CREATE INDEX audit_by_org ON audit (org_id, id);
CREATE INDEX audit_by_connection ON audit (connection_id, id);

CREATE TABLE secrets (
	name  text COLLATE "C" PRIMARY KEY,
	value bytea NOT NULL
);

CREATE TABLE apps (
	id            text COLLATE "C" PRIMARY KEY,
	name          text NOT NULL,
	redirect_uris text[] NOT NULL,
	auth_method   text NOT NULL,
	secret_hash   bytea,
	org_id        text COLLATE "C" NOT NULL,
	created_by    text NOT NULL,
	created_at    timestamptz NOT NULL
);
CREATE INDEX apps_by_org ON apps (org_id, id);

CREATE TABLE codes (
	hash       bytea PRIMARY KEY,
	app_id     text COLLATE "C" NOT NULL,
	expires_at timestamptz NOT NULL,
	used_at    timestamptz,
	code       jsonb NOT NULL
);
CREATE INDEX codes_by_expiry ON codes (expires_at);
CREATE INDEX codes_by_app ON codes (app_id);

CREATE TABLE refresh_tokens (
	hash          bytea PRIMARY KEY,
	app_id        text COLLATE "C" NOT NULL,
	connection_id text COLLATE "C" NOT NULL,
	rotated_at    timestamptz,
	token         jsonb NOT NULL
);
CREATE INDEX refresh_tokens_by_app ON refresh_tokens (app_id);
CREATE INDEX refresh_tokens_by_connection ON refresh_tokens (connection_id);

CREATE TABLE gateways (
	gateway_id       text COLLATE "C" NOT NULL,
	instance         text COLLATE "C" NOT NULL,
	applied_revision bigint NOT NULL,
	seen_at          timestamptz NOT NULL,
	PRIMARY KEY (gateway_id, instance)
);
`,
	// A developer lists only their own connections of an organisation
	// (org_id and user_id): without this index PostgreSQL read the whole
	// table for that page, 170 ms with 1,000,000 connections (see
	// docs/PERFORMANCE.md). Building it locks writes to connections for
	// about 3 s per million rows, once.
	`
CREATE INDEX connections_by_user ON connections (org_id, user_id, id);
`,
}

// migrationLockClass is the first key of the advisory lock held while the
// schema is migrated; the second is the hash of the schema's name, so that
// stores in different schemas of one database do not wait for each other.
const migrationLockClass = 0x636e67 // "cng"

// migrate brings the schema in the search path up to the latest version.
// Replicas that start at once take turns through a session advisory lock:
// the first migrates, the others then find the schema up to date. Each
// version is applied in its own transaction with its row in
// schema_migrations, so a failed migration leaves the previous version.
func migrate(ctx context.Context, pool *pgxpool.Pool) (schema string, err error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return "", err
	}
	defer conn.Release()
	var current *string
	if err := conn.QueryRow(ctx, "SELECT current_schema()").Scan(&current); err != nil {
		return "", err
	}
	if current == nil {
		return "", errors.New("no schema of the search_path exists: create it, or name an existing one with search_path in the DSN")
	}
	schema = *current
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1, hashtext($2))", migrationLockClass, schema); err != nil {
		return "", fmt.Errorf("waiting for the migration lock: %w", err)
	}
	defer func() {
		// A session lock outlives a failed statement; releasing it on a
		// broken connection fails, and closing that connection releases it.
		if _, uerr := conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1, hashtext($2))", migrationLockClass, schema); uerr != nil {
			conn.Conn().Close(context.WithoutCancel(ctx))
		}
	}()
	_, err = conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    integer PRIMARY KEY,
	applied_at timestamptz NOT NULL DEFAULT now()
)`)
	if err != nil {
		return "", err
	}
	var version int
	if err := conn.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&version); err != nil {
		return "", err
	}
	if version > len(migrations) {
		return "", fmt.Errorf("schema %s is at version %d, newer than this conngate knows (%d): run a conngate at least as new as the one that migrated it", schema, version, len(migrations))
	}
	for v := version + 1; v <= len(migrations); v++ {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, migrations[v-1]); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version) VALUES ($1)", v)
			return err
		})
		if err != nil {
			return "", fmt.Errorf("migrating schema %s to version %d: %w", schema, v, err)
		}
	}
	return schema, nil
}
