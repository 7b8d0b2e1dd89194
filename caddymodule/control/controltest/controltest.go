// Package controltest runs a real connection_control handler, on a real
// store, behind an httptest server, for tests of the modules that talk to it.
package controltest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/conngate/conngate/caddymodule/control"
	"github.com/conngate/conngate/caddymodule/control/contracttest"
	"github.com/conngate/conngate/caddymodule/controlapi"
	"github.com/conngate/conngate/store"
)

// Server is a running control endpoint.
type Server struct {
	URL        string
	AdminKey   string
	GatewayKey string
	// SigningKey signs the tokens the endpoint issues; tests use it to forge
	// tokens with other claims that the gate must still verify.
	SigningKey ed25519.PrivateKey
	Issuer     string
	Audience   string
	// HTTP is the underlying server.
	HTTP *httptest.Server
	// Control is the provisioned handler, for tests that reach inside it.
	Control *control.Control

	stopOnce sync.Once
	stop     func()
}

// Stop shuts the endpoint down, streams included, and releases the store,
// so that another Start on the same Dir and Addr can take over.
func (s *Server) Stop() { s.stopOnce.Do(s.stop) }

// Options tune the control endpoint; zero values take the test defaults.
type Options struct {
	// Dir holds the store and the key; reuse it to restart on the same data.
	Dir string
	// ChangeLogSize of the store (default: the store's default).
	ChangeLogSize int
	// Heartbeat interval of the change stream (default: the module's).
	Heartbeat time.Duration
	// Keys, to restart with the same ones (default: random).
	AdminKey, GatewayKey string
	// Addr to listen on, to restart on the same address (default: a free port).
	Addr string
	// PrincipalsFile for principals_file (default: none).
	PrincipalsFile string
	// Configure, if set, changes the module's settings before provisioning.
	Configure func(*control.Control)
}

// RandomKey returns a fresh API key.
func RandomKey() string {
	b := make([]byte, 24)
	rand.Read(b) // never fails
	return hex.EncodeToString(b)
}

// Provision only provisions a Control module with opts and reports the
// error, for tests of bad configuration.
func Provision(t testing.TB, opts Options) error {
	t.Helper()
	c := &control.Control{
		StoreRaw:       caddyconfig.JSONModuleObject(control.BoltStore{Path: filepath.Join(t.TempDir(), "conngate.db")}, "backend", "bolt", nil),
		APIKeys:        []control.APIKey{{Role: "admin", Key: RandomKey()}},
		PrincipalsFile: opts.PrincipalsFile,
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	return c.Provision(ctx)
}

// Start provisions a Control module and serves it until the test ends. Every
// exchange with it is checked against the OpenAPI document: an answer that
// leaves it fails the test.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	keyFile := filepath.Join(opts.Dir, "signing.pem")
	signing := loadOrWriteKey(t, keyFile)
	if opts.AdminKey == "" {
		opts.AdminKey = RandomKey()
	}
	if opts.GatewayKey == "" {
		opts.GatewayKey = RandomKey()
	}
	s := &Server{AdminKey: opts.AdminKey, GatewayKey: opts.GatewayKey, SigningKey: signing, Issuer: "test-issuer", Audience: "test-api"}
	c := &control.Control{
		StoreRaw: caddyconfig.JSONModuleObject(control.BoltStore{Path: filepath.Join(opts.Dir, "conngate.db"), ChangeLogSize: opts.ChangeLogSize},
			"backend", "bolt", nil),
		APIKeys:           []control.APIKey{{Role: "admin", Key: s.AdminKey}, {Role: "gateway", Key: s.GatewayKey}},
		SigningKeyFile:    keyFile,
		PrincipalsFile:    opts.PrincipalsFile,
		Issuer:            s.Issuer,
		Audience:          s.Audience,
		HeartbeatInterval: caddy.Duration(opts.Heartbeat),
	}
	if opts.Configure != nil {
		opts.Configure(c)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	if err := c.Provision(ctx); err != nil {
		cancel()
		t.Fatalf("provisioning control: %v", err)
	}
	if err := c.Validate(); err != nil {
		cancel()
		t.Fatalf("validating control: %v", err)
	}
	contract, err := contracttest.Load()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	s.Control = c
	s.HTTP = httptest.NewUnstartedServer(contract.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := c.ServeHTTP(w, r, nil); err != nil {
			t.Errorf("control handler returned %v", err)
		}
	}), reporter(t)))
	if opts.Addr != "" {
		l, err := net.Listen("tcp", opts.Addr)
		if err != nil {
			cancel()
			t.Fatalf("listening on %s: %v", opts.Addr, err)
		}
		s.HTTP.Listener.Close()
		s.HTTP.Listener = l
	}
	s.HTTP.Start()
	s.URL = s.HTTP.URL
	s.stop = func() {
		s.HTTP.CloseClientConnections()
		s.HTTP.Close()
		c.Cleanup() // as Caddy does when it unloads a config
		cancel()    // cleans up the store module, which closes the file
	}
	t.Cleanup(s.Stop)
	return s
}

// reporter fails the test with each answer that leaves the OpenAPI
// document. A fuzz test's F may not be failed while its fuzz target runs,
// so its mismatches are reported when it ends.
func reporter(t testing.TB) func(error) {
	f, ok := t.(*testing.F)
	if !ok {
		return func(err error) { t.Errorf("openapi.json: %v", err) }
	}
	var mu sync.Mutex
	var mismatches []error
	f.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, err := range mismatches {
			f.Errorf("openapi.json: %v", err)
		}
	})
	return func(err error) {
		mu.Lock()
		mismatches = append(mismatches, err)
		mu.Unlock()
	}
}

func loadOrWriteKey(t testing.TB, path string) ed25519.PrivateKey {
	if data, err := os.ReadFile(path); err == nil {
		block, _ := pem.Decode(data)
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return k.(ed25519.PrivateKey)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return priv
}

// Do sends a request with the given key and decodes a JSON answer into out
// (when out is not nil). It returns the status code.
func (s *Server) Do(t testing.TB, key, method, path string, body, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: decoding answer: %v", method, path, err)
		}
	}
	return resp.StatusCode
}

// Create makes a connection with the admin key and returns it with its token.
func (s *Server) Create(t testing.TB, org string) controlapi.Created {
	t.Helper()
	var c controlapi.Created
	if code := s.Do(t, s.AdminKey, http.MethodPost, controlapi.PathConnections, store.NewConnection{Name: "Test app", OrgID: org, UserID: "user-1"}, &c); code != http.StatusCreated {
		t.Fatalf("create: status %d", code)
	}
	return c
}

// Act disables, enables or deletes a connection with the admin key.
func (s *Server) Act(t testing.TB, id string, action store.Action) store.Connection {
	t.Helper()
	method, path := http.MethodPost, controlapi.ActionPath(id, string(action))
	if action == store.ActionDelete {
		method, path = http.MethodDelete, controlapi.ConnectionPath(id)
	}
	var out controlapi.ConnectionBody
	if code := s.Do(t, s.AdminKey, method, path, nil, &out); code != http.StatusOK {
		t.Fatalf("%s %s: status %d", method, path, code)
	}
	return out.Connection
}
