package store

import (
	"strings"
	"testing"
	"time"
)

func TestNewIDSortsByTimeAndIsUnique(t *testing.T) {
	t0 := time.Now()
	a, b := NewID(t0), NewID(t0.Add(time.Millisecond))
	if !(a < b) {
		t.Errorf("ids do not sort by time: %s !< %s", a, b)
	}
	if err := ValidateID("id", a); err != nil {
		t.Errorf("generated id fails validation: %v", err)
	}
	seen := map[string]bool{}
	prev := ""
	for range 10000 {
		id := NewID(t0) // all in one millisecond
		if seen[id] {
			t.Fatalf("duplicate id %s", id)
		}
		if id <= prev {
			t.Fatalf("ids made in one millisecond do not increase: %s after %s", id, prev)
		}
		seen[id], prev = true, id
	}
	if late := NewID(t0.Add(-time.Hour)); late <= prev {
		t.Fatalf("an id made with an earlier clock went back: %s after %s", late, prev)
	}
}

// Ids travel in URL paths, headers and logs: ValidateID keeps out what would
// change a path's meaning or a line's.
func TestValidateID(t *testing.T) {
	for _, tt := range []struct {
		id string
		ok bool
	}{
		{"conn_06h3oa7khjgeolm41cmb0hv8k4", true},
		{"org-1", true},
		{"a.b", true},
		{"...", true},
		{"", false},
		{".", false},
		{"..", false},
		{"a/b", false},
		{"a b", false},
		{"a?b", false},
		{"a#b", false},
		{"a%2e", false},
		{"ü", false},
		{strings.Repeat("a", MaxIDLength+1), false},
	} {
		if err := ValidateID("id", tt.id); (err == nil) != tt.ok {
			t.Errorf("ValidateID(%q) = %v, want ok %v", tt.id, err, tt.ok)
		}
	}
}
