package tests

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/conngate/conngate/caddymodule/control/controltest"
)

// BenchmarkMillionConnections reads through the control endpoint (the real
// binary on PostgreSQL) with 1,000,000 connections in the database, and the
// same reads with 10,000 in the same run: a page of the list (first page,
// a deep page by cursor, deleted ones hidden as the web page asks, a small
// organisation's) and a connection's status. Each schema is filled by one
// INSERT ... SELECT generate_series (see fillConnections). For each read and
// size, in alternating rounds, one client sends requests one after the
// other (latency percentiles), then 8 clients at once (requests/s).
//
//	CONNGATE_TEST_POSTGRES_DSN=postgres://postgres@127.0.0.1:5432/test?sslmode=disable \
//		go test ./tests -run '^$' -bench MillionConnections -benchtime 1x -timeout 30m
func BenchmarkMillionConnections(b *testing.B) {
	dsn := requirePostgres(b, "go test ./tests -run '^$' -bench MillionConnections -benchtime 1x -timeout 30m")
	const rounds, sequential, concurrent, clients, maxPart = 3, 1000, 4000, 8, 5 * time.Second
	sizes := []int{10_000, 1_000_000}
	dir := b.TempDir()
	adminKey, developerKey := controltest.RandomKey(), controltest.RandomKey()
	// A developer of org-big lists only their own connections (org_id and
	// user_id): 200 of its 500,000 with 1,000,000 connections, 2 with 10,000.
	sum := sha256.Sum256([]byte(developerKey))
	principals := filepath.Join(dir, "principals.json")
	err := os.WriteFile(principals, []byte(fmt.Sprintf(`{"principals": [{"id": "user-42", "name": "Dev", "key_sha256": %q, "roles": {"org-big": "developer"}}]}`, hex.EncodeToString(sum[:]))), 0o600)
	if err != nil {
		b.Fatal(err)
	}

	controls := make([]string, len(sizes))
	for k, n := range sizes {
		named := testSchema(b, dsn)
		port := freePort(b)
		controls[k] = fmt.Sprintf("http://127.0.0.1:%d", port)
		site := filepath.Join(dir, fmt.Sprintf("control-%d", n))
		writeSite(b, site, fmt.Sprintf(`{
	admin off
}
:%d {
	bind 127.0.0.1
	connection_control {
		store postgres {env.CONNGATE_POSTGRES_DSN}
		api_key admin {env.CONNGATE_ADMIN_KEY}
		principals_file %s
	}
}
`, port, principals))
		// The control endpoint creates the schema's tables at start-up.
		startCaddy(b, site, IsolatedEnv(site, "CONNGATE_ADMIN_KEY="+adminKey, "CONNGATE_POSTGRES_DSN="+named), controls[k]+"/.well-known/jwks.json")
		start := time.Now()
		if err := fillConnections(named, n); err != nil {
			b.Fatal(err)
		}
		fmt.Printf("%d connections inserted, vacuumed and analyzed in %v\n", n, time.Since(start).Round(100*time.Millisecond))
		if n == sizes[len(sizes)-1] {
			explainList(b, named, n)
		}
	}

	reads := []struct {
		name string
		path func(n int) string // a request's path for n connections
		key  string             // the API key it is sent with; the admin's if empty
	}{
		{"list, first page", func(int) string { return "/v1/connections?org_id=org-big&limit=50" }, ""},
		{"list, deep page (cursor 90% in)", func(n int) string {
			return "/v1/connections?org_id=org-big&limit=50&cursor=" + connectionID(n*9/10/2*2)
		}, ""},
		{"list, first page, deleted hidden", func(int) string {
			return "/v1/connections?org_id=org-big&limit=50&status=active,disabled"
		}, ""},
		{"list, small organisation", func(int) string { return "/v1/connections?org_id=org-7&limit=50" }, ""},
		{"list, a developer's own (first page)", func(int) string { return "/v1/connections?org_id=org-big&limit=50" }, developerKey},
		{"status of a random connection", func(n int) string {
			return "/v1/connections/" + connectionID(1+rand.IntN(n)) + "/status"
		}, ""},
	}
	type figures struct{ p50, p99, rps []float64 }
	results := make([][]figures, len(reads))
	for r := range reads {
		results[r] = make([]figures, len(sizes))
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	for round := range rounds {
		for r, read := range reads {
			for k, n := range sizes {
				key := cmp.Or(read.key, adminKey)
				var failed atomic.Int64
				do := func() time.Duration {
					start := time.Now()
					if code := getWithKey(client, controls[k]+read.path(n), key); code != http.StatusOK {
						failed.Add(1)
					}
					return time.Since(start)
				}
				// A read that is slow stops early: each part takes at most
				// about maxPart.
				for range 50 { // warm the connection and the database's cache
					do()
				}
				var lat []time.Duration
				for start := time.Now(); len(lat) < sequential && time.Since(start) < maxPart; {
					lat = append(lat, do())
				}
				slices.Sort(lat)
				f := &results[r][k]
				f.p50 = append(f.p50, ms(lat[len(lat)/2]))
				f.p99 = append(f.p99, ms(lat[len(lat)*99/100]))

				start := time.Now()
				var wg sync.WaitGroup
				var done atomic.Int64
				for range clients {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for done.Add(1) <= concurrent && time.Since(start) < maxPart {
							do()
						}
					}()
				}
				wg.Wait()
				f.rps = append(f.rps, float64(min(done.Load()-clients, concurrent))/time.Since(start).Seconds())
				if failed.Load() > 0 {
					b.Fatalf("%s with %d connections: %d answers other than 200", read.name, n, failed.Load())
				}
				fmt.Printf("round %d  %-34s %9d connections: p50 %.2f ms  p99 %.2f ms  %.0f req/s\n",
					round+1, read.name, n, f.p50[round], f.p99[round], f.rps[round])
			}
		}
	}

	median := func(xs []float64) float64 { s := slices.Clone(xs); slices.Sort(s); return s[len(s)/2] }
	fmt.Printf("\nmedians of %d rounds (p50/p99 of %d requests from 1 client; req/s of %d requests from %d clients; each at most %v)\n", rounds, sequential, concurrent, clients, maxPart)
	fmt.Printf("| read | 10,000: p50 | p99 | req/s | 1,000,000: p50 | p99 | req/s | p50 ratio | req/s ratio |\n|---|---|---|---|---|---|---|---|---|\n")
	for r, read := range reads {
		small, large := results[r][0], results[r][1]
		fmt.Printf("| %s | %.2f ms | %.2f ms | %.0f | %.2f ms | %.2f ms | %.0f | %.2fx | %.2fx |\n", read.name,
			median(small.p50), median(small.p99), median(small.rps), median(large.p50), median(large.p99), median(large.rps),
			median(large.p50)/median(small.p50), median(large.rps)/median(small.rps))
	}
}

