package control

import (
	"net/http"
	"strconv"

	"github.com/conngate/conngate/store"
)

type auditBody struct {
	Entries    []store.AuditEntry `json:"entries"`
	NextCursor string             `json:"next_cursor"`
}

// listAudit is GET /v1/audit?org_id=&connection_id=&limit=&cursor=, newest
// first.
func (c *Control) listAudit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	query := store.AuditQuery{OrgID: q.Get("org_id"), ConnectionID: q.Get("connection_id")}
	if query.OrgID != "" && !validID(w, "org_id", query.OrgID) || query.ConnectionID != "" && !validID(w, "connection_id", query.ConnectionID) {
		return
	}
	var ok bool
	if query.Limit, ok = limitParam(w, r); !ok {
		return
	}
	if s := q.Get("cursor"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil || n == 0 {
			writeError(w, http.StatusBadRequest, "invalid_request", "cursor must be the next_cursor of a previous page.")
			return
		}
		query.Before = n
	}
	if query.OrgID, ok = orgScope(w, r, query.OrgID, rightAudit); !ok {
		return
	}
	entries, next, err := c.store.Audit(r.Context(), query)
	if err != nil {
		c.writeStoreError(w, r, err)
		return
	}
	body := auditBody{Entries: entries}
	if body.Entries == nil {
		body.Entries = []store.AuditEntry{}
	}
	if next != 0 {
		body.NextCursor = strconv.FormatUint(next, 10)
	}
	writeJSON(w, http.StatusOK, body)
}
