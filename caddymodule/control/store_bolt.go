package control

import (
	"fmt"
	"path/filepath"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/conngate/conngate/caddymodule/internal/cfgargs"
	"github.com/conngate/conngate/store"
	"github.com/conngate/conngate/store/boltstore"
)

func init() {
	caddy.RegisterModule(BoltStore{})
}

// StoreProvider is implemented by modules in the conngate.stores namespace.
type StoreProvider interface {
	// Store returns the opened store; valid between Provision and Cleanup.
	Store() store.Store
}

// openStores shares open stores across config reloads: Caddy provisions the
// new config before it cleans up the old one, and a bbolt file can be open
// only once per process.
var openStores = caddy.NewUsagePool()

// pooledStore closes the store when its last user is cleaned up. It keeps
// the options the store was opened with: a reload shares the open store and
// cannot change them.
type pooledStore struct {
	store.Store
	changeLogSize int
}

func (p pooledStore) Destruct() error { return p.Close() }

// BoltStore is the embedded store: one bbolt file, nothing else to run.
type BoltStore struct {
	// Path of the database file; its directory is created if missing.
	// Default: conngate/conngate.db under Caddy's data directory.
	Path string `json:"path,omitempty"`

	// How many of the latest changes are kept for gateways to replay after
	// a disconnection. Default: 100000. A reload keeps the store open, so
	// it cannot change this: restart Caddy to.
	ChangeLogSize int `json:"change_log_size,omitempty"`

	poolKey string
	store   store.Store
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
	v, _, err := openStores.LoadOrNew(abs, func() (caddy.Destructor, error) {
		s, err := boltstore.Open(abs, boltstore.Options{ChangeLogSize: logSize})
		if err != nil {
			return nil, err
		}
		return pooledStore{s, logSize}, nil
	})
	if err != nil {
		return err
	}
	open := v.(pooledStore)
	if open.changeLogSize != logSize {
		if _, err := openStores.Delete(abs); err != nil {
			return err
		}
		return fmt.Errorf("change_log_size %d: store %s is open with %d, by another connection_control or by the config "+
			"before this reload, and stays open across reloads; give every config of that store the same value, or restart "+
			"Caddy to change it", logSize, abs, open.changeLogSize)
	}
	b.poolKey, b.store = abs, open.Store
	return nil
}

// Store implements StoreProvider.
func (b *BoltStore) Store() store.Store { return b.store }

// Cleanup releases this config's use of the file.
func (b *BoltStore) Cleanup() error {
	if b.poolKey == "" {
		return nil
	}
	_, err := openStores.Delete(b.poolKey)
	return err
}

// UnmarshalCaddyfile sets up the store; the dispenser is on "bolt". Syntax:
//
//	store bolt <path> {
//		change_log_size <changes>
//	}
func (b *BoltStore) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // "bolt"
	if err := cfgargs.One(d, &b.Path); err != nil {
		return err
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "change_log_size":
			if err := cfgargs.PositiveInt(d, "change_log_size", &b.ChangeLogSize); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized subdirective %q", d.Val())
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner     = (*BoltStore)(nil)
	_ caddy.CleanerUpper    = (*BoltStore)(nil)
	_ StoreProvider         = (*BoltStore)(nil)
	_ caddyfile.Unmarshaler = (*BoltStore)(nil)
)
