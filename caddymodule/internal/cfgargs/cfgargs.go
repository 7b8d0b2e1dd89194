// Package cfgargs reads subdirective arguments in the Caddyfile parsers of
// conngate's modules, with the error messages Caddy users know.
package cfgargs

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// One reads exactly one argument.
func One(d *caddyfile.Dispenser, into *string) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	*into = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

// Some appends one or more arguments.
func Some(d *caddyfile.Dispenser, into *[]string) error {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return d.ArgErr()
	}
	*into = append(*into, args...)
	return nil
}

// Duration reads one positive duration for subdirective name.
func Duration(d *caddyfile.Dispenser, name string, into *caddy.Duration) error {
	var s string
	if err := One(d, &s); err != nil {
		return err
	}
	dur, err := caddy.ParseDuration(s)
	if err != nil || dur <= 0 {
		return d.Errf("%s %q: want a positive duration such as 30s", name, s)
	}
	*into = caddy.Duration(dur)
	return nil
}

// PositiveInt reads one whole number above zero for subdirective name.
func PositiveInt(d *caddyfile.Dispenser, name string, into *int) error {
	var s string
	if err := One(d, &s); err != nil {
		return err
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return d.Errf("%s %q: want a positive whole number", name, s)
	}
	*into = n
	return nil
}
