package control

import (
	"fmt"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/conngate/conngate/caddymodule/internal/cfgargs"
	"github.com/conngate/conngate/store"
)

// StoreProvider is implemented by modules in the conngate.stores namespace.
type StoreProvider interface {
	// Store returns the opened store; valid between Provision and Cleanup.
	Store() store.Store
}

// openStores shares open stores across config reloads: Caddy provisions the
// new config before it cleans up the old one, and a bbolt file can be open
// only once per process (a PostgreSQL pool is shared the same way).
var openStores = caddy.NewUsagePool()

// pooledStore closes the store when its last user is cleaned up. It keeps
// the options the store was opened with: a reload shares the open store and
// cannot change them.
type pooledStore struct {
	store.Store
	changeLogSize int
}

func (p pooledStore) Destruct() error { return p.Close() }

// storeUse is one config's use of a store in openStores; the store
// modules embed it.
type storeUse struct {
	poolKey string
	store   store.Store
}

// use takes the store shared under key, opening it with open on first use.
// what names the store in the error a reload gets when it asks for another
// change_log_size than the open store has.
func (u *storeUse) use(key, what string, changeLogSize int, open func() (store.Store, error)) error {
	v, _, err := openStores.LoadOrNew(key, func() (caddy.Destructor, error) {
		s, err := open()
		if err != nil {
			return nil, err
		}
		return pooledStore{s, changeLogSize}, nil
	})
	if err != nil {
		return err
	}
	opened := v.(pooledStore)
	if opened.changeLogSize != changeLogSize {
		if _, err := openStores.Delete(key); err != nil {
			return err
		}
		return fmt.Errorf("change_log_size %d: %s is open with %d, by another connection_control or by the config "+
			"before this reload, and stays open across reloads; give every config of that store the same value, or restart "+
			"Caddy to change it", changeLogSize, what, opened.changeLogSize)
	}
	u.poolKey, u.store = key, opened.Store
	return nil
}

// Store implements StoreProvider.
func (u *storeUse) Store() store.Store { return u.store }

// Cleanup releases this config's use of the store; the last user closes it.
func (u *storeUse) Cleanup() error {
	if u.poolKey == "" {
		return nil
	}
	_, err := openStores.Delete(u.poolKey)
	return err
}

// unmarshalStore reads `store <name> <location> { change_log_size <n> }`;
// the dispenser is on the name.
func unmarshalStore(d *caddyfile.Dispenser, location *string, changeLogSize *int) error {
	d.Next() // the store's name
	if err := cfgargs.One(d, location); err != nil {
		return err
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "change_log_size":
			if err := cfgargs.PositiveInt(d, "change_log_size", changeLogSize); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized subdirective %q", d.Val())
		}
	}
	return nil
}
