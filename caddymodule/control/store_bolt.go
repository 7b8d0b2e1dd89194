package control

import (
	"fmt"
	"path/filepath"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/conngate/conngate/store"
	"github.com/conngate/conngate/store/boltstore"
)

func init() {
	caddy.RegisterModule(BoltStore{})
}

// BoltStore is the embedded store: one bbolt file, nothing else to run.
type BoltStore struct {
	// Path of the database file; its directory is created if missing.
	// Default: conngate/conngate.db under Caddy's data directory.
	Path string `json:"path,omitempty"`

	// How many of the latest changes are kept for gateways to replay after
	// a disconnection. Default: 100000. A reload keeps the store open, so
	// it cannot change this: restart Caddy to.
	ChangeLogSize int `json:"change_log_size,omitempty"`

	storeUse
}

// CaddyModule returns the Caddy module information.
func (BoltStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "conngate.stores.bolt",
		New: func() caddy.Module { return new(BoltStore) },
	}
}

// Provision opens the file, or shares it if this process already has it open.
func (b *BoltStore) Provision(caddy.Context) error {
	path := caddy.NewReplacer().ReplaceKnown(b.Path, "")
	if path == "" {
		path = filepath.Join(caddy.AppDataDir(), "conngate", "conngate.db")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("store path %s: %w", path, err)
	}
	logSize := b.ChangeLogSize
	if logSize == 0 {
		logSize = boltstore.DefaultChangeLogSize
	}
	return b.use(abs, "store "+abs, logSize, func() (store.Store, error) {
		return boltstore.Open(abs, boltstore.Options{ChangeLogSize: logSize})
	})
}

// UnmarshalCaddyfile sets up the store; the dispenser is on "bolt". Syntax:
//
//	store bolt <path> {
//		change_log_size <changes>
//	}
func (b *BoltStore) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return unmarshalStore(d, &b.Path, &b.ChangeLogSize)
}

// Interface guards
var (
	_ caddy.Provisioner     = (*BoltStore)(nil)
	_ caddy.CleanerUpper    = (*BoltStore)(nil)
	_ StoreProvider         = (*BoltStore)(nil)
	_ caddyfile.Unmarshaler = (*BoltStore)(nil)
)
