package pgstore

import (
	"context"
	"fmt"
	"strings"

	"github.com/conngate/conngate/store"
)

// Audit implements store.Store: newest first, through the index of the
// narrowest filter.
func (s *Store) Audit(ctx context.Context, q store.AuditQuery) (entries []store.AuditEntry, next uint64, err error) {
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
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if q.ConnectionID != "" {
		filter("connection_id = $%d", q.ConnectionID)
	}
	if q.OrgID != "" {
		filter("org_id = $%d", q.OrgID)
	}
	if q.Before > 0 {
		filter("id < $%d", q.Before)
	}
	sql := "SELECT id, time, actor_id, org_id, connection_id, action, from_status, to_status, request_id, reason FROM audit"
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	// One more than a page tells whether there is a next page.
	args = append(args, limit+1)
	sql += fmt.Sprintf(" ORDER BY id DESC LIMIT $%d", len(args))
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, 0, fmt.Errorf("reading the audit log: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			e        store.AuditEntry
			from, to string
		)
		if err := rows.Scan(&e.ID, &e.Time, &e.ActorID, &e.OrgID, &e.ConnectionID, &e.Action, &from, &to, &e.RequestID, &e.Reason); err != nil {
			return nil, 0, fmt.Errorf("reading the audit log: %w", err)
		}
		e.Time, e.FromStatus, e.ToStatus = e.Time.UTC(), store.Status(from), store.Status(to)
		entries = append(entries, e)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("reading the audit log: %w", err)
	}
	if len(entries) > limit {
		entries = entries[:limit]
		next = entries[limit-1].ID
	}
	return entries, next, nil
}
