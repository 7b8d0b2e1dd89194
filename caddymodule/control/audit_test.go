package control_test

import (
	"net/http"
	"testing"

	"github.com/conngate/conngate/caddymodule/control/controltest"
	"github.com/conngate/conngate/store"
)

func TestAuditLog(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	c := s.Create(t, "org-1").Connection
	other := s.Create(t, "org-2").Connection
	resp, _ := raw(t, s, s.AdminKey, "POST", "/v1/connections/"+c.ID+"/disable", "", "X-Request-Id", "req-42")
	if resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	s.Act(t, c.ID, store.ActionDisable) // no-op: no entry
	s.Act(t, c.ID, store.ActionDelete)
	if resp, _ := raw(t, s, s.AdminKey, "POST", "/v1/connections/"+c.ID+"/enable", ""); resp.StatusCode != 409 {
		t.Fatal(resp.Status) // refused: no entry
	}
	raw(t, s, s.GatewayKey, "POST", "/v1/connections/"+other.ID+"/disable", "") // forbidden: no entry

	type body struct {
		Entries    []store.AuditEntry `json:"entries"`
		NextCursor string             `json:"next_cursor"`
	}
	var got body
	if code := s.Do(t, s.AdminKey, "GET", "/v1/audit?org_id=org-1", nil, &got); code != 200 {
		t.Fatalf("audit: %d", code)
	}
	if len(got.Entries) != 3 || got.Entries[0].Action != "delete" || got.Entries[1].Action != "disable" || got.Entries[2].Action != "create" {
		t.Fatalf("entries %+v", got.Entries)
	}
	if e := got.Entries[1]; e.ActorID != "api_key:admin" || e.RequestID != "req-42" || e.FromStatus != store.StatusActive || e.ToStatus != store.StatusDisabled || e.ConnectionID != c.ID {
		t.Errorf("disable entry %+v", e)
	}
	var page body
	s.Do(t, s.AdminKey, "GET", "/v1/audit?limit=2", nil, &page)
	if len(page.Entries) != 2 || page.NextCursor == "" {
		t.Fatalf("first page %+v", page)
	}
	s.Do(t, s.AdminKey, "GET", "/v1/audit?limit=2&cursor="+page.NextCursor, nil, &page)
	if len(page.Entries) != 2 || page.NextCursor != "" || page.Entries[1].Action != "create" {
		t.Fatalf("second page %+v", page)
	}

	var e errorBody
	for _, tt := range []struct {
		key, query string
		status     int
	}{
		{s.GatewayKey, "", http.StatusForbidden},
		{"", "", http.StatusUnauthorized},
		{s.AdminKey, "?cursor=abc", http.StatusBadRequest},
		{s.AdminKey, "?limit=0", http.StatusBadRequest},
		{s.AdminKey, "?org_id=a/b", http.StatusBadRequest},
	} {
		if code := s.Do(t, tt.key, "GET", "/v1/audit"+tt.query, nil, &e); code != tt.status {
			t.Errorf("%q: %d, want %d", tt.query, code, tt.status)
		}
	}
}
