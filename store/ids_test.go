package store

import (
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
