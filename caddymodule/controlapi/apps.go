package controlapi

import (
	"net/url"
	"time"

	"github.com/conngate/conngate/store"
)

// PathApps is where OAuth 2.0 apps are registered and listed.
const PathApps = "/v1/apps"

// AppPath is the path of one app: GET shows it, DELETE deletes it and every
// connection made through it.
func AppPath(id string) string { return PathApps + "/" + url.PathEscape(id) }

// AppSecretPath is where a confidential app's client secret is rotated.
func AppSecretPath(id string) string { return AppPath(id) + "/secret" }

// NewApp is the body of POST /v1/apps, with the client metadata names of
// RFC 7591 section 2.
type NewApp struct {
	ClientName   string   `json:"client_name"`
	RedirectURIs []string `json:"redirect_uris"`
	// TokenEndpointAuthMethod is client_secret_basic (when left out, as
	// RFC 7591 says), client_secret_post or none (a public client).
	TokenEndpointAuthMethod store.AuthMethod `json:"token_endpoint_auth_method,omitempty"`
	OrgID                   string           `json:"org_id"`
}

// App answers POST /v1/apps, GET /v1/apps/{id} and a secret rotation: a
// registered app as RFC 7591 section 3.2.1 describes a client, and who
// registered it where.
type App struct {
	ClientID                string           `json:"client_id"`
	ClientName              string           `json:"client_name"`
	RedirectURIs            []string         `json:"redirect_uris"`
	TokenEndpointAuthMethod store.AuthMethod `json:"token_endpoint_auth_method"`
	OrgID                   string           `json:"org_id"`
	CreatedBy               string           `json:"created_by"`
	// ClientIDIssuedAt is CreatedAt in Unix seconds, as RFC 7591 has it.
	ClientIDIssuedAt int64 `json:"client_id_issued_at"`
	// CreatedAt is in UTC.
	CreatedAt time.Time `json:"created_at"`
	// ClientSecret is set only in the answer that issued it (registration or
	// rotation): only its sha-256 is kept, so it can never be shown again.
	ClientSecret string `json:"client_secret,omitempty"`
	// ClientSecretExpiresAt goes with ClientSecret: 0, it does not expire
	// (RFC 7591 requires it beside an issued secret).
	ClientSecretExpiresAt *int64 `json:"client_secret_expires_at,omitempty"`
}

// AppOf is the answer body of a stored app, without a secret.
func AppOf(a store.App) App {
	uris := a.RedirectURIs
	if uris == nil {
		uris = []string{}
	}
	return App{
		ClientID:                a.ID,
		ClientName:              a.Name,
		RedirectURIs:            uris,
		TokenEndpointAuthMethod: a.AuthMethod,
		OrgID:                   a.OrgID,
		CreatedBy:               a.CreatedBy,
		ClientIDIssuedAt:        a.CreatedAt.Unix(),
		CreatedAt:               a.CreatedAt.UTC(),
	}
}

// WithSecret is the app with its newly issued secret, for the one answer
// that shows it.
func (a App) WithSecret(secret string) App {
	never := int64(0)
	a.ClientSecret, a.ClientSecretExpiresAt = secret, &never
	return a
}

// AppPage answers GET /v1/apps, oldest first.
type AppPage struct {
	Apps []App `json:"apps"`
	// NextCursor is empty on the last page.
	NextCursor string `json:"next_cursor"`
}

// AppDeleted answers DELETE /v1/apps/{id}: the app as it was, how many
// connections its deletion deleted (not those deleted before), and those of
// them the caller may view: people of other organisations authorise apps
// too, and their connections are not the caller's to learn of.
type AppDeleted struct {
	App                App                `json:"app"`
	ConnectionsDeleted int                `json:"connections_deleted"`
	Connections        []store.Connection `json:"connections"`
	// Propagation is set with ?wait=applied only.
	*Propagation
}

// Propagation says which of the gateways subscribed at the time of a change
// have applied it.
type Propagation struct {
	Gateways     int      `json:"gateways"`
	Acknowledged int      `json:"acknowledged"`
	Pending      []string `json:"pending"`
}
