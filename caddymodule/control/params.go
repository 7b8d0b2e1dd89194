package control

import (
	"net/http"
	"strconv"

	"github.com/conngate/conngate/store"
)

// limitParam reads ?limit= (0 when absent), or answers 400.
func limitParam(w http.ResponseWriter, r *http.Request) (int, bool) {
	s := r.URL.Query().Get("limit")
	if s == "" {
		return 0, true
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > store.MaxListLimit {
		writeError(w, http.StatusBadRequest, "invalid_request", "limit must be a whole number from 1 to "+strconv.Itoa(store.MaxListLimit)+".")
		return 0, false
	}
	return n, true
}

// orgScope settles which organisation an organisation-wide request (a list,
// the audit log) is about and whether the caller may do want there: org as
// asked, or the only one the caller has a role in. It answers the refusal
// itself and reports whether to go on.
func orgScope(w http.ResponseWriter, r *http.Request, org string, want right) (string, bool) {
	who := principalOf(r)
	if org == "" && !who.gateway {
		sole, ok := soleOrg(who)
		if !ok {
			writeError(w, http.StatusBadRequest, "invalid_request", "org_id is required: say which organisation you mean, to "+string(want)+".")
			return "", false
		}
		org = sole
	}
	if !who.admin && !allowed(w, r, want, org, nil, "") {
		return "", false
	}
	return org, true
}
