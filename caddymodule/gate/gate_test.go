package gate

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/golang-jwt/jwt/v5"

	"github.com/conngate/conngate/caddymodule/control/controltest"
	"github.com/conngate/conngate/store"
)

// newGate provisions a gate in front of the control endpoint s (or of
// tweak's control_url) and waits until its change stream is connected.
func newGate(t testing.TB, s *controltest.Server, tweak func(*Gate)) *Gate {
	t.Helper()
	g := provisionGate(t, s, tweak)
	waitConnected(t, g)
	return g
}

// provisionGate provisions a gate in a running config. Its cache is small:
// the default size's counters take most of a test's time under -race
// (TestDefaults checks the default).
func provisionGate(t testing.TB, s *controltest.Server, tweak func(*Gate)) *Gate {
	t.Helper()
	return provisionGateIn(t, runningConfig(t), s, tweak)
}

func provisionGateIn(t testing.TB, ctx caddy.Context, s *controltest.Server, tweak func(*Gate)) *Gate {
	t.Helper()
	g := &Gate{
		ControlURL: s.URL,
		ControlKey: s.GatewayKey,
		GatewayID:  strings.NewReplacer("/", "-", " ", "-").Replace(t.Name()),
		Issuers:    []string{s.Issuer},
		Audiences:  []string{s.Audience},
		TTL:        caddy.Duration(time.Hour),
		CacheSize:  testCacheSize,
	}
	if tweak != nil {
		tweak(g)
	}
	t.Cleanup(func() { g.Cleanup() })
	if err := g.Provision(ctx); err != nil {
		t.Fatalf("provision: %v", err)
	}
	return g
}

const testCacheSize = 10_000

// runningConfig is the context of a Caddy config that has started, as a
// gate's is in a running Caddy: what the gates provision in it starts at
// once. The tests' gates share it and clean up after themselves.
func runningConfig(t testing.TB) caddy.Context {
	t.Helper()
	ctx, err := startedConfig()
	if err != nil {
		t.Fatalf("starting an empty config: %v", err)
	}
	return ctx
}

var startedConfig = sync.OnceValues(func() (caddy.Context, error) {
	ctx, err := caddy.ProvisionContext(&caddy.Config{})
	if err != nil {
		return ctx, err
	}
	app, err := startupOf(ctx)
	if err != nil {
		return ctx, err
	}
	return ctx, app.Start()
})

func waitConnected(t testing.TB, g *Gate) {
	t.Helper()
	eventually(t, 5*time.Second, "change stream connected", func() bool { return g.source.connected.Load() })
}

// eventually polls cond until it holds or the time is up.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// result is what one request through the gate produced.
type result struct {
	status    int
	challenge string
	body      denialBody
	header    http.Header
	upstream  *http.Request // the request as the next handler saw it; nil if not called
	connID    string        // {http.auth.connection.id}
	repl      *caddy.Replacer
}

func send(t *testing.T, g *Gate, header http.Header) result {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/data", nil)
	req.Header = header
	return sendRequest(t, g, req)
}

func sendRequest(t testing.TB, g *Gate, req *http.Request) result {
	t.Helper()
	repl := caddy.NewReplacer()
	req = req.WithContext(context.WithValue(req.Context(), caddy.ReplacerCtxKey, repl))
	rec := httptest.NewRecorder()
	var res result
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		res.upstream = r
		w.WriteHeader(http.StatusOK)
		return nil
	})
	if err := g.ServeHTTP(rec, req, next); err != nil {
		t.Fatalf("ServeHTTP returned %v", err)
	}
	res.status, res.header = rec.Code, rec.Header()
	res.challenge = rec.Header().Get("WWW-Authenticate")
	if res.upstream == nil {
		if err := json.Unmarshal(rec.Body.Bytes(), &res.body); err != nil {
			t.Fatalf("denial body is not JSON: %q", rec.Body.String())
		}
	}
	res.connID, _ = repl.GetString("http.auth.connection.id")
	res.repl = repl
	return res
}

