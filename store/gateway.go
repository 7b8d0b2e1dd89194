package store

import (
	"context"
	"time"
)

// GatewaySeen is what the store remembers of one gateway process subscribed
// to the change stream, so that a restarted control endpoint (or another
// replica on the same store) still counts it when a change waits until
// every gateway has applied it.
type GatewaySeen struct {
	GatewayID string `json:"gateway_id"`
	// Instance tells apart the processes that share a gateway id.
	Instance        string    `json:"instance"`
	AppliedRevision uint64    `json:"applied_revision"`
	SeenAt          time.Time `json:"seen_at"`
}

// GatewayStore keeps the gateways seen recently.
type GatewayStore interface {
	// SaveGateways records each gateway (keyed by gateway id and instance,
	// replacing what was kept of it) and forgets every gateway seen before
	// forgetBefore.
	SaveGateways(ctx context.Context, seen []GatewaySeen, forgetBefore time.Time) error
	// ForgetGateway forgets one gateway process (it left on purpose).
	ForgetGateway(ctx context.Context, gatewayID, instance string) error
	// Gateways returns the gateways seen at or after since, in gateway id and
	// instance order.
	Gateways(ctx context.Context, since time.Time) ([]GatewaySeen, error)
}

// GatewayWatcher is implemented by a GatewayStore that several control
// replicas share and that can tell them when another replica saved: a
// replica waiting for a gateway process connected to another one (whose
// acknowledgements reach the store, not this replica) re-reads Gateways
// when woken, instead of polling. Without it, a waiter polls slowly.
type GatewayWatcher interface {
	// GatewaysSaved returns a channel closed the next time another replica
	// saves or forgets gateways (SaveGateways with some gateways,
	// ForgetGateway), or when such a save may have been missed (the store's
	// notifications were interrupted). Take it before reading Gateways, so
	// that a save in between still wakes the caller.
	GatewaysSaved() <-chan struct{}
}
