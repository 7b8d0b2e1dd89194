// Package controlapi is the contract of the connection_control HTTP API: the
// bodies it accepts and answers, its error codes, its paths and the format of
// its change stream. The control module serves it; the gate, the CLI and the
// tests speak it. A change to the API is a change here first, and to
// openapi.json (which tests check every real answer against).
package controlapi
