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
	for range 10000 {
		id := NewID(t0)
		if seen[id] {
			t.Fatalf("duplicate id %s", id)
		}
		seen[id] = true
	}
}
