// Package gate is the connection_gate Caddy module: an HTTP handler that lets
// a request through only when its bearer token is valid and the connection
// named in it is active.
package gate

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/conngate/conngate/store"
)

func init() {
	caddy.RegisterModule(Gate{})
}

// Gate lets a request through only when its token's connection is active.
type Gate struct {
	// URLs of JSON Web Key Sets that hold the token verification keys.
	// Default: the control endpoint's /.well-known/jwks.json.
	JWKSURLs []string `json:"jwks_urls,omitempty"`

	// Accepted "iss" values; empty accepts any issuer.
	Issuers []string `json:"issuers,omitempty"`

	// Accepted "aud" values (the token needs one of them); empty accepts
	// any audience.
	Audiences []string `json:"audiences,omitempty"`

	// Clock skew tolerated when checking exp, nbf and iat. Default: 30s.
	Leeway caddy.Duration `json:"leeway,omitempty"`

	// Accepted signature algorithms (JWS "alg" names). Default: EdDSA.
	Algorithms []string `json:"algorithms,omitempty"`

	// Claim that holds the connection id. Default: "cid".
	ConnectionClaim string `json:"connection_claim,omitempty"`

	// Realm named in WWW-Authenticate challenges. Default: "conngate".
	Realm string `json:"realm,omitempty"`

	// Base URL of the connection_control endpoint that answers status
	// lookups, e.g. http://127.0.0.1:9180. Required.
	ControlURL string `json:"control_url,omitempty"`

	// API key (role gateway) for the control endpoint; usually a
	// placeholder such as {env.CONNGATE_GATEWAY_KEY}. Required.
	ControlKey string `json:"control_key,omitempty"`

	// How long a status lookup may take before the request gets 503.
	// Default: 2s; at most 10s.
	ControlTimeout caddy.Duration `json:"control_timeout,omitempty"`

	// Name this gateway gives itself on the control endpoint's change
	// stream, where acknowledgements are counted per gateway. Give each
	// gateway its own. Default: the host name.
	GatewayID string `json:"gateway_id,omitempty"`

	// Maximum number of connection statuses kept in memory. Default: 100000.
	CacheSize int `json:"cache_size,omitempty"`

	// How long a status may be served from memory while the change stream
	// is connected (it pushes every change, so this only bounds memory use
	// for idle connections). Default: 5m.
	TTL caddy.Duration `json:"ttl,omitempty"`

	// How long a status may be served from memory while the change stream
	// is down, counted from the later of its lookup and the disconnection.
	// Default: 1s.
	DisconnectedTTL caddy.Duration `json:"disconnected_ttl,omitempty"`

	// How much longer than disconnected_ttl a cached status may still be
	// served when the control endpoint cannot be reached; past that the
	// answer is 503. Default: 30s.
	StaleIfError caddy.Duration `json:"stale_if_error,omitempty"`

	// How long the change stream may stay silent (the control endpoint
	// sends heartbeats) before the gateway drops it and reconnects.
	// Default: 45s.
	StreamIdleTimeout caddy.Duration `json:"stream_idle_timeout,omitempty"`

	tokens    *tokenVerifier
	source    *statusSource
	sourceKey string
	policy    freshnessPolicy
	metrics   *metrics
	logger    *zap.Logger
}

// Defaults.
const (
	DefaultLeeway          = 30 * time.Second
	DefaultConnectionClaim = "cid"
	DefaultRealm           = "conngate"
	DefaultControlTimeout  = 2 * time.Second
	MaxControlTimeout      = 10 * time.Second
	DefaultCacheSize       = 100_000
	DefaultTTL             = 5 * time.Minute
	DefaultDisconnectedTTL = time.Second
	DefaultStaleIfError    = 30 * time.Second
	DefaultStreamIdle      = 45 * time.Second
)

// CaddyModule returns the Caddy module information.
func (Gate) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.connection_gate",
		New: func() caddy.Module { return new(Gate) },
	}
}

// Provision sets defaults, starts the key set refresher and builds the cache.
func (g *Gate) Provision(ctx caddy.Context) error {
	g.logger = ctx.Logger()
	repl := caddy.NewReplacer()
	g.ControlURL = strings.TrimRight(repl.ReplaceKnown(g.ControlURL, ""), "/")
	if len(g.JWKSURLs) == 0 && g.ControlURL != "" {
		g.JWKSURLs = []string{g.ControlURL + "/.well-known/jwks.json"}
	}
	if g.Leeway == 0 {
		g.Leeway = caddy.Duration(DefaultLeeway)
	}
	if len(g.Algorithms) == 0 {
		g.Algorithms = []string{"EdDSA"}
	}
	if g.ConnectionClaim == "" {
		g.ConnectionClaim = DefaultConnectionClaim
	}
	if g.Realm == "" {
		g.Realm = DefaultRealm
	}
	if g.ControlTimeout == 0 {
		g.ControlTimeout = caddy.Duration(DefaultControlTimeout)
	}
	if g.CacheSize == 0 {
		g.CacheSize = DefaultCacheSize
	}
	if g.TTL == 0 {
		g.TTL = caddy.Duration(DefaultTTL)
	}
	if g.DisconnectedTTL == 0 {
		g.DisconnectedTTL = caddy.Duration(DefaultDisconnectedTTL)
	}
	if g.StaleIfError == 0 {
		g.StaleIfError = caddy.Duration(DefaultStaleIfError)
	}
	if g.StreamIdleTimeout == 0 {
		g.StreamIdleTimeout = caddy.Duration(DefaultStreamIdle)
	}
	g.GatewayID = repl.ReplaceKnown(g.GatewayID, "")
	if g.GatewayID == "" {
		g.GatewayID = defaultGatewayID()
	}
	if err := g.check(repl); err != nil {
		return err
	}
	g.metrics = gateMetrics
	if err := g.metrics.register(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}

	var err error
	g.tokens, err = newTokenVerifier(ctx, g.logger, verifierConfig{
		jwksURLs:   g.JWKSURLs,
		issuers:    g.Issuers,
		audiences:  g.Audiences,
		leeway:     time.Duration(g.Leeway),
		algorithms: g.Algorithms,
		claim:      g.ConnectionClaim,
	})
	if err != nil {
		return err
	}
	g.policy = freshnessPolicy{
		ttl:             time.Duration(g.TTL),
		disconnectedTTL: time.Duration(g.DisconnectedTTL),
		staleIfError:    time.Duration(g.StaleIfError),
		timeout:         time.Duration(g.ControlTimeout),
	}
	g.source, g.sourceKey, err = loadSource(sourceConfig{
		controlURL:  g.ControlURL,
		controlKey:  repl.ReplaceKnown(g.ControlKey, ""),
		gatewayID:   g.GatewayID,
		cacheSize:   g.CacheSize,
		idleTimeout: time.Duration(g.StreamIdleTimeout),
	}, g.logger, g.metrics)
	if err != nil {
		return err
	}
	g.source.eventTTL.Store(int64(g.TTL))
	return nil
}

