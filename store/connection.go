package store

import (
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"
)

// Status is the state of a connection as gateways see it.
type Status string

// The three statuses a connection can be in. A gateway lets a token through
// only for StatusActive.
const (
	StatusActive   Status = "active"
	StatusDisabled Status = "disabled"
	// StatusDeleted is terminal: the connection stays as a tombstone so that
	// gateways can answer "deleted" rather than "unknown".
	StatusDeleted Status = "deleted"
)

// Valid reports whether s is one of the known statuses.
func (s Status) Valid() bool {
	switch s {
	case StatusActive, StatusDisabled, StatusDeleted:
		return true
	}
	return false
}

// Connection is a third-party app's authorised access on behalf of one user
// of one organisation.
type Connection struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	OrgID  string `json:"org_id"`
	UserID string `json:"user_id"`
	// AppID is the app the connection was authorised for through OAuth;
	// empty for a connection created through the API.
	AppID  string `json:"app_id,omitempty"`
	Status Status `json:"status"`
	// CreatedAt and UpdatedAt are in UTC.
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// Revision is the store-wide revision of the last change to this
	// connection (its creation or its last status change).
	Revision uint64 `json:"revision"`
}

// NewConnection is what a caller supplies to create a connection.
type NewConnection struct {
	Name   string `json:"name"`
	OrgID  string `json:"org_id"`
	UserID string `json:"user_id"`
	// AppID is set by the OAuth flow, never by an API caller.
	AppID string `json:"-"`
}

// Limits on user-supplied fields. Ids are short because they travel in
// tokens, URLs and log lines; names are for people.
const (
	MaxNameLength = 200
	MaxIDLength   = 128
)

// Validate returns an *InvalidError naming the first field that is unusable.
func (n NewConnection) Validate() error {
	if err := validateText("name", n.Name, MaxNameLength); err != nil {
		return err
	}
	if err := ValidateID("org_id", n.OrgID); err != nil {
		return err
	}
	return ValidateID("user_id", n.UserID)
}

// ValidateID checks an identifier (connection, organisation or user id):
// non-empty, at most MaxIDLength bytes, printable ASCII without spaces or
// path separators so that it is safe in URLs, headers and logs.
func ValidateID(field, id string) error {
	if id == "" {
		return &InvalidError{Field: field, Reason: "is required"}
	}
	if len(id) > MaxIDLength {
		return &InvalidError{Field: field, Reason: fmt.Sprintf("must be at most %d characters", MaxIDLength)}
	}
	if id == "." || id == ".." {
		// A dot segment in a URL path names another path.
		return &InvalidError{Field: field, Reason: "must not be . or .."}
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c <= ' ' || c >= 0x7f || c == '/' || c == '\\' || c == '?' || c == '#' || c == '%' {
			return &InvalidError{Field: field, Reason: "may contain only printable ASCII characters other than space, '/', '\\', '?', '#' and '%'"}
		}
	}
	return nil
}

func validateText(field, s string, max int) error {
	if s == "" {
		return &InvalidError{Field: field, Reason: "is required"}
	}
	if !utf8.ValidString(s) {
		return &InvalidError{Field: field, Reason: "must be valid UTF-8"}
	}
	if utf8.RuneCountInString(s) > max {
		return &InvalidError{Field: field, Reason: fmt.Sprintf("must be at most %d characters", max)}
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return &InvalidError{Field: field, Reason: "must not contain control characters"}
		}
	}
	return nil
}