func bearer(token string) http.Header {
	return http.Header{"Authorization": {"Bearer " + token}}
}

// forge signs claims with the control endpoint's key (or another key), with
// the kid of the control endpoint's tokens.
func forge(t *testing.T, s *controltest.Server, kid string, claims jwt.MapClaims, key ed25519.PrivateKey) string {
	t.Helper()
	if key == nil {
		key = s.SigningKey
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	tok.Header["kid"] = kid
	signed, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

func kidOf(t testing.TB, token string) string {
	t.Helper()
	tok, _, err := jwt.NewParser().ParseUnverified(token, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	return tok.Header["kid"].(string)
}

// Every decision of the gate, against a real control endpoint and store.
func TestDecisions(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	g := newGate(t, s, nil)

	active := s.Create(t, "org-1")
	disabled := s.Create(t, "org-1")
	s.Act(t, disabled.Connection.ID, store.ActionDisable)
	deleted := s.Create(t, "org-1")
	s.Act(t, deleted.Connection.ID, store.ActionDelete)
	kid := kidOf(t, active.AccessToken)
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)

	now := time.Now()
	claims := func(edit func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{"iss": s.Issuer, "aud": s.Audience, "sub": "user-1", "cid": active.Connection.ID,
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
		if edit != nil {
			edit(c)
		}
		return c
	}
	valid := func(edit func(jwt.MapClaims)) http.Header { return bearer(forge(t, s, kid, claims(edit), nil)) }
	noneToken, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claims(nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)

	tests := []struct {
		name        string
		header      http.Header
		status      int
		reason      string
		description string
	}{
		{"active connection", bearer(active.AccessToken), 200, "", ""},
		{"scheme is case-insensitive", http.Header{"Authorization": {"bearer " + active.AccessToken}}, 200, "", ""},
		{"forged claims signed by the right key", valid(nil), 200, "", ""},
		{"no token", http.Header{}, 401, "token_missing", ""},
		{"basic scheme", http.Header{"Authorization": {"Basic dXNlcjpwYXNz"}}, 401, "token_missing", ""},
		{"bare token without scheme", http.Header{"Authorization": {active.AccessToken}}, 401, "token_missing", ""},
		{"two Authorization headers", http.Header{"Authorization": {"Bearer " + active.AccessToken, "Bearer " + active.AccessToken}}, 400, "authorization_malformed", "more than one Authorization header"},
		{"empty token", http.Header{"Authorization": {"Bearer "}}, 400, "authorization_malformed", "empty bearer token"},
		{"scheme only", http.Header{"Authorization": {"Bearer"}}, 400, "authorization_malformed", "empty bearer token"},
		{"two tokens", http.Header{"Authorization": {"Bearer a b"}}, 400, "authorization_malformed", "more than one token"},
		{"garbage", bearer("not-a-jwt"), 401, "token_invalid", "token malformed"},
		{"tampered payload", bearer(strings.Replace(active.AccessToken, ".", ".e30", 1)), 401, "token_invalid", ""},
		{"alg none", bearer(noneToken), 401, "token_invalid", ""},
		{"signed by another key", bearer(forge(t, s, kid, claims(nil), otherKey)), 401, "token_invalid", "signature invalid"},
		{"expired", valid(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Hour).Unix() }), 401, "token_invalid", "token expired"},
		{"no exp", valid(func(c jwt.MapClaims) { delete(c, "exp") }), 401, "token_invalid", "required claim missing"},
		{"not yet valid", valid(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Hour).Unix() }), 401, "token_invalid", "token not valid yet"},
		{"issued in the future", valid(func(c jwt.MapClaims) { c["iat"] = now.Add(time.Hour).Unix() }), 401, "token_invalid", "token issued in the future"},
		{"wrong issuer", valid(func(c jwt.MapClaims) { c["iss"] = "someone-else" }), 401, "token_invalid", "wrong issuer"},
		{"wrong audience", valid(func(c jwt.MapClaims) { c["aud"] = "other-api" }), 401, "token_invalid", "wrong audience"},
		{"no connection claim", valid(func(c jwt.MapClaims) { delete(c, "cid") }), 401, "token_invalid", "connection claim missing"},
		{"connection claim not a string", valid(func(c jwt.MapClaims) { c["cid"] = 42 }), 401, "token_invalid", "connection claim missing"},
		{"disabled connection", bearer(disabled.AccessToken), 401, "connection_disabled", "connection disabled"},
		{"deleted connection", bearer(deleted.AccessToken), 401, "connection_deleted", "connection deleted"},
		{"unknown connection", valid(func(c jwt.MapClaims) { c["cid"] = "conn_neverexisted" }), 401, "connection_unknown", "connection unknown"},
		{"connection id no store accepts", valid(func(c jwt.MapClaims) { c["cid"] = "a/b c" }), 401, "token_invalid", "connection claim invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := send(t, g, tt.header)
			if res.status != tt.status {
				t.Fatalf("status %d (%+v), want %d", res.status, res.body, tt.status)
			}
			if tt.status == 200 {
				if res.upstream == nil {
					t.Fatal("next handler not called")
				}
				return
			}
			if res.upstream != nil {
				t.Fatal("a refused request reached the next handler")
			}
			if res.body.Reason != tt.reason {
				t.Errorf("reason %q, want %q", res.body.Reason, tt.reason)
			}
			if tt.description != "" && res.body.Description != tt.description {
				t.Errorf("description %q, want %q", res.body.Description, tt.description)
			}
			want := `Bearer realm="conngate"`
			if tt.status == 400 {
				want += `, error="invalid_request", error_description="` + res.body.Description + `"`
			} else if tt.reason != "token_missing" {
				want += `, error="invalid_token", error_description="` + res.body.Description + `"`
			}
			if res.challenge != want {
				t.Errorf("WWW-Authenticate %q, want %q", res.challenge, want)
			}
		})
	}
}

