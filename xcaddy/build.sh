#!/usr/bin/env bash
# Builds a release Caddy with conngate using the xcaddy tool, from this
# checkout. The result is the same as `go build -o caddy ./xcaddy`, but built
# the way Caddy plugins are usually distributed, so it also proves that the
# plugin builds outside this module.
#
#   xcaddy/build.sh [output]          (default output: ./caddy)
#   CADDY_VERSION=v2.11.9 xcaddy/build.sh
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
output=${1:-"$root/caddy"}
caddy_version=${CADDY_VERSION:-v2.11.9}
xcaddy_version=v0.4.5

# @v0.0.0 names a version for the replaced module, so that the go command
# takes it from this checkout instead of asking the module proxy for it.
go run "github.com/caddyserver/xcaddy/cmd/xcaddy@$xcaddy_version" build "$caddy_version" \
	--output "$output" \
	--with "github.com/conngate/conngate@v0.0.0=$root"

"$output" list-modules | grep -q '^http.handlers.connection_gate$'
echo "built $output with conngate ($("$output" version))"
