// Command xcaddy is Caddy with the standard modules and conngate's:
//
//	go run ./xcaddy run --config Caddyfile.example
//	go build -o caddy ./xcaddy
//
// build.sh builds the same with the xcaddy tool, for releases.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/conngate/conngate/caddymodule"
)

func main() {
	caddycmd.Main()
}
