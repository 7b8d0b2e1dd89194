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
//
// A request let through carries the connection id in the X-Connection-Id
// header and in {http.auth.connection.id}, and its token's claims in
// {http.auth.claims.<name or dotted path>}.
//
// A refused request gets 400 (malformed Authorization), 401 (no token, a
// bad token, or a connection that is disabled, deleted or unknown) with an
// RFC 6750 WWW-Authenticate challenge, or 503 (the keys or the connection's
// status cannot be known yet) with Retry-After. Either way it sets:
//
//	{http.auth.deny.reason}             token_missing, authorization_malformed, token_invalid,
//	                                    keys_unavailable, connection_disabled, connection_deleted,
//	                                    connection_unknown or status_unavailable
//	{http.auth.deny.error}              invalid_request or invalid_token (the challenge's RFC 6750
//	                                    error code), unauthorized (no token) or temporarily_unavailable (503)
//	{http.auth.deny.error_description}  what is wrong, from a fixed list of phrases; empty when
//	                                    there is nothing more to say (no token, 503)
//	{http.auth.deny.connection_id}      the connection of a validly signed token; empty when the
//	                                    refusal came before one was found
//
// When the server has error routes (handle_errors in a Caddyfile), the
// refusal is returned to them as an error with the refusal's status, as
// Caddy's own authentication handler does: they write the answer, with the
// placeholders above and Caddy's {http.error.*}, and the challenge headers
// already set. Error routes that do not answer it (handle_errors 404, or a
// handle_errors of another site on the same server) leave Caddy's bare
// status with no body. Without error routes the gate answers itself, with
// a JSON body {"error", "error_description", "reason"} of the same values.
type Gate struct {
	// URLs of JSON Web Key Sets that hold the token verification keys.
	// Default, when no other key source is given: the control endpoint's
	// /.well-known/jwks.json. The key set of a control endpoint is fetched
	// from the other control endpoints when that one fails.
	JWKSURLs []string `json:"jwks_urls,omitempty"`

	// How often the key sets are fetched again. Default: 5m; at most 24h.
	JWKSRefreshInterval caddy.Duration `json:"jwks_refresh_interval,omitempty"`

	// PEM files with public keys (RSA of 2048 bits or more, ECDSA P-256,
	// P-384 or P-521, Ed25519) that verify tokens.
	PublicKeyFiles []string `json:"public_key_files,omitempty"`

	// HMAC secrets (HS256/384/512), at least 32 bytes each; usually
	// placeholders such as {env.JWT_SECRET}.
	HMACSecrets []string `json:"hmac_secrets,omitempty"`

	// Accepted "iss" values; empty accepts any issuer.
	Issuers []string `json:"issuers,omitempty"`

	// Accepted "aud" values (the token needs one of them); empty accepts
	// any audience.
	Audiences []string `json:"audiences,omitempty"`

	// Clock skew tolerated when checking exp, nbf and iat. Default: 30s;
	// at most 5m.
	Leeway caddy.Duration `json:"leeway,omitempty"`

	// Accepted signature algorithms (JWS "alg" names). Default: EdDSA.
	Algorithms []string `json:"algorithms,omitempty"`

	// Claims a token must carry, whatever their value.
	Require []string `json:"require,omitempty"`

	// Maximum age of a token, counted from its iat. Default: none; at
	// most 720h (30 days).
	MaxTokenAge caddy.Duration `json:"max_token_age,omitempty"`

	// Claim that holds the connection id: a claim of that name or, if
	// there is none, a dotted path into nested objects ("ext.connection").
	// Default: "cid".
	ConnectionClaim string `json:"connection_claim,omitempty"`

	// Claims copied into request headers for the upstream.
	ForwardClaims []ForwardClaim `json:"forward_claims,omitempty"`

	// Remove the Authorization header before the request goes upstream.
	StripAuthorization bool `json:"strip_authorization,omitempty"`

	// Memory for verified tokens, in bytes (about 320 per token, whatever
	// its size). Default: 64 MiB, about 200,000 tokens.
	TokenCacheBytes int64 `json:"token_cache_bytes,omitempty"`

	// Realm named in WWW-Authenticate challenges. Default: "conngate".
	Realm string `json:"realm,omitempty"`

	// Base URL of the connection_control endpoint that answers status
	// lookups, e.g. http://127.0.0.1:9180. This or control_urls is
	// required.
	ControlURL string `json:"control_url,omitempty"`

	// Base URLs of several connection_control endpoints that serve the
	// same connections (replicas of one store), instead of control_url.
	// Lookups, the change stream and the control endpoints' key set use
	// one endpoint at a time, the first at start, and move to the next in
	// the list when it fails; they stay on the one that works. The change
	// stream resumes where it left off (from another store it is reset).
	ControlURLs []string `json:"control_urls,omitempty"`

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

	// Maximum number of connection statuses kept in memory (about 250
	// bytes each). Default: 1000000. A reload applies a new size to the
	// cache it keeps.
	CacheSize int `json:"cache_size,omitempty"`

	// How long a status may be served from memory while the change stream
	// is connected. The stream pushes every change, so by default there is
	// no limit: statuses leave the cache by size (the least used first) or
	// by the disconnected rules. A ttl makes every status be looked up
	// again that long after its lookup, on the request path. Default: none;
	// at most 24h.
	TTL caddy.Duration `json:"ttl,omitempty"`

	// How long a status may be served from memory while the change stream
	// is down, counted from the later of its lookup and the disconnection.
	// 0 serves none from memory while the stream is down: every request
	// looks its status up (on a failed lookup stale_if_error decides).
	// Absent (null) means the default, 1s; at most 5m.
	DisconnectedTTL *caddy.Duration `json:"disconnected_ttl,omitempty"`

	// How much longer than disconnected_ttl a cached status may still be
	// served when the control endpoint cannot be reached; past that the
	// answer is 503. 0 is strict fail-closed: no status older than
	// disconnected_ttl is ever served. Absent (null) means the default,
	// 5s; at most 10m.
	StaleIfError *caddy.Duration `json:"stale_if_error,omitempty"`

	// How long the change stream may stay silent (the control endpoint
	// sends heartbeats) before the gateway drops it and reconnects. Once
	// the control endpoint announces its heartbeat interval, a stream silent
	// for two intervals and a second is dropped sooner.
	// Default: 45s; at most 10m. Gates sharing a change stream (same
	// control URLs, control_key and gateway_id) must agree on it, and a
	// reload cannot change it: the stream keeps running across reloads.
	StreamIdleTimeout caddy.Duration `json:"stream_idle_timeout,omitempty"`

	// controlURLs is control_url or control_urls, resolved.
	controlURLs []string
	tokens      *tokenVerifier
	jwksStop    context.CancelFunc
	// ownHeaders are the request headers the gate sets for the upstream.
	ownHeaders []string
	source     *statusSource
	sourceKey  string
	policy     freshnessPolicy
	metrics    *metrics
	logger     *zap.Logger
	// now is the clock of every decision by time (token expiry, status
	// freshness); tests set it before Provision. Default: time.Now.
	now func() time.Time
}

