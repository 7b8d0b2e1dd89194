// Package caddymodule registers every conngate Caddy module. Import it for
// its side effects, as xcaddy/main.go does:
//
//	import _ "github.com/conngate/conngate/caddymodule"
//
// The modules themselves live in sub-packages: control (the control
// endpoint: REST API, token issuing, the store), gate (the gateway handler
// in front of the data API) and cli (the `caddy connections` command).
package caddymodule

import (
	_ "github.com/conngate/conngate/caddymodule/cli"
	_ "github.com/conngate/conngate/caddymodule/control"
	_ "github.com/conngate/conngate/caddymodule/gate"
)
