package boltstore

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/conngate/conngate/store"
	"github.com/conngate/conngate/store/storetest"
)

func TestConformance(t *testing.T) {
	dir := t.TempDir()
	storetest.Run(t, func(t *testing.T, name string) store.Store {
		s, err := Open(filepath.Join(dir, name, "conngate.db"), Options{ChangeLogSize: 50})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}, 50)
}

func TestOpenTwiceFailsClearly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = Open(path, Options{})
	if err == nil || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("second open: %v, want a 'locked' error", err)
	}
}