// ForwardClaim copies a claim into a request header for the upstream.
type ForwardClaim struct {
	Claim  string `json:"claim"`
	Header string `json:"header"`
}

// Defaults.
const (
	DefaultJWKSRefresh     = 5 * time.Minute
	DefaultTokenCacheBytes = 64 << 20
	DefaultLeeway          = 30 * time.Second
	DefaultConnectionClaim = "cid"
	DefaultRealm           = "conngate"
	DefaultControlTimeout  = 2 * time.Second
	MaxControlTimeout      = 10 * time.Second
	DefaultCacheSize       = 1_000_000
	DefaultTTL             = 0 // none: the change stream keeps statuses current
	DefaultDisconnectedTTL = time.Second
	DefaultStaleIfError    = 5 * time.Second // with the other defaults: at most 13 s of a partition (README)
	DefaultStreamIdle      = 45 * time.Second
)

// Upper bounds of the durations: past them a setting defeats its purpose
// (a revocation that takes an hour, a token from last year), and a value
// that large is more likely a typo than a choice.
const (
	MaxLeeway          = 5 * time.Minute
	MaxJWKSRefresh     = 24 * time.Hour
	MaxTokenAge        = 30 * 24 * time.Hour
	MaxTTL             = 24 * time.Hour
	MaxDisconnectedTTL = 5 * time.Minute
	MaxStaleIfError    = 10 * time.Minute
	MaxStreamIdle      = 10 * time.Minute
)

// CaddyModule returns the Caddy module information.
func (Gate) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.connection_gate",
		New: func() caddy.Module { return new(Gate) },
	}
}

// Provision sets defaults, refuses a configuration that cannot work, and
// only then starts what the gate runs on: a bad config leaves nothing behind.
func (g *Gate) Provision(ctx caddy.Context) error {
	g.logger = ctx.Logger()
	repl := caddy.NewReplacer()
	g.setDefaults(repl)
	if err := g.check(repl); err != nil {
		return err
	}
	return g.start(ctx, repl)
}