func TestActiveRequestReachesUpstreamWithConnectionID(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	g := newGate(t, s, nil)
	c := s.Create(t, "org-1")
	h := bearer(c.AccessToken)
	h.Set("X-Connection-Id", "conn_spoofed")
	res := send(t, g, h)
	if res.status != 200 || res.upstream == nil {
		t.Fatalf("status %d", res.status)
	}
	if got := res.upstream.Header.Values("X-Connection-Id"); len(got) != 1 || got[0] != c.Connection.ID {
		t.Errorf("upstream X-Connection-Id %v, want only %s", got, c.Connection.ID)
	}
	if res.connID != c.Connection.ID {
		t.Errorf("placeholder http.auth.connection.id = %q", res.connID)
	}
}

func TestWrongControlKeyIs503(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	g := provisionGate(t, s, func(g *Gate) { g.ControlKey = "this-is-not-the-gateway-key" })
	c := s.Create(t, "org-1")
	if res := send(t, g, bearer(c.AccessToken)); res.status != 503 || res.upstream != nil {
		t.Fatalf("status %d, want 503", res.status)
	}
}

func TestProvisionRefusesBadConfig(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	tests := []struct {
		name  string
		tweak func(*Gate)
		want  string
	}{
		{"no control_url", func(g *Gate) { g.ControlURL = "" }, "control_url is required"},
		{"control_url not http", func(g *Gate) { g.ControlURL = "ftp://x" }, "control_url"},
		{"empty control_urls", func(g *Gate) { g.ControlURL = ""; g.ControlURLs = []string{} }, "control_url is required"},
		{"control_url and control_urls", func(g *Gate) { g.ControlURLs = []string{"http://b.test"} }, "both given"},
		{"a control url not http", func(g *Gate) { g.ControlURL = ""; g.ControlURLs = []string{"http://a.test", "b.test:9180"} },
			`control_url "b.test:9180": want an http:// or https:// URL`},
		{"an empty control url", func(g *Gate) {
			g.ControlURL = ""
			g.ControlURLs = []string{"http://a.test", "{env.CONNGATE_TEST_UNSET_VARIABLE}"}
		},
			`control_url "": want an http:// or https:// URL`},
		{"a control url twice", func(g *Gate) {
			g.ControlURL = ""
			g.ControlURLs = []string{"http://a.test", "http://b.test", "http://a.test/"}
		},
			`control_url "http://a.test" is listed twice`},
		{"no control_key", func(g *Gate) { g.ControlKey = "{env.CONNGATE_TEST_UNSET_VARIABLE}" }, "control_key is empty"},
		{"alg none", func(g *Gate) { g.Algorithms = []string{"none"} }, `algorithm "none"`},
		{"hmac algorithm without a secret", func(g *Gate) { g.Algorithms = []string{"HS256"} }, "no hmac_secret"},
		{"hmac secret without an hmac algorithm", func(g *Gate) { g.HMACSecrets = []string{strings.Repeat("s", 32)} }, "lists no HS256"},
		{"short hmac secret", func(g *Gate) { g.Algorithms = []string{"HS256"}; g.HMACSecrets = []string{"short"} }, "at least 32"},
		{"missing public key file", func(g *Gate) { g.PublicKeyFiles = []string{"/nonexistent.pem"} }, "public_key"},
		{"empty claim path segment", func(g *Gate) { g.ConnectionClaim = "a..b" }, "connection_claim"},
		{"bad forward header", func(g *Gate) { g.ForwardClaims = []ForwardClaim{{"sub", "X User"}} }, "forward_claim"},
		{"quote in realm", func(g *Gate) { g.Realm = `a"b` }, "realm"},
		{"bad jwks url", func(g *Gate) { g.JWKSURLs = []string{"/relative"} }, "jwks_url"},
		{"control_timeout too long", func(g *Gate) { g.ControlTimeout = caddy.Duration(time.Minute) }, "control_timeout"},
		{"bad gateway id", func(g *Gate) { g.GatewayID = "a/b" }, "gateway_id"},
		{"stale_if_error of a year", func(g *Gate) { g.StaleIfError = new(caddy.Duration(8760 * time.Hour)) },
			"stale_if_error 8760h0m0s: want a duration from 0 to 10m0s"},
		{"leeway of ten years", func(g *Gate) { g.Leeway = caddy.Duration(87600 * time.Hour) }, "leeway 87600h0m0s: want a duration from 0 to 5m0s"},
		{"negative stale_if_error", func(g *Gate) { g.StaleIfError = new(caddy.Duration(-time.Second)) }, "stale_if_error -1s"},
		{"disconnected_ttl too long", func(g *Gate) { g.DisconnectedTTL = new(caddy.Duration(time.Hour)) }, "disconnected_ttl 1h0m0s: want a duration from 0 to 5m0s"},
		{"ttl too long", func(g *Gate) { g.TTL = caddy.Duration(48 * time.Hour) }, "ttl 48h0m0s: want a duration from 0 to 24h0m0s"},
		{"stream_idle_timeout too long", func(g *Gate) { g.StreamIdleTimeout = caddy.Duration(time.Hour) }, "stream_idle_timeout 1h0m0s"},
		{"jwks_refresh_interval too long", func(g *Gate) { g.JWKSRefreshInterval = caddy.Duration(48 * time.Hour) }, "jwks_refresh_interval 48h0m0s"},
		{"max_token_age too long", func(g *Gate) { g.MaxTokenAge = caddy.Duration(1000 * time.Hour) }, "max_token_age 1000h0m0s: want a duration from 0 to 720h0m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := &Gate{ControlURL: s.URL, ControlKey: s.GatewayKey}
			tt.tweak(g)
			err := g.Provision(runningConfig(t))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
			if g.source != nil || g.jwksStop != nil {
				t.Fatal("a refused config started the status source or the key set refreshers")
			}
		})
	}
}

