package gate

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

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
//		control_url <url>
//		control_key <key>
//		control_timeout <duration>
//		jwks_url <url>
//		issuer <iss>...
//		audience <aud>...
//		algorithms <alg>...
//		leeway <duration>
//		connection_claim <name>
//		realm <name>
//		gateway_id <id>
//		cache_size <entries>
//		ttl <duration>
//		disconnected_ttl <duration>
//		stale_if_error <duration>
//		stream_idle_timeout <duration>
//	}
//
// jwks_url may be repeated; issuer, audience and algorithms take one or more
// values and may be repeated.
func (g *Gate) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	durations := map[string]*caddy.Duration{
		"leeway":              &g.Leeway,
		"ttl":                 &g.TTL,
		"control_timeout":     &g.ControlTimeout,
		"disconnected_ttl":    &g.DisconnectedTTL,
		"stale_if_error":      &g.StaleIfError,
		"stream_idle_timeout": &g.StreamIdleTimeout,
	}
	for d.NextBlock(0) {
		switch name := d.Val(); name {
		case "control_url":
			if err := cfgargs.One(d, &g.ControlURL); err != nil {
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
		case "leeway", "ttl", "control_timeout", "disconnected_ttl", "stale_if_error", "stream_idle_timeout":
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
	return nil
}
