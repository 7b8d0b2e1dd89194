package store

import (
	"errors"
	"testing"
)

func TestNext(t *testing.T) {
	tests := []struct {
		from    Status
		action  Action
		to      Status
		changed bool
		err     error
	}{
		{StatusActive, ActionEnable, StatusActive, false, nil},
		{StatusActive, ActionDisable, StatusDisabled, true, nil},
		{StatusActive, ActionDelete, StatusDeleted, true, nil},
		{StatusDisabled, ActionEnable, StatusActive, true, nil},
		{StatusDisabled, ActionDisable, StatusDisabled, false, nil},
		{StatusDisabled, ActionDelete, StatusDeleted, true, nil},
		{StatusDeleted, ActionEnable, StatusDeleted, false, ErrDeleted},
		{StatusDeleted, ActionDisable, StatusDeleted, false, ErrDeleted},
		{StatusDeleted, ActionDelete, StatusDeleted, false, nil},
	}
	for _, tt := range tests {
		t.Run(string(tt.from)+"/"+string(tt.action), func(t *testing.T) {
			to, changed, err := Next(tt.from, tt.action)
			if !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if to != tt.to || changed != tt.changed {
				t.Fatalf("Next = (%s, %v), want (%s, %v)", to, changed, tt.to, tt.changed)
			}
		})
	}
}

func TestNextRejectsUnknownInput(t *testing.T) {
	if _, _, err := Next("paused", ActionEnable); err == nil {
		t.Error("unknown status accepted")
	}
	if _, _, err := Next(StatusActive, "restore"); err == nil {
		t.Error("unknown action accepted")
	}
}

// No sequence of actions leads out of deleted.
func TestDeletedIsTerminal(t *testing.T) {
	for _, a := range []Action{ActionEnable, ActionDisable, ActionDelete} {
		if to, _, _ := Next(StatusDeleted, a); to != StatusDeleted {
			t.Errorf("%s on deleted gave %s", a, to)
		}
	}
}

func TestValidate(t *testing.T) {
	long := make([]byte, MaxIDLength+1)
	for i := range long {
		long[i] = 'a'
	}
	tests := []struct {
		name  string
		in    NewConnection
		field string
	}{
		{"ok", NewConnection{Name: "Zapier – sync", OrgID: "org-1", UserID: "user_1"}, ""},
		{"no name", NewConnection{OrgID: "o", UserID: "u"}, "name"},
		{"control char in name", NewConnection{Name: "a\nb", OrgID: "o", UserID: "u"}, "name"},
		{"no org", NewConnection{Name: "n", UserID: "u"}, "org_id"},
		{"slash in org", NewConnection{Name: "n", OrgID: "a/b", UserID: "u"}, "org_id"},
		{"space in user", NewConnection{Name: "n", OrgID: "o", UserID: "a b"}, "user_id"},
		{"long user", NewConnection{Name: "n", OrgID: "o", UserID: string(long)}, "user_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.in.Validate()
			var inv *InvalidError
			if tt.field == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if !errors.As(err, &inv) || inv.Field != tt.field || !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want InvalidError on %s", err, tt.field)
			}
		})
	}
}
