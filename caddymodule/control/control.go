// Package control is the connection_control Caddy module: the REST API that
// creates connections and changes their status, the issuer of their access
// tokens, and the owner of the store.
package control

import (
	"cmp"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/conngate/conngate/store"
)

func init() {
	caddy.RegisterModule(Control{})
}

// Control serves the control API of conngate. It is a terminal handler: it
// answers every request it sees and never calls the next handler.
type Control struct {
	// The store backend, a module in the conngate.stores namespace.
	// Default: bolt at conngate/conngate.db under Caddy's data directory.
	StoreRaw json.RawMessage `json:"store,omitempty" caddy:"namespace=conngate.stores inline_key=backend"`

	// API keys and the role each one grants. Keys may be placeholders such
	// as {env.CONNGATE_ADMIN_KEY}, replaced at provisioning.
	APIKeys []APIKey `json:"api_keys,omitempty"`

	// JSON file of principals: people and gateways, each with the sha-256
	// of their key and their role in each organisation. Read at every
	// provisioning, so `caddy reload` picks up changes.
	PrincipalsFile string `json:"principals_file,omitempty"`

	// PEM file (PKCS #8) with the Ed25519 private key that signs access
	// tokens. Default: a key generated on first start and kept in the store.
	SigningKeyFile string `json:"signing_key_file,omitempty"`

	// The "iss" claim of issued tokens. Make it the endpoint's public https
	// URL (such as https://control.example.com): the OAuth metadata then
	// names it as its issuer and builds its endpoints on it, as RFC 8414
	// clients expect. Default: "conngate".
	Issuer string `json:"issuer,omitempty"`

	// The "aud" claim of issued tokens. Default: "conngate".
	Audience string `json:"audience,omitempty"`

	// How long an issued access token is valid. Default: 24h.
	TokenLifetime caddy.Duration `json:"token_lifetime,omitempty"`

	// How often an idle change stream (GET /v1/events) carries a heartbeat
	// event, so that clients and proxies can tell it is alive. The interval
	// is announced on the stream; gateways drop a stream silent for two
	// intervals and a second. Default: 2s.
	HeartbeatInterval caddy.Duration `json:"heartbeat_interval,omitempty"`

	// How long after its rotation the refresh token rotated last may still
	// be used (by a client that lost the answer to its refresh, or several
	// workers refreshing at once); past that, using it again ends the grant
	// (the connection is deleted). Default: 10s.
	RefreshTokenOverlap caddy.Duration `json:"refresh_token_overlap,omitempty"`

	// How long a gateway process whose change stream ended is remembered
	// (across restarts of this endpoint too): ?wait=applied reports it as
	// pending until it is back and has applied the change, or this long has
	// passed. A gateway that stops cleanly says so and is forgotten at once.
	// Default: 10m.
	GatewayRetention caddy.Duration `json:"gateway_retention,omitempty"`

	// The most change streams people (not gateways) may have open in
	// total, and each principal. Past them a stream is refused with 429.
	// Default: 4096 and 32.
	MaxStreams             int `json:"max_streams,omitempty"`
	MaxStreamsPerPrincipal int `json:"max_streams_per_principal,omitempty"`

	// The most change streams gateways may have open, a budget of their
	// own so that people's streams never keep a gateway out. Default: 1024.
	MaxGatewayStreams int `json:"max_gateway_streams,omitempty"`

	storeProvider StoreProvider
	store         store.Store
	keys          *keyring
	tokens        *tokenIssuer
	gateways      *gatewayRegistry
	shared        *sharedState
	sharedKey     string
	shutdowns     *serverShutdowns
	cookies       cookieSigner
	done          <-chan struct{} // closed when this config is unloaded
	routes        http.Handler
	now           func() time.Time
	logger        *zap.Logger
}

// Defaults for the token settings.
const (
	DefaultIssuer        = "conngate"
	DefaultAudience      = "conngate"
	DefaultTokenLifetime = 24 * time.Hour
	// DefaultHeartbeatInterval lets a gateway notice a silent stream (a
	// partition) within about 5 s, two intervals and a second: it bounds
	// how long a disabled connection may pass there. It also keeps idle
	// streams alive through proxies that drop silent connections.
	DefaultHeartbeatInterval = 2 * time.Second
	// DefaultRefreshTokenOverlap covers a client's retry after a lost
	// answer, as Auth0's rotation overlap period does.
	DefaultRefreshTokenOverlap = 10 * time.Second
)

// CaddyModule returns the Caddy module information.
func (Control) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.connection_control",
		New: func() caddy.Module { return new(Control) },
	}
}