// stale_if_error 0 is strict fail-closed, in JSON as in the Caddyfile: once
// disconnected_ttl has passed, a status is never served when its lookup
// fails. Only an absent stale_if_error takes the default.
func TestStaleIfErrorZeroIsStrict(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	tests := []struct {
		name   string
		json   string
		want   time.Duration
		judged freshness // of an entry just past disconnected_ttl, stream down
	}{
		{"absent: the default", `{}`, DefaultStaleIfError, stale},
		{"0: strict", `{"stale_if_error": 0}`, 0, expired},
		{"null: the default", `{"stale_if_error": null}`, DefaultStaleIfError, stale},
		{"5s", `{"stale_if_error": "5s"}`, 5 * time.Second, stale},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var g Gate
			if err := json.Unmarshal([]byte(tt.json), &g); err != nil {
				t.Fatal(err)
			}
			g = Gate{ControlURL: s.URL, ControlKey: s.GatewayKey, CacheSize: testCacheSize, StaleIfError: g.StaleIfError,
				GatewayID: strings.ReplaceAll(t.Name(), "/", "-")}
			t.Cleanup(func() { g.Cleanup() })
			if err := g.Provision(runningConfig(t)); err != nil {
				t.Fatal(err)
			}
			if got := g.policy.staleIfError; got != tt.want {
				t.Fatalf("stale_if_error %s, want %s", got, tt.want)
			}
			now := time.Now()
			storedAt := now.Add(-g.policy.disconnectedTTL - time.Millisecond).UnixNano()
			if got := g.policy.judge(storedAt, false, storedAt, func() time.Time { return now }); got != tt.judged {
				t.Errorf("an entry %s past disconnected_ttl judged %d, want %d", time.Millisecond, got, tt.judged)
			}
		})
	}
}