// setDefaults fills in what the config leaves out. The control URLs and the
// gateway id are resolved here because defaults derive from them.
func (g *Gate) setDefaults(repl *caddy.Replacer) {
	g.ControlURL = strings.TrimRight(repl.ReplaceKnown(g.ControlURL, ""), "/")
	for i, u := range g.ControlURLs {
		g.ControlURLs[i] = strings.TrimRight(repl.ReplaceKnown(u, ""), "/")
	}
	g.controlURLs = g.ControlURLs
	if g.ControlURL != "" {
		g.controlURLs = append([]string{g.ControlURL}, g.ControlURLs...)
	}
	if len(g.JWKSURLs) == 0 && len(g.PublicKeyFiles) == 0 && len(g.HMACSecrets) == 0 && len(g.controlURLs) > 0 {
		g.JWKSURLs = []string{jwksOf(g.controlURLs[0])}
	}
	if g.JWKSRefreshInterval == 0 {
		g.JWKSRefreshInterval = caddy.Duration(DefaultJWKSRefresh)
	}
	if g.TokenCacheBytes == 0 {
		g.TokenCacheBytes = DefaultTokenCacheBytes
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
	if g.DisconnectedTTL == nil {
		g.DisconnectedTTL = new(caddy.Duration(DefaultDisconnectedTTL))
	}
	if g.StaleIfError == nil {
		g.StaleIfError = new(caddy.Duration(DefaultStaleIfError))
	}
	if g.StreamIdleTimeout == 0 {
		g.StreamIdleTimeout = caddy.Duration(DefaultStreamIdle)
	}
	g.GatewayID = repl.ReplaceKnown(g.GatewayID, "")
	if g.GatewayID == "" {
		g.GatewayID = defaultGatewayID()
	}
	if g.now == nil {
		g.now = time.Now
	}
}

// start loads the keys, builds the token verifier, starts the key set
// refreshers and joins (or starts) the shared status source. Whatever it
// started before failing is released by Cleanup.
func (g *Gate) start(ctx caddy.Context, repl *caddy.Replacer) error {
	app, err := startupOf(ctx)
	if err != nil {
		return err
	}
	g.metrics = gateMetrics
	if err := g.metrics.register(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	keys, err := g.loadKeys(repl)
	if err != nil {
		return err
	}
	g.tokens, err = newTokenVerifier(keys, verifierConfig{
		issuers:    g.Issuers,
		audiences:  g.Audiences,
		leeway:     time.Duration(g.Leeway),
		algorithms: g.Algorithms,
		claim:      g.ConnectionClaim,
		require:    g.Require,
		maxAge:     time.Duration(g.MaxTokenAge),
		cacheBytes: g.TokenCacheBytes,
		now:        g.now,
	})
	if err != nil {
		return err
	}
	g.ownHeaders = []string{"X-Connection-Id"}
	for _, fc := range g.ForwardClaims {
		g.ownHeaders = append(g.ownHeaders, fc.Header)
	}
	g.policy = freshnessPolicy{
		ttl:             time.Duration(g.TTL),
		disconnectedTTL: time.Duration(*g.DisconnectedTTL),
		staleIfError:    time.Duration(*g.StaleIfError),
		timeout:         time.Duration(g.ControlTimeout),
	}
	g.source, g.sourceKey, err = loadSource(sourceConfig{
		controlURLs: g.controlURLs,
		controlKey:  repl.ReplaceKnown(g.ControlKey, ""),
		gatewayID:   g.GatewayID,
		cacheSize:   g.CacheSize,
		idleTimeout: time.Duration(g.StreamIdleTimeout),
		now:         g.now,
	}, g.logger, g.metrics)
	if err != nil {
		return err
	}
	g.source.eventTTL.Store(int64(g.TTL))
	if len(g.controlURLs) > 1 {
		keys.fallBack(g.controlURLs, g.metrics.failoverCounter(g.source, failoverKeys))
	}
	// The key sets are fetched for this config only: a reload fetches anew.
	jwksCtx, stop := context.WithCancel(ctx)
	g.jwksStop = stop
	// Nothing goes out before the config runs: `caddy validate` provisions
	// the same way and must not open streams or fetch keys.
	source := g.source
	app.onStart(func() {
		for _, set := range keys.jwks {
			go set.run(jwksCtx, time.Duration(g.JWKSRefreshInterval))
		}
		source.start()
	})
	return nil
}

// loadKeys reads the static keys and sets up the key sets (not yet
// fetched); a key set that changes makes every cached token be verified
// again.
func (g *Gate) loadKeys(repl *caddy.Replacer) (*keySources, error) {
	keys := &keySources{}
	for _, path := range g.PublicKeyFiles {
		pub, err := readPublicKey(repl.ReplaceKnown(path, ""))
		if err != nil {
			return nil, fmt.Errorf("public_key: %w", err)
		}
		keys.public = append(keys.public, pub)
	}
	for _, secret := range g.HMACSecrets {
		keys.hmac = append(keys.hmac, []byte(repl.ReplaceKnown(secret, "")))
	}
	for _, u := range g.JWKSURLs {
		set, err := newJWKSSet(u, g.logger, keys.changed)
		if err != nil {
			return nil, err
		}
		keys.jwks = append(keys.jwks, set)
	}
	return keys, nil
}

func defaultGatewayID() string {
	host, err := os.Hostname()
	if err != nil || store.ValidateID("gateway_id", host) != nil {
		return "gateway"
	}
	return host
}

// check refuses configurations that cannot work, once defaults are set and
// before anything is started.
func (g *Gate) check(repl *caddy.Replacer) error {
	switch {
	case g.ControlURL != "" && len(g.ControlURLs) > 0:
		return errors.New("control_url and control_urls are both given: list every control endpoint in control_urls")
	case len(g.controlURLs) == 0:
		return errors.New("control_url is required (one or more control endpoint URLs)")
	}
	for i, u := range g.controlURLs {
		if pu, err := url.Parse(u); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return fmt.Errorf("control_url %q: want an http:// or https:// URL", u)
		}
		if slices.Contains(g.controlURLs[:i], u) {
			return fmt.Errorf("control_url %q is listed twice", u)
		}
	}
	if key := repl.ReplaceKnown(g.ControlKey, ""); key == "" {
		return errors.New("control_key is empty (if it comes from a placeholder such as {env.NAME}, is that variable set?)")
	}
	for _, u := range g.JWKSURLs {
		if pu, err := url.Parse(u); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return fmt.Errorf("jwks_url %q: want an http:// or https:// URL", u)
		}
	}
	hmacAllowed := false
	for _, alg := range g.Algorithms {
		if !slices.Contains(supportedAlgorithms, alg) {
			return fmt.Errorf("algorithm %q is not supported; choose from %s", alg, strings.Join(supportedAlgorithms, ", "))
		}
		hmacAllowed = hmacAllowed || strings.HasPrefix(alg, "HS")
	}
	if hmacAllowed && len(g.HMACSecrets) == 0 {
		return errors.New("algorithms lists an HMAC algorithm but no hmac_secret is given")
	}
	if !hmacAllowed && len(g.HMACSecrets) > 0 {
		return errors.New("hmac_secret is given but algorithms lists no HS256, HS384 or HS512")
	}
	for i, secret := range g.HMACSecrets {
		if n := len(repl.ReplaceKnown(secret, "")); n < minHMACSecret {
			return fmt.Errorf("hmac_secret %d: %d bytes; want at least %d (if it comes from a placeholder, is the variable set?)", i+1, n, minHMACSecret)
		}
	}
	if strings.Contains("."+g.ConnectionClaim+".", "..") {
		return fmt.Errorf("connection_claim %q: empty path segment", g.ConnectionClaim)
	}
	for _, fc := range g.ForwardClaims {
		if fc.Claim == "" || fc.Header == "" || strings.ContainsAny(fc.Header, " :\r\n") {
			return fmt.Errorf("forward_claim %q %q: want a claim name and a header name", fc.Claim, fc.Header)
		}
	}
	if strings.ContainsAny(g.Realm, "\"\\") || strings.ContainsFunc(g.Realm, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return fmt.Errorf("realm %q must not contain quotes, backslashes or control characters", g.Realm)
	}
	if g.CacheSize < 0 || g.TokenCacheBytes < 0 {
		return errors.New("cache_size and token_cache_bytes must not be negative")
	}
	for _, b := range []struct {
		name  string
		value caddy.Duration
		max   time.Duration
	}{
		{"leeway", g.Leeway, MaxLeeway},
		{"jwks_refresh_interval", g.JWKSRefreshInterval, MaxJWKSRefresh},
		{"max_token_age", g.MaxTokenAge, MaxTokenAge},
		{"control_timeout", g.ControlTimeout, MaxControlTimeout},
		{"ttl", g.TTL, MaxTTL},
		{"disconnected_ttl", *g.DisconnectedTTL, MaxDisconnectedTTL},
		{"stale_if_error", *g.StaleIfError, MaxStaleIfError},
		{"stream_idle_timeout", g.StreamIdleTimeout, MaxStreamIdle},
	} {
		if d := time.Duration(b.value); d < 0 || d > b.max {
			return fmt.Errorf("%s %s: want a duration from 0 to %s", b.name, d, b.max)
		}
	}
	if err := store.ValidateID("gateway_id", g.GatewayID); err != nil {
		return err
	}
	return nil
}

