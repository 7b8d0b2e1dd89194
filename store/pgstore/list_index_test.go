package pgstore

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/conngate/conngate/store"
)

// Each list a page asks for walks an index in id order from the cursor, so a
// page costs the same however many connections the table holds. The
// planner is kept off sequential scans, as it is with a large table; on a
// few rows it would rightly prefer them.
func TestListQueriesWalkAnIndex(t *testing.T) {
	s := open(t, newSchema(t, testDSN(t)), Options{})
	ctx := context.Background()
	if _, err := s.Create(ctx, store.NewConnection{Name: "one", OrgID: "org-1", UserID: "dev"}, store.Actor{ID: "admin"}); err != nil {
		t.Fatal(err)
	}
	const columns = "SELECT " + connectionColumns + " FROM connections WHERE "
	tests := []struct {
		name, where string
		args        []any
		index       string
	}{
		{"an organisation's page", "org_id = $1 AND id > $2", []any{"org-1", "conn_"}, "connections_by_org"},
		{"a developer's own page", "org_id = $1 AND user_id = $2 AND id > $3", []any{"org-1", "dev", "conn_"}, "connections_by_user"},
		{"an app's page", "app_id = $1 AND id > $2", []any{"app-1", "conn_"}, "connections_by_app"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var plan []string
			err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, "SET LOCAL enable_seqscan = off"); err != nil {
					return err
				}
				rows, err := tx.Query(ctx, "EXPLAIN "+columns+tt.where+" ORDER BY id LIMIT 51", tt.args...)
				if err != nil {
					return err
				}
				plan, err = pgx.CollectRows(rows, pgx.RowTo[string])
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			text := strings.Join(plan, "\n")
			if !strings.Contains(text, tt.index) || strings.Contains(text, "Sort") {
				t.Errorf("plan does not walk %s in id order:\n%s", tt.index, text)
			}
		})
	}
}
