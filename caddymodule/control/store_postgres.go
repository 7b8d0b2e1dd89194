package control

import (
	"errors"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/conngate/conngate/store"
	"github.com/conngate/conngate/store/pgstore"
)

func init() {
	caddy.RegisterModule(PostgresStore{})
}

// PostgresStore keeps the store in a PostgreSQL database, which several
// control replicas can share: the database orders their changes, and each
// replica's change streams learn of every replica's changes.
type PostgresStore struct {
	// The connection string: a postgres:// URL or key=value pairs, usually
	// a placeholder such as {env.CONNGATE_POSTGRES_DSN} so that the password
	// stays out of the config. Its search_path chooses the schema (which
	// must exist); the tables are created or migrated in it at start-up.
	DSN string `json:"dsn,omitempty"`

	// How many of the latest changes are kept for gateways to replay after
	// a disconnection. Default: 100000. A reload keeps the store open, so
	// it cannot change this: restart Caddy to.
	ChangeLogSize int `json:"change_log_size,omitempty"`

	storeUse
}

// CaddyModule returns the Caddy module information.
func (PostgresStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "conngate.stores.postgres",
		New: func() caddy.Module { return new(PostgresStore) },
	}
}

// Provision connects to the database and migrates its schema, or shares the
// store this process already has open on the same DSN (across reloads). The
// DSN is never logged nor put in an error: it may hold a password.
func (p *PostgresStore) Provision(ctx caddy.Context) error {
	dsn := caddy.NewReplacer().ReplaceKnown(p.DSN, "")
	if dsn == "" {
		return errors.New("store postgres: the DSN is empty (is the environment variable of its placeholder set?)")
	}
	logSize := p.ChangeLogSize
	if logSize == 0 {
		logSize = pgstore.DefaultChangeLogSize
	}
	key := "postgres " + dsn // bolt's keys are absolute paths
	return p.use(key, "the PostgreSQL store", logSize, func() (store.Store, error) {
		return pgstore.Open(ctx, dsn, pgstore.Options{ChangeLogSize: logSize, Logger: ctx.Logger()})
	})
}

// UnmarshalCaddyfile sets up the store; the dispenser is on "postgres".
// Syntax:
//
//	store postgres <dsn> {
//		change_log_size <changes>
//	}
func (p *PostgresStore) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return unmarshalStore(d, &p.DSN, &p.ChangeLogSize)
}

// Interface guards
var (
	_ caddy.Provisioner     = (*PostgresStore)(nil)
	_ caddy.CleanerUpper    = (*PostgresStore)(nil)
	_ StoreProvider         = (*PostgresStore)(nil)
	_ caddyfile.Unmarshaler = (*PostgresStore)(nil)
)