// Cleanup releases this config's use of the shared status source; the last
// user stops its stream and frees its cache.
func (g *Gate) Cleanup() error {
	if g.jwksStop != nil {
		g.jwksStop()
	}
	if g.tokens != nil {
		g.tokens.close()
	}
	if g.sourceKey == "" {
		return nil
	}
	deleted, err := sources.Delete(g.sourceKey)
	if deleted {
		// Its stream has ended: no series of a source that is gone.
		g.metrics.forget(g.source)
	}
	return err
}

// ServeHTTP decides: the next handler for an active connection's valid token,
// an RFC 6750 answer otherwise.
func (g *Gate) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	raw, d := bearerToken(r)
	if d != nil {
		return g.deny(w, r, d, "")
	}
	tok, err := g.tokens.verify(r.Context(), raw)
	if err != nil {
		return g.deny(w, r, tokenInvalid(err), "")
	}
	cid := tok.connectionID
	st, err := g.status(r.Context(), cid)
	if err != nil {
		// The outage is logged once by the status source; per request only
		// at debug level.
		if ce := g.logger.Check(zapcore.DebugLevel, "connection status unavailable"); ce != nil {
			ce.Write(zap.String("connection_id", cid), zap.Error(err))
		}
		return g.deny(w, r, denyUnavailable, cid)
	}
	if st != store.StatusActive {
		return g.deny(w, r, denyForStatus(st), cid)
	}

	g.forward(r, tok)
	g.metrics.allowed.Inc()
	if ce := g.logger.Check(zapcore.DebugLevel, "allowed"); ce != nil {
		ce.Write(zap.String("connection_id", cid))
	}
	return next.ServeHTTP(w, r)
}

