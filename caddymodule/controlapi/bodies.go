package controlapi

import (
	"time"

	"github.com/conngate/conngate/store"
)

// ConnectionBody answers GET /v1/connections/{id} and a status change made
// without ?wait=applied.
type ConnectionBody struct {
	Connection store.Connection `json:"connection"`
}

// Created answers POST /v1/connections: the connection and the access token
// issued for it, shown this once.
type Created struct {
	Connection  store.Connection `json:"connection"`
	AccessToken string           `json:"access_token"`
	TokenType   string           `json:"token_type"`
	ExpiresAt   time.Time        `json:"expires_at"`
}

// ConnectionPage answers GET /v1/connections.
type ConnectionPage struct {
	Connections []store.Connection `json:"connections"`
	// NextCursor is empty on the last page.
	NextCursor string `json:"next_cursor"`
}

// StatusBody answers GET /v1/connections/{id}/status, the gateways' lookup.
type StatusBody struct {
	ID       string       `json:"id"`
	Status   store.Status `json:"status"`
	Revision uint64       `json:"revision"`
}

// Applied answers a status change made with ?wait=applied: the connection
// and which of the gateways subscribed at the time have applied it.
type Applied struct {
	Connection   store.Connection `json:"connection"`
	Gateways     int              `json:"gateways"`
	Acknowledged int              `json:"acknowledged"`
	Pending      []string         `json:"pending"`
}

// AuditPage answers GET /v1/audit, newest first.
type AuditPage struct {
	Entries []store.AuditEntry `json:"entries"`
	// NextCursor is empty on the last page.
	NextCursor string `json:"next_cursor"`
}

// GatewayList answers GET /v1/gateways.
type GatewayList struct {
	// Revision is the store's latest, against which lag is counted.
	Revision uint64    `json:"revision"`
	Gateways []Gateway `json:"gateways"`
}

// Gateway is one gateway process subscribed to the change stream, or seen
// on it recently: ?wait=applied counts it until it has been gone for the
// control endpoint's gateway_retention.
type Gateway struct {
	ID string `json:"id"`
	// Instance tells apart processes that share a gateway id.
	Instance string `json:"instance"`
	// Connected: it has an open change stream now.
	Connected       bool       `json:"connected"`
	Streams         int        `json:"streams"`
	AppliedRevision uint64     `json:"applied_revision"`
	LagRevisions    uint64     `json:"lag_revisions"`
	ConnectedAt     time.Time  `json:"connected_at"`
	LastAckAt       *time.Time `json:"last_ack_at"`
	LastSeenAt      time.Time  `json:"last_seen_at"`
}

// Ack is the body of POST /v1/gateways/{id}/ack: the gateway has applied
// every change up to Revision.
type Ack struct {
	Revision uint64 `json:"revision"`
	// Stream is the ack key its change stream was answered with
	// (AckKeyHeader): an ack counts for that stream's process, and only up
	// to what the stream has delivered.
	Stream string `json:"stream"`
}

// Leave is the body of POST /v1/gateways/{id}/leave: a gateway process
// that stops on purpose is forgotten at once, rather than counted as
// pending for gateway_retention.
type Leave struct {
	Stream string `json:"stream"`
}

// Me answers GET /v1/me: who a key belongs to and what it may do.
type Me struct {
	ID      string            `json:"id"`
	Admin   bool              `json:"admin"`
	Gateway bool              `json:"gateway"`
	Roles   map[string]string `json:"roles"`
}
