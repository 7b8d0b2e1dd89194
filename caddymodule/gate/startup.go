package gate

import (
	"fmt"
	"sync"

	"github.com/caddyserver/caddy/v2"
)

func init() {
	caddy.RegisterModule(new(startup))
}

// startup is a Caddy app with no configuration that every gate loads into
// its config. Its only job is to tell a config that runs from one that is
// only validated: `caddy validate` provisions every module for real and
// never starts the apps, so the gates' background work (change streams, key
// set fetches) waits for this app's Start and never happens in a
// validation.
type startup struct {
	mu      sync.Mutex
	started bool
	pending []func()
}

// CaddyModule returns the Caddy module information.
func (*startup) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "conngate_startup",
		New: func() caddy.Module { return new(startup) },
	}
}

// startupOf returns the startup app of ctx's config, loading it on first use.
func startupOf(ctx caddy.Context) (*startup, error) {
	app, err := ctx.App("conngate_startup")
	if err != nil {
		return nil, fmt.Errorf("loading the startup app: %w", err)
	}
	return app.(*startup), nil
}

// onStart runs f when the config starts, or now if it has started already.
func (a *startup) onStart(f func()) {
	a.mu.Lock()
	if !a.started {
		a.pending = append(a.pending, f)
		a.mu.Unlock()
		return
	}
	a.mu.Unlock()
	f()
}

// Start runs what the gates left for it; Caddy calls it once the config is
// provisioned and is going to run.
func (a *startup) Start() error {
	a.mu.Lock()
	a.started = true
	pending := a.pending
	a.pending = nil
	a.mu.Unlock()
	for _, f := range pending {
		f()
	}
	return nil
}

// Stop does nothing: each gate stops its own work in Cleanup.
func (*startup) Stop() error { return nil }

// Interface guards
var _ caddy.App = (*startup)(nil)
