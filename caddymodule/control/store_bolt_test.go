package control

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// A reload provisions the new config's store while the old one holds it
// open: the open store is shared, and a change_log_size it was not opened
// with is refused with the setting named, not silently ignored.
func TestBoltStoreReloadSettings(t *testing.T) {
	path := filepath.Join(t.TempDir(), "conngate.db")
	old := &BoltStore{Path: path, ChangeLogSize: 5000}
	if err := old.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	defer old.Cleanup()
	tests := []struct {
		name    string
		logSize int
		want    string // in the error; empty: accepted
	}{
		{"same change_log_size", 5000, ""},
		{"other change_log_size", 7000, "change_log_size 7000: store " + path + " is open with 5000"},
		{"default where the open store has 5000", 0, "change_log_size 100000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &BoltStore{Path: path, ChangeLogSize: tt.logSize}
			err := b.Provision(caddy.Context{})
			defer b.Cleanup()
			if tt.want == "" {
				if err != nil || b.Store() != old.Store() {
					t.Fatalf("err %v, shares the open store: %v", err, b.Store() == old.Store())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
	if n, _ := openStores.References(old.poolKey); n != 1 {
		t.Fatalf("%d users of the open store, want the old config alone", n)
	}
}
