package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// An App is a third-party application registered as an OAuth 2.0 client
// (RFC 6749 section 2). People authorise it through the authorisation code
// flow, and every authorisation is a connection with the app's id.
type App struct {
	// ID is the OAuth client_id: "app_" then the same kind of time-ordered
	// random id as a connection's.
	ID   string `json:"id"`
	Name string `json:"name"`
	// RedirectURIs are compared with the redirect_uri of a request as exact
	// strings, never as prefixes.
	RedirectURIs []string `json:"redirect_uris"`
	// AuthMethod is how the app authenticates at the token endpoint.
	AuthMethod AuthMethod `json:"auth_method"`
	// SecretHash is the sha-256 of a confidential app's client secret; the
	// secret itself is shown once and never stored. Empty for a public app.
	SecretHash []byte `json:"secret_hash,omitempty"`
	// OrgID is the organisation that registered the app; CreatedBy the
	// principal who did.
	OrgID     string    `json:"org_id"`
	CreatedBy string    `json:"created_by"`
	CreatedAt time.Time `json:"created_at"`
}

// AuthMethod is an RFC 7591 token_endpoint_auth_method.
type AuthMethod string

// The client authentication methods apps may register.
const (
	// AuthNone is a public client (a mobile or single-page app): it proves
	// itself with PKCE only.
	AuthNone AuthMethod = "none"
	// AuthSecretBasic sends the client secret in an HTTP Basic header.
	AuthSecretBasic AuthMethod = "client_secret_basic"
	// AuthSecretPost sends it in the form body.
	AuthSecretPost AuthMethod = "client_secret_post"
)

// Valid reports whether m is a method apps may register.
func (m AuthMethod) Valid() bool {
	return m == AuthNone || m == AuthSecretBasic || m == AuthSecretPost
}

// Confidential reports whether apps with this method hold a client secret.
func (m AuthMethod) Confidential() bool { return m == AuthSecretBasic || m == AuthSecretPost }

// NewApp is what a caller supplies to register an app.
type NewApp struct {
	Name         string
	RedirectURIs []string
	AuthMethod   AuthMethod
	// SecretHash must be set for a confidential method and empty otherwise.
	SecretHash []byte
	OrgID      string
}

// Limits on registrations.
const (
	MaxRedirectURIs      = 10
	MaxRedirectURILength = 2000
)

// Validate returns an *InvalidError naming the first unusable field.
func (n NewApp) Validate() error {
	if err := validateText("client_name", n.Name, MaxNameLength); err != nil {
		return err
	}
	if err := ValidateID("org_id", n.OrgID); err != nil {
		return err
	}
	if !n.AuthMethod.Valid() {
		return &InvalidError{Field: "token_endpoint_auth_method", Reason: "must be client_secret_basic, client_secret_post or none"}
	}
	if n.AuthMethod.Confidential() != (len(n.SecretHash) > 0) {
		return &InvalidError{Field: "client secret", Reason: "must be set exactly for a confidential app"}
	}
	if len(n.RedirectURIs) == 0 || len(n.RedirectURIs) > MaxRedirectURIs {
		return &InvalidError{Field: "redirect_uris", Reason: fmt.Sprintf("must hold 1 to %d URIs", MaxRedirectURIs)}
	}
	for _, u := range n.RedirectURIs {
		if err := ValidateRedirectURI(u); err != nil {
			return err
		}
	}
	return nil
}

// ValidateRedirectURI accepts an absolute https URI, or an http one whose
// host is a loopback address or localhost (RFC 8252 section 7.3, native
// apps), without a fragment (RFC 6749 section 3.1.2).
func ValidateRedirectURI(raw string) error {
	bad := func(reason string) error {
		return &InvalidError{Field: "redirect_uris", Reason: fmt.Sprintf("%q %s", truncate(raw, 100), reason)}
	}
	if len(raw) > MaxRedirectURILength {
		return bad(fmt.Sprintf("is longer than %d characters", MaxRedirectURILength))
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Opaque != "" {
		return bad("is not an absolute URI")
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return bad("must not have a fragment")
	}
	if u.User != nil {
		return bad("must not carry user information")
	}
	if host := u.Hostname(); net.ParseIP(host) == nil && !dnsName(host) {
		return bad("must name its host by a DNS name or an IP address")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if IsLoopbackHost(u.Hostname()) {
			return nil
		}
		return bad("must use https (http only for loopback hosts such as 127.0.0.1)")
	}
	return bad("must use https")
}

// IsLoopbackHost reports whether host (a URL's host, without its port)
// names this machine: localhost, in any case, or a loopback IP address.
// Only such hosts may be reached over plain http.
func IsLoopbackHost(host string) bool {
	ip := net.ParseIP(host)
	return strings.EqualFold(host, "localhost") || ip != nil && ip.IsLoopback()
}

// dnsName reports whether host is made of DNS labels: letters, digits and
// hyphens, separated by dots.
func dnsName(host string) bool {
	if host == "" || len(host) > 253 {
		return false
	}
	for _, label := range strings.Split(host, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			ch := label[i]
			if !('a' <= ch && ch <= 'z' || 'A' <= ch && ch <= 'Z' || '0' <= ch && ch <= '9' || ch == '-') {
				return false
			}
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// AppQuery pages the apps of one organisation, oldest first.
type AppQuery struct {
	OrgID string
	// Limit is the page size; 0 means DefaultListLimit.
	Limit int
	// After is the cursor returned by the previous page.
	After string
}

// ErrAppNotFound: no app has this client id.
var ErrAppNotFound = errors.New("app not found")

// AppStore persists apps. Deleting an app deletes every connection made
// through it, each deletion a change like any other: the state machine,
// a revision, the change log and an audit entry, in the same transaction
// as the app's removal.
type AppStore interface {
	CreateApp(ctx context.Context, n NewApp, by Actor) (App, error)
	// GetApp returns ErrAppNotFound for an unknown id.
	GetApp(ctx context.Context, id string) (App, error)
	ListApps(ctx context.Context, q AppQuery) (apps []App, next string, err error)
	// DeleteApp removes the app, its codes and refresh tokens, and deletes
	// its connections; it returns the connections it deleted (not those
	// already deleted).
	DeleteApp(ctx context.Context, id string, by Actor) (deleted []Connection, err error)
	// SetAppSecret replaces a confidential app's secret hash.
	SetAppSecret(ctx context.Context, id string, secretHash []byte) (App, error)
}