// disconnected_ttl 0 is a choice too, in JSON as in the Caddyfile: while
// the stream is down no status is fresh, not even one stored that instant.
// Only an absent disconnected_ttl takes the default.
func TestDisconnectedTTLZeroIsNone(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	tests := []struct {
		name   string
		json   string
		want   time.Duration
		judged freshness // of an entry stored as the stream went down, looked at then
	}{
		{"absent: the default", `{}`, DefaultDisconnectedTTL, fresh},
		{"0: none", `{"disconnected_ttl": 0}`, 0, stale},
		{"0 with stale_if_error 0: none and strict", `{"disconnected_ttl": 0, "stale_if_error": 0}`, 0, expired},
		{"null: the default", `{"disconnected_ttl": null}`, DefaultDisconnectedTTL, fresh},
		{"5s", `{"disconnected_ttl": "5s"}`, 5 * time.Second, fresh},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var g Gate
			if err := json.Unmarshal([]byte(tt.json), &g); err != nil {
				t.Fatal(err)
			}
			g = Gate{ControlURL: s.URL, ControlKey: s.GatewayKey, CacheSize: testCacheSize, DisconnectedTTL: g.DisconnectedTTL,
				StaleIfError: g.StaleIfError, GatewayID: strings.ReplaceAll(t.Name(), "/", "-")}
			t.Cleanup(func() { g.Cleanup() })
			if err := g.Provision(runningConfig(t)); err != nil {
				t.Fatal(err)
			}
			if got := g.policy.disconnectedTTL; got != tt.want {
				t.Fatalf("disconnected_ttl %s, want %s", got, tt.want)
			}
			now := time.Now()
			if got := g.policy.judge(now.UnixNano(), false, now.UnixNano(), func() time.Time { return now }); got != tt.judged {
				t.Errorf("an entry stored as the stream went down judged %d, want %d", got, tt.judged)
			}
		})
	}
}

