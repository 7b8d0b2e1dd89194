package control

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/conngate/conngate/store/pgstore/pgtest"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestPostgresStoreCaddyfile(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  PostgresStore
		err   string
	}{
		{"placeholder", `postgres {env.CONNGATE_POSTGRES_DSN}`, PostgresStore{DSN: "{env.CONNGATE_POSTGRES_DSN}"}, ""},
		{"change_log_size", "postgres postgres://db/conngate {\n change_log_size 5000\n}", PostgresStore{DSN: "postgres://db/conngate", ChangeLogSize: 5000}, ""},
		{"no dsn", `postgres`, PostgresStore{}, "wrong argument count"},
		{"two dsns", `postgres a b`, PostgresStore{}, "wrong argument count"},
		{"bad change_log_size", "postgres dsn {\n change_log_size 0\n}", PostgresStore{}, "want a positive whole number"},
		{"unknown subdirective", "postgres dsn {\n pool_size 5\n}", PostgresStore{}, `unrecognized subdirective "pool_size"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got PostgresStore
			err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || got.DSN != tt.want.DSN || got.ChangeLogSize != tt.want.ChangeLogSize {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

// The DSN's placeholder is replaced at provision; configs that name the
// same database share one open store (a reload), and a change_log_size it
// was not opened with is refused, without the DSN (its password) in the
// error. An empty DSN is refused clearly.
func TestPostgresStoreProvision(t *testing.T) {
	dsn := pgtest.Schema(t, pgtest.DSN(t, "go test -run PostgresStore ./caddymodule/control"))
	ctx := context.Background()
	t.Setenv("CONNGATE_TEST_STORE_DSN", dsn)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	schema := u.Query().Get("search_path") // a part of the DSN no error may show

	cctx, cancel := caddy.NewContext(caddy.Context{Context: ctx})
	defer cancel()
	old := &PostgresStore{DSN: "{env.CONNGATE_TEST_STORE_DSN}", ChangeLogSize: 5000}
	if err := old.Provision(cctx); err != nil {
		t.Fatal(err)
	}
	defer old.Cleanup()
	if rev, err := old.Store().Revision(ctx); err != nil || rev != 0 {
		t.Fatalf("new store: revision %d, %v", rev, err)
	}
	tests := []struct {
		name  string
		store PostgresStore
		want  string // in the error; empty: shares the open store
	}{
		{"same database and change_log_size", PostgresStore{DSN: "{env.CONNGATE_TEST_STORE_DSN}", ChangeLogSize: 5000}, ""},
		{"other change_log_size", PostgresStore{DSN: "{env.CONNGATE_TEST_STORE_DSN}", ChangeLogSize: 7000}, "change_log_size 7000: the PostgreSQL store is open with 5000"},
		{"empty DSN", PostgresStore{DSN: "{env.CONNGATE_TEST_UNSET_DSN}"}, "the DSN is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.store
			err := p.Provision(cctx)
			defer p.Cleanup()
			if tt.want == "" {
				if err != nil || p.Store() != old.Store() {
					t.Fatalf("err %v, shares the open store: %v", err, p.Store() == old.Store())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), schema) {
				t.Fatalf("err = %v, want it to mention %q and not the DSN", err, tt.want)
			}
		})
	}
	if n, _ := openStores.References(old.poolKey); n != 1 {
		t.Fatalf("%d users of the open store, want the old config alone", n)
	}
}
