package control

import (
	"net/http"
	"strconv"

	"github.com/conngate/conngate/caddymodule/controlapi"
	"github.com/conngate/conngate/store"
)

// listAudit is GET /v1/audit?org_id=&connection_id=&limit=&cursor=, newest
// first.
func (c *Control) listAudit(w http.ResponseWriter, r *http.Request) error {
	query, err := auditQuery(r)
	if err != nil {
		return err
	}
	scope, err := scopeOf(principalOf(r), query.OrgID, rightAudit)
	if err != nil {
		return err
	}
	query.OrgID = scope.org
	entries, next, err := c.store.Audit(r.Context(), query)
	if err != nil {
		return err
	}
	page := controlapi.AuditPage{Entries: entries}
	if page.Entries == nil {
		page.Entries = []store.AuditEntry{}
	}
	if next != 0 {
		page.NextCursor = strconv.FormatUint(next, 10)
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

func auditQuery(r *http.Request) (store.AuditQuery, error) {
	q := r.URL.Query()
	query := store.AuditQuery{OrgID: q.Get("org_id"), ConnectionID: q.Get("connection_id")}
	if err := optionalID("org_id", query.OrgID); err != nil {
		return query, err
	}
	if err := optionalID("connection_id", query.ConnectionID); err != nil {
		return query, err
	}
	var err error
	if query.Limit, err = limitParam(r); err != nil {
		return query, err
	}
	if s := q.Get("cursor"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil || n == 0 {
			return query, invalid("cursor must be the next_cursor of a previous page.")
		}
		query.Before = n
	}
	return query, nil
}
