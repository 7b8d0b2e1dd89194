// Package conngate is the import path to give xcaddy: it registers every
// conngate Caddy module (see caddymodule).
//
//	xcaddy build --with github.com/conngate/conngate
package conngate

import _ "github.com/conngate/conngate/caddymodule"
