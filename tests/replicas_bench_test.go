package tests

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/conngate/conngate/caddymodule/control/controltest"
)

// BenchmarkRevocationAcrossReplicas is BenchmarkRevocationLatency with two
// control replicas of the real binary on one PostgreSQL schema: the 3
// gateways take their change stream from replica B (its URL first in
// control_url), the connections are created and disabled through replica
// A, so every disable reaches the gateways through the database (A's commit,
// its NOTIFY, B's read of the change log) and B's stream. It takes the time
// from each disable's 200 to the first 401 on each gateway.
//
//	CONNGATE_TEST_POSTGRES_DSN=postgres://postgres@127.0.0.1:5432/test?sslmode=disable \
//		go test ./tests -run '^$' -bench RevocationAcrossReplicas -benchtime 1x
func BenchmarkRevocationAcrossReplicas(b *testing.B) {
	dsn := requirePostgres(b, "go test ./tests -run '^$' -bench RevocationAcrossReplicas -benchtime 1x")
	const gateways, connections = 3, 200
	dir := b.TempDir()
	adminKey, gatewayKey := controltest.RandomKey(), controltest.RandomKey()
	env := IsolatedEnv(dir, "CONNGATE_ADMIN_KEY="+adminKey, "CONNGATE_GATEWAY_KEY="+gatewayKey,
		"CONNGATE_POSTGRES_DSN="+testSchema(b, dsn))

	replicas := []string{startReplica(b, dir, "a", env).url, startReplica(b, dir, "b", env).url}
	a, bReplica := replicas[0], replicas[1]

	var gws []string
	for i := range gateways {
		port := freePort(b)
		gws = append(gws, fmt.Sprintf("http://127.0.0.1:%d", port))
		site := filepath.Join(dir, fmt.Sprintf("gateway-%d", i))
		writeSite(b, site, fmt.Sprintf(`{
	admin off
}
:%d {
	bind 127.0.0.1
	connection_gate {
		control_url %s %s
		control_key {env.CONNGATE_GATEWAY_KEY}
		gateway_id gw-%d
	}
	respond "ok" 200
}
`, port, bReplica, a, i))
		startCaddy(b, site, env, bReplica+"/.well-known/jwks.json")
	}
	// Their streams from B are up (the first URL of their control_url).
	waitGateways(b, &demo{control: bReplica, adminKey: adminKey}, gateways)
	measureRevocations(b, &demo{control: a, adminKey: adminKey}, gws, connections)
}