// Provision opens the store, loads the keys and sets defaults.
func (c *Control) Provision(ctx caddy.Context) error {
	c.logger = ctx.Logger()
	if c.Issuer == "" {
		c.Issuer = DefaultIssuer
	}
	if issuerOrigin(c.Issuer) == "" {
		c.logger.Warn("issuer is not the control endpoint's public https URL: the OAuth metadata names the origin each request reached as its issuer, not the access tokens' iss, "+
			"so RFC 8414 clients that check the issuer may refuse it; set issuer to the endpoint's https URL, such as https://control.example.com (and the gateways' issuer to match)",
			zap.String("issuer", c.Issuer))
	}
	if c.Audience == "" {
		c.Audience = DefaultAudience
	}
	if c.TokenLifetime == 0 {
		c.TokenLifetime = caddy.Duration(DefaultTokenLifetime)
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = caddy.Duration(DefaultHeartbeatInterval)
	}
	if c.RefreshTokenOverlap == 0 {
		c.RefreshTokenOverlap = caddy.Duration(DefaultRefreshTokenOverlap)
	}
	if c.GatewayRetention == 0 {
		c.GatewayRetention = caddy.Duration(DefaultGatewayRetention)
	}
	c.MaxStreams = cmp.Or(c.MaxStreams, DefaultMaxStreams)
	c.MaxStreamsPerPrincipal = cmp.Or(c.MaxStreamsPerPrincipal, DefaultMaxStreamsPerPrincipal)
	c.MaxGatewayStreams = cmp.Or(c.MaxGatewayStreams, DefaultMaxGatewayStreams)
	if err := registerMetrics(ctx); err != nil {
		return err
	}
	c.now = time.Now
	c.shutdowns = new(serverShutdowns)
	c.done = ctx.Done()

	repl := caddy.NewReplacer()
	keys, err := newKeyring(repl, c.APIKeys, repl.ReplaceKnown(c.PrincipalsFile, ""))
	if err != nil {
		return err
	}
	c.keys = keys

	if c.StoreRaw == nil {
		c.StoreRaw = caddyconfig.JSONModuleObject(BoltStore{}, "backend", "bolt", nil)
	}
	// The store's config names the state shared across reloads (see
	// shared.go). Taken before LoadModule, which clears StoreRaw.
	sharedKey := string(c.StoreRaw)
	mod, err := ctx.LoadModule(c, "StoreRaw")
	if err != nil {
		return fmt.Errorf("loading store: %w", err)
	}
	c.storeProvider = mod.(StoreProvider)
	c.store = c.storeProvider.Store()
	if c.shared, err = loadShared(ctx, sharedKey, c.store, time.Duration(c.GatewayRetention), c.logger); err != nil {
		return fmt.Errorf("loading the gateway registry and change feed: %w", err)
	}
	c.sharedKey, c.gateways = sharedKey, c.shared.gateways

	c.tokens, err = newTokenIssuer(ctx, c.store, caddy.NewReplacer().ReplaceKnown(c.SigningKeyFile, ""),
		c.Issuer, c.Audience, time.Duration(c.TokenLifetime))
	if err != nil {
		return err
	}
	cookieKey, err := c.store.Secret(ctx, oauthSecretKey, func() ([]byte, error) {
		key := make([]byte, 32)
		rand.Read(key) // never fails
		return key, nil
	})
	if err != nil {
		return fmt.Errorf("loading the sign-in cookie key: %w", err)
	}
	c.cookies = cookieSigner{key: cookieKey, now: func() time.Time { return c.now() }}
	c.routes = c.newRoutes()
	return nil
}

// Validate checks the configuration after Provision.
func (c *Control) Validate() error {
	if time.Duration(c.TokenLifetime) < time.Minute {
		return fmt.Errorf("token_lifetime %s is shorter than a minute", time.Duration(c.TokenLifetime))
	}
	if c.HeartbeatInterval < 0 {
		return fmt.Errorf("heartbeat_interval must be positive")
	}
	if c.RefreshTokenOverlap < 0 || time.Duration(c.RefreshTokenOverlap) > time.Minute {
		return fmt.Errorf("refresh_token_overlap %s: want a duration from 0 to 1m", time.Duration(c.RefreshTokenOverlap))
	}
	if d := time.Duration(c.GatewayRetention); d < reconnectGrace || d > 30*24*time.Hour {
		return fmt.Errorf("gateway_retention %s: want a duration from %s to 720h", d, reconnectGrace)
	}
	for name, v := range map[string]int{"max_streams": c.MaxStreams, "max_streams_per_principal": c.MaxStreamsPerPrincipal, "max_gateway_streams": c.MaxGatewayStreams} {
		if v < 1 || v > 1_000_000 {
			return fmt.Errorf("%s %d: want 1 to 1000000", name, v)
		}
	}
	if c.keys.principalsMissing != "" {
		c.logger.Warn("principals_file does not exist: no person can use a key until it does and Caddy reloads",
			zap.String("principals_file", c.keys.principalsMissing))
	}
	if !c.keys.hasAdmin() {
		c.logger.Warn("no admin API key configured: connections cannot be created or changed")
	}
	return nil
}

// Cleanup releases this config's use of the shared state.
func (c *Control) Cleanup() error {
	if c.shared == nil {
		return nil
	}
	_, err := shared.Delete(c.sharedKey)
	return err
}

func (c *Control) streamLimits() streamLimits {
	return streamLimits{people: c.MaxStreams, perPrincipal: c.MaxStreamsPerPrincipal, gateways: c.MaxGatewayStreams}
}

// ServeHTTP answers the control API; it never calls next.
func (c *Control) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	c.shutdowns.of(r) // see serverShutdowns.of
	c.routes.ServeHTTP(w, r)
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Control)(nil)
	_ caddy.CleanerUpper          = (*Control)(nil)
	_ caddy.Validator             = (*Control)(nil)
	_ caddyhttp.MiddlewareHandler = (*Control)(nil)
	_ caddyfile.Unmarshaler       = (*Control)(nil)
)