func defaultGatewayID() string {
	host, err := os.Hostname()
	if err != nil || store.ValidateID("gateway_id", host) != nil {
		return "gateway"
	}
	return host
}

// check refuses configurations that cannot work. It runs in Provision,
// before anything is started, so that a bad config leaves nothing behind.
func (g *Gate) check(repl *caddy.Replacer) error {
	if g.ControlURL == "" {
		return errors.New("control_url is required")
	}
	if u, err := url.Parse(g.ControlURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("control_url %q: want an http:// or https:// URL", g.ControlURL)
	}
	if key := repl.ReplaceKnown(g.ControlKey, ""); key == "" {
		return errors.New("control_key is empty (if it comes from a placeholder such as {env.NAME}, is that variable set?)")
	}
	for _, u := range g.JWKSURLs {
		if pu, err := url.Parse(u); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return fmt.Errorf("jwks_url %q: want an http:// or https:// URL", u)
		}
	}
	for _, alg := range g.Algorithms {
		if !slices.Contains(supportedAlgorithms, alg) {
			return fmt.Errorf("algorithm %q is not supported; choose from %s", alg, strings.Join(supportedAlgorithms, ", "))
		}
	}
	if strings.ContainsAny(g.Realm, "\"\\") || strings.ContainsFunc(g.Realm, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return fmt.Errorf("realm %q must not contain quotes, backslashes or control characters", g.Realm)
	}
	if g.CacheSize < 0 || g.TTL < 0 || g.Leeway < 0 || g.ControlTimeout < 0 || g.DisconnectedTTL < 0 || g.StaleIfError < 0 || g.StreamIdleTimeout < 0 {
		return errors.New("cache_size and durations must not be negative")
	}
	if time.Duration(g.ControlTimeout) > MaxControlTimeout {
		return fmt.Errorf("control_timeout %s is above the maximum of %s", time.Duration(g.ControlTimeout), MaxControlTimeout)
	}
	if err := store.ValidateID("gateway_id", g.GatewayID); err != nil {
		return err
	}
	return nil
}

// Cleanup releases this config's use of the shared status source; the last
// user stops its stream and frees its cache.
func (g *Gate) Cleanup() error {
	if g.sourceKey == "" {
		return nil
	}
	_, err := sources.Delete(g.sourceKey)
	return err
}

// ServeHTTP decides: the next handler for an active connection's valid token,
// an RFC 6750 answer otherwise.
func (g *Gate) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	raw, d := bearerToken(r)
	if d != nil {
		return g.deny(w, d, "")
	}
	cid, err := g.tokens.connectionID(r.Context(), raw)
	if err != nil {
		return g.deny(w, tokenInvalid(err), "")
	}
	st, err := g.status(r.Context(), cid)
	if err != nil {
		g.logger.Error("connection status unavailable", zap.String("connection_id", cid), zap.Error(err))
		return g.deny(w, denyUnavailable, cid)
	}
	if st != store.StatusActive {
		return g.deny(w, denyForStatus(st), cid)
	}

	// Set, not add: a client must not choose the id the upstream sees.
	r.Header.Set("X-Connection-Id", cid)
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("http.auth.connection.id", cid)
	}
	g.metrics.allowed.Inc()
	if ce := g.logger.Check(zapcore.DebugLevel, "allowed"); ce != nil {
		ce.Write(zap.String("connection_id", cid))
	}
	return next.ServeHTTP(w, r)
}

// status answers from the cache when it may, and asks the control endpoint
// otherwise.
func (g *Gate) status(ctx context.Context, id string) (store.Status, error) {
	e, ok := g.source.cache.Get(id)
	if ok && e.id == id {
		switch g.source.judge(e, &g.policy) {
		case fresh:
			g.metrics.cacheHits.Inc()
			return e.status, nil
		case stale:
			g.metrics.cacheMisses.Inc()
			st, err := g.source.lookup(ctx, id, &g.policy)
			if err != nil {
				g.logger.Warn("control endpoint unreachable; serving a stale status within stale_if_error",
					zap.String("connection_id", id), zap.String("status", string(e.status)), zap.Error(err))
				return e.status, nil
			}
			return st, nil
		}
	}
	g.metrics.cacheMisses.Inc()
	return g.source.lookup(ctx, id, &g.policy)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Gate)(nil)
	_ caddy.CleanerUpper          = (*Gate)(nil)
	_ caddyhttp.MiddlewareHandler = (*Gate)(nil)
	_ caddyfile.Unmarshaler       = (*Gate)(nil)
)
