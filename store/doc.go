// Package store holds the connection model, the one state machine that says
// which status may follow which, and the Store interface that persistence
// backends implement. It knows nothing of HTTP or Caddy.
//
// Backends live in sub-packages (boltstore for the embedded default) and are
// all checked by the same conformance suite in storetest.
package store
