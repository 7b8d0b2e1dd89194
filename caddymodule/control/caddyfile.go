package control

import (
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/conngate/conngate/caddymodule/internal/cfgargs"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("connection_control", parseCaddyfile)
	// A terminal handler: it sits with Caddy's responders so it can stand
	// alone in a site block.
	httpcaddyfile.RegisterDirectiveOrder("connection_control", httpcaddyfile.Before, "file_server")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	c := new(Control)
	err := c.UnmarshalCaddyfile(h.Dispenser)
	return c, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	connection_control {
//		store bolt <path> | postgres <dsn>
//		api_key admin|gateway <key>
//		principals_file <path>
//		signing_key <pem file>
//		issuer <iss>
//		audience <aud>
//		token_lifetime <duration>
//		heartbeat_interval <duration>
//		refresh_token_overlap <duration>
//		gateway_retention <duration>
//		max_streams <n>
//		max_streams_per_principal <n>
//		max_gateway_streams <n>
//	}
//
// api_key may be repeated, one key per line.
func (c *Control) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "store":
			if !d.NextArg() {
				return d.ArgErr()
			}
			name := d.Val()
			mod, err := caddyfile.UnmarshalModule(d, "conngate.stores."+name)
			if err != nil {
				return err
			}
			c.StoreRaw = caddyconfig.JSONModuleObject(mod, "backend", name, nil)
		case "api_key":
			var k APIKey
			if !d.Args(&k.Role, &k.Key) {
				return d.ArgErr()
			}
			if k.Role != "admin" && k.Role != "gateway" {
				return d.Errf("api_key role %q: want admin or gateway", k.Role)
			}
			if d.NextArg() {
				return d.ArgErr()
			}
			c.APIKeys = append(c.APIKeys, k)
		case "principals_file":
			if err := cfgargs.One(d, &c.PrincipalsFile); err != nil {
				return err
			}
		case "signing_key":
			if err := cfgargs.One(d, &c.SigningKeyFile); err != nil {
				return err
			}
		case "issuer":
			if err := cfgargs.One(d, &c.Issuer); err != nil {
				return err
			}
		case "audience":
			if err := cfgargs.One(d, &c.Audience); err != nil {
				return err
			}
		case "token_lifetime":
			if err := cfgargs.Duration(d, "token_lifetime", &c.TokenLifetime); err != nil {
				return err
			}
		case "heartbeat_interval":
			if err := cfgargs.Duration(d, "heartbeat_interval", &c.HeartbeatInterval); err != nil {
				return err
			}
		case "refresh_token_overlap":
			if err := cfgargs.Duration(d, "refresh_token_overlap", &c.RefreshTokenOverlap); err != nil {
				return err
			}
		case "gateway_retention":
			if err := cfgargs.Duration(d, "gateway_retention", &c.GatewayRetention); err != nil {
				return err
			}
		case "max_streams":
			if err := cfgargs.PositiveInt(d, "max_streams", &c.MaxStreams); err != nil {
				return err
			}
		case "max_streams_per_principal":
			if err := cfgargs.PositiveInt(d, "max_streams_per_principal", &c.MaxStreamsPerPrincipal); err != nil {
				return err
			}
		case "max_gateway_streams":
			if err := cfgargs.PositiveInt(d, "max_gateway_streams", &c.MaxGatewayStreams); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized subdirective %q", d.Val())
		}
	}
	return nil
}