// forward passes what the token established to the upstream and to logs.
func (g *Gate) forward(r *http.Request, tok *verified) {
	keepOwnHeaders(r.Header, g.ownHeaders)
	// Set, not add: a client must not choose the values the upstream sees.
	// The key is already canonical: assign, skipping canonicalisation.
	r.Header["X-Connection-Id"] = []string{tok.connectionID}
	for _, fc := range g.ForwardClaims {
		r.Header.Del(fc.Header)
		if v, ok := claimText(lookupClaim(tok.claimSet(), fc.Claim)); ok && validHeaderValue(v) {
			r.Header.Set(fc.Header, v)
		}
	}
	if g.StripAuthorization {
		r.Header.Del("Authorization")
	}
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("http.auth.connection.id", tok.connectionID)
		repl.Map(func(key string) (any, bool) {
			name, ok := strings.CutPrefix(key, "http.auth.claims.")
			if !ok {
				return nil, false
			}
			return claimText(lookupClaim(tok.claimSet(), name))
		})
	}
}

// keepOwnHeaders removes the names of the headers the gate sets from the
// request's Connection header, keeping its other tokens: a proxy drops every
// header named there (hop-by-hop, RFC 9110 section 7.6.1), so a client could
// otherwise keep them from the upstream.
func keepOwnHeaders(h http.Header, own []string) {
	values, ok := h["Connection"]
	if !ok {
		return
	}
	kept, dropped := make([]string, 0, 2), false
	for _, v := range values {
		for tok := range strings.SplitSeq(v, ",") {
			tok = strings.TrimSpace(tok)
			if tok == "" {
				continue
			}
			if slices.ContainsFunc(own, func(name string) bool { return strings.EqualFold(name, tok) }) {
				dropped = true
				continue
			}
			kept = append(kept, tok)
		}
	}
	switch {
	case !dropped:
	case len(kept) == 0:
		delete(h, "Connection")
	default:
		h["Connection"] = []string{strings.Join(kept, ", ")}
	}
}

func validHeaderValue(v string) bool {
	return !strings.ContainsFunc(v, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f })
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
				if ce := g.logger.Check(zapcore.DebugLevel, "serving a stale status within stale_if_error"); ce != nil {
					ce.Write(zap.String("connection_id", id), zap.String("status", string(e.status)), zap.Error(err))
				}
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
