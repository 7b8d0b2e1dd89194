package gate

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"

	"github.com/conngate/conngate/caddymodule/internal/cfgargs"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("connection_gate", parseCaddyfile)
	// With the authentication directives, so it runs before anything that
	// serves or proxies.
	httpcaddyfile.RegisterDirectiveOrder("connection_gate", httpcaddyfile.After, "basic_auth")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	g := new(Gate)
	err := g.UnmarshalCaddyfile(h.Dispenser)
	return g, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	connection_gate {
//		control_url <url>...
//		control_key <key>
//		control_timeout <duration>
//		jwks_url <url>
//		jwks_refresh_interval <duration>
//		public_key <pem file>
//		hmac_secret <secret>
//		issuer <iss>...
//		audience <aud>...
//		algorithms <alg>...
//		leeway <duration>
//		require <claim>...
//		max_token_age <duration>
//		connection_claim <name>
//		forward_claim <claim> <header>
//		strip_authorization
//		token_cache_size <size>
//		realm <name>
//		gateway_id <id>
//		cache_size <entries>
//		ttl <duration>
//		disconnected_ttl <duration>
//		stale_if_error <duration>
//		stream_idle_timeout <duration>
//	}
//
// Durations must be positive, but disconnected_ttl and stale_if_error may
// be 0: no status served from memory while the change stream is down, and
// strict fail-closed.
//
// jwks_url, public_key, hmac_secret and forward_claim may be repeated;
// control_url, issuer, audience, algorithms and require take one or more
// values and may be repeated. One control URL is control_url in JSON,
// several are control_urls: the gate fails over between them in order.
func (g *Gate) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	durations := map[string]*caddy.Duration{
		"leeway":                &g.Leeway,
		"ttl":                   &g.TTL,
		"control_timeout":       &g.ControlTimeout,
		"stream_idle_timeout":   &g.StreamIdleTimeout,
		"jwks_refresh_interval": &g.JWKSRefreshInterval,
		"max_token_age":         &g.MaxTokenAge,
	}
	var controlURLs []string
	for d.NextBlock(0) {
		switch name := d.Val(); name {
		case "control_url":
			if err := cfgargs.Some(d, &controlURLs); err != nil {
				return err
			}
		case "control_key":
			if err := cfgargs.One(d, &g.ControlKey); err != nil {
				return err
			}
		case "jwks_url":
			var u string
			if err := cfgargs.One(d, &u); err != nil {
				return err
			}
			g.JWKSURLs = append(g.JWKSURLs, u)
		case "issuer":
			if err := cfgargs.Some(d, &g.Issuers); err != nil {
				return err
			}
		case "audience":
			if err := cfgargs.Some(d, &g.Audiences); err != nil {
				return err
			}
		case "algorithms":
			if err := cfgargs.Some(d, &g.Algorithms); err != nil {
				return err
			}
		case "connection_claim":
			if err := cfgargs.One(d, &g.ConnectionClaim); err != nil {
				return err
			}
		case "realm":
			if err := cfgargs.One(d, &g.Realm); err != nil {
				return err
			}
		case "gateway_id":
			if err := cfgargs.One(d, &g.GatewayID); err != nil {
				return err
			}
		case "public_key":
			var path string
			if err := cfgargs.One(d, &path); err != nil {
				return err
			}
			g.PublicKeyFiles = append(g.PublicKeyFiles, path)
		case "hmac_secret":
			var secret string
			if err := cfgargs.One(d, &secret); err != nil {
				return err
			}
			g.HMACSecrets = append(g.HMACSecrets, secret)
		case "require":
			if err := cfgargs.Some(d, &g.Require); err != nil {
				return err
			}
		case "forward_claim":
			var fc ForwardClaim
			if !d.Args(&fc.Claim, &fc.Header) || d.NextArg() {
				return d.ArgErr()
			}
			g.ForwardClaims = append(g.ForwardClaims, fc)
		case "strip_authorization":
			if d.NextArg() {
				return d.ArgErr()
			}
			g.StripAuthorization = true
		case "token_cache_size":
			var s string
			if err := cfgargs.One(d, &s); err != nil {
				return err
			}
			n, err := humanize.ParseBytes(s)
			if err != nil || n < 1<<20 || n > 1<<40 {
				return d.Errf("token_cache_size %q: want a size such as 64MiB (at least 1MiB)", s)
			}
			g.TokenCacheBytes = int64(n)
		case "disconnected_ttl":
			if err := durationOrZero(d, name, &g.DisconnectedTTL); err != nil {
				return err
			}
		case "stale_if_error":
			if err := durationOrZero(d, name, &g.StaleIfError); err != nil {
				return err
			}
		case "leeway", "ttl", "control_timeout", "stream_idle_timeout", "jwks_refresh_interval", "max_token_age":
			if err := cfgargs.Duration(d, name, durations[name]); err != nil {
				return err
			}
		case "cache_size":
			if err := cfgargs.PositiveInt(d, name, &g.CacheSize); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized subdirective %q", name)
		}
	}
	if len(controlURLs) == 1 {
		g.ControlURL = controlURLs[0]
	} else {
		g.ControlURLs = controlURLs
	}
	return nil
}

// durationOrZero reads one duration for subdirective name, where 0 is a
// choice (none), not "the default": into is set even then.
func durationOrZero(d *caddyfile.Dispenser, name string, into **caddy.Duration) error {
	var s string
	if err := cfgargs.One(d, &s); err != nil {
		return err
	}
	dur, err := caddy.ParseDuration(s)
	if err != nil || dur < 0 {
		return d.Errf("%s %q: want a duration such as 30s, or 0", name, s)
	}
	*into = new(caddy.Duration(dur))
	return nil
}
