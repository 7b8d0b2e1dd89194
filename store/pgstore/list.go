package pgstore

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/conngate/conngate/store"
)

// List implements store.Store. The query has only the filters asked for,
// so that the planner walks the organisation's (or the app's) index range
// in id order, and a page costs the same however many other connections
// there are.
func (s *Store) List(ctx context.Context, q store.ListQuery) (conns []store.Connection, next string, err error) {
	limit := q.Limit
	if limit <= 0 {
		limit = store.DefaultListLimit
	}
	limit = min(limit, store.MaxListLimit)
	var (
		where []string
		args  []any
	)
	filter := func(cond string, arg any) {
		args = append(args, arg)
		where = append(where, strings.ReplaceAll(cond, "$?", fmt.Sprintf("$%d", len(args))))
	}
	if q.OrgID != "" {
		filter("org_id = $?", q.OrgID)
	}
	if q.AppID != "" {
		filter("app_id = $?", q.AppID)
	}
	if q.UserID != "" {
		filter("user_id = $?", q.UserID)
	}
	if len(q.Statuses) > 0 {
		statuses := make([]string, len(q.Statuses))
		for i, st := range q.Statuses {
			statuses[i] = string(st)
		}
		filter("status = ANY($?)", statuses)
	}
	if q.Search != "" {
		// As bolt's: an id prefix, or a part of the name ignoring case.
		filter("(starts_with(id, $?) OR strpos(lower(name), $?) > 0)", strings.ToLower(q.Search))
	}
	if q.After != "" {
		filter("id > $?", q.After)
	}
	sql := "SELECT " + connectionColumns + " FROM connections"
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	// One more than a page tells whether there is a next page.
	args = append(args, limit+1)
	sql += fmt.Sprintf(" ORDER BY id LIMIT $%d", len(args))
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, "", fmt.Errorf("listing connections: %w", readFailed(err))
	}
	conns, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Connection, error) { return scanConnection(row) })
	if err != nil {
		return nil, "", fmt.Errorf("listing connections: %w", readFailed(err))
	}
	if len(conns) > limit {
		conns = conns[:limit]
		next = conns[limit-1].ID
	}
	return conns, next, nil
}
