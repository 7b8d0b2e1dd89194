package controlapi

import "net/url"

// Fixed paths of the control API.
const (
	PathJWKS        = "/.well-known/jwks.json"
	PathOpenAPI     = "/v1/openapi.json"
	PathConnections = "/v1/connections"
	PathEvents      = "/v1/events"
	PathAudit       = "/v1/audit"
	PathGateways    = "/v1/gateways"
	PathMe          = "/v1/me"
)

// ConnectionPath is the path of one connection: GET shows it, DELETE deletes it.
func ConnectionPath(id string) string { return PathConnections + "/" + url.PathEscape(id) }

// StatusPath is where gateways look a connection's status up.
func StatusPath(id string) string { return ConnectionPath(id) + "/status" }

// ActionPath is where a status change other than delete is asked for:
// action is "disable" or "enable".
func ActionPath(id, action string) string { return ConnectionPath(id) + "/" + action }

// AckPath is where gateway id acknowledges applied revisions.
func AckPath(gatewayID string) string { return PathGateways + "/" + url.PathEscape(gatewayID) + "/ack" }

// LeavePath is where a gateway process that stops says so.
func LeavePath(gatewayID string) string {
	return PathGateways + "/" + url.PathEscape(gatewayID) + "/leave"
}

// EventsPathFor is the change stream of one process of gateway id.
func EventsPathFor(gatewayID, instance string) string {
	return PathEvents + "?gateway_id=" + url.QueryEscape(gatewayID) + "&instance=" + url.QueryEscape(instance)
}