// A client's Connection header names headers that a proxy drops (RFC 9110
// section 7.6.1). The gate takes its own header names out of it, so that the
// upstream still gets what the gate set; the client's other tokens stay.
func TestConnectionHeaderCannotDropTheGatesHeaders(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	g := newGate(t, s, func(g *Gate) { g.ForwardClaims = []ForwardClaim{{Claim: "sub", Header: "X-User-Id"}} })
	c := s.Create(t, "org-1")
	tests := []struct {
		name       string
		connection []string
		want       []string // the Connection header the upstream gets
	}{
		{"the gate's headers named", []string{"X-Connection-Id, x-user-id"}, nil},
		{"mixed with other tokens", []string{"keep-alive, X-CONNECTION-ID", "Upgrade,X-User-Id ,X-Other"}, []string{"keep-alive, Upgrade, X-Other"}},
		{"none of the gate's", []string{"keep-alive, X-Other"}, []string{"keep-alive, X-Other"}},
		{"no Connection header", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := bearer(c.AccessToken)
			if tt.connection != nil {
				h["Connection"] = tt.connection
			}
			res := send(t, g, h)
			if res.status != 200 || res.upstream == nil {
				t.Fatalf("status %d", res.status)
			}
			if got := res.upstream.Header["Connection"]; !slices.Equal(got, tt.want) {
				t.Errorf("upstream Connection %q, want %q", got, tt.want)
			}
			if got := res.upstream.Header.Get("X-Connection-Id"); got != c.Connection.ID {
				t.Errorf("upstream X-Connection-Id %q, want %q", got, c.Connection.ID)
			}
			if got := res.upstream.Header.Get("X-User-Id"); got == "" {
				t.Error("upstream X-User-Id missing")
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	t.Setenv("CONNGATE_TEST_CONTROL", "http://control.test:9180/")
	tests := []struct {
		name     string
		gate     Gate
		wantJWKS []string
	}{
		{"key set from the control endpoint", Gate{ControlURL: "{env.CONNGATE_TEST_CONTROL}"}, []string{"http://control.test:9180/.well-known/jwks.json"}},
		{"no key set when keys are given", Gate{ControlURL: "http://c.test", HMACSecrets: []string{"s"}}, nil},
		{"key sets given", Gate{ControlURL: "http://c.test", JWKSURLs: []string{"http://idp.test/jwks"}}, []string{"http://idp.test/jwks"}},
		{"key set from the first of several control endpoints", Gate{ControlURLs: []string{"{env.CONNGATE_TEST_CONTROL}", "http://b.test/"}},
			[]string{"http://control.test:9180/.well-known/jwks.json"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := tt.gate
			g.setDefaults(caddy.NewReplacer())
			if !slices.Equal(g.JWKSURLs, tt.wantJWKS) {
				t.Errorf("jwks_urls %q, want %q", g.JWKSURLs, tt.wantJWKS)
			}
			for _, u := range g.controlURLs {
				if u == "" || strings.HasSuffix(u, "/") || strings.Contains(u, "{") {
					t.Errorf("control URL %q: want it resolved, without a trailing slash", u)
				}
			}
			if len(g.controlURLs) != max(1, len(g.ControlURLs)) {
				t.Errorf("control URLs %q from control_url %q and control_urls %q", g.controlURLs, g.ControlURL, g.ControlURLs)
			}
			if g.TTL != caddy.Duration(DefaultTTL) || *g.DisconnectedTTL != caddy.Duration(DefaultDisconnectedTTL) ||
				*g.StaleIfError != caddy.Duration(DefaultStaleIfError) || g.ControlTimeout != caddy.Duration(DefaultControlTimeout) ||
				g.Realm != DefaultRealm || g.ConnectionClaim != DefaultConnectionClaim || g.GatewayID == "" || g.now == nil ||
				g.CacheSize != DefaultCacheSize || g.Leeway != caddy.Duration(DefaultLeeway) ||
				!slices.Equal(g.Algorithms, []string{"EdDSA"}) {
				t.Errorf("defaults not set: %+v", g)
			}
		})
	}
}