// fillConnections inserts n connections into the schema of dsn in one
// statement, as many as the API would have made, then vacuums and analyzes
// the table as autovacuum would after a while. Connection i (from 1) has a
// time-ordered id (connectionID), belongs to org-big if i is even (half of
// them, interleaved in id order with the others, as if created over time)
// and else to one of 500 other organisations (org-1, org-3, ... org-999),
// is deleted one time in ten, disabled one time in ten, else active, and
// took revision i. Only the connections and the revision counter are
// filled: the reads measured use neither the change log nor the audit.
func fillConnections(dsn string, n int) error {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	for _, sql := range []string{
		`INSERT INTO connections (id, name, org_id, user_id, app_id, status, created_at, updated_at, revision)
SELECT 'conn_' || lpad(to_hex(i), 26, '0'),
	'connection ' || i,
	CASE WHEN i % 2 = 0 THEN 'org-big' ELSE 'org-' || i % 1000 END,
	'user-' || i % 5000,
	'',
	CASE (i / 2) % 10 WHEN 0 THEN 'deleted' WHEN 1 THEN 'disabled' ELSE 'active' END,
	now() - interval '1 millisecond' * ($1::bigint - i),
	now() - interval '1 millisecond' * ($1::bigint - i),
	i
FROM generate_series(1, $1::bigint) AS i`,
		`UPDATE store_revision SET revision = $1`,
	} {
		if _, err := conn.Exec(ctx, sql, n); err != nil {
			return fmt.Errorf("filling %d connections: %w", n, err)
		}
	}
	if _, err := conn.Exec(ctx, "VACUUM ANALYZE connections"); err != nil {
		return fmt.Errorf("vacuuming: %w", err)
	}
	return nil
}

// connectionID is the id fillConnections gives connection i: in the
// alphabet of real ids, and in the same order as i.
func connectionID(i int) string { return fmt.Sprintf("conn_%026x", i) }

// explainList prints the plans of the list's queries (as pgstore's List
// writes them) with n connections.
func explainList(b *testing.B, dsn string, n int) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	const columns = "id, name, org_id, user_id, app_id, status, created_at, updated_at, revision"
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{"SELECT " + columns + " FROM connections WHERE org_id = $1 AND id > $2 ORDER BY id LIMIT $3", []any{"org-big", connectionID(n * 9 / 10 / 2 * 2), 51}},
		{"SELECT " + columns + " FROM connections WHERE org_id = $1 AND status = ANY($2) ORDER BY id LIMIT $3", []any{"org-big", []string{"active", "disabled"}, 51}},
		{"SELECT " + columns + " FROM connections WHERE org_id = $1 AND user_id = $2 ORDER BY id LIMIT $3", []any{"org-big", "user-42", 51}},
	} {
		rows, err := conn.Query(ctx, "EXPLAIN (ANALYZE, BUFFERS) "+q.sql, q.args...)
		if err != nil {
			b.Fatal(err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			b.Fatal(err)
		}
		fmt.Printf("%s\n  %s\n", q.sql, strings.Join(lines, "\n  "))
	}
}

func getWithKey(c *http.Client, url, key string) int {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := c.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
