// Package tests holds the end-to-end tests: they build the real Caddy binary
// with conngate once, start it as a process on free ports, and talk to it
// with a real HTTP client, through a real reverse_proxy to a real upstream.
package tests
