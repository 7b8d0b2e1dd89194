package tests

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/conngate/conngate/caddymodule/control/controltest"
)

// Tokens from another issuer (HS256 with a shared secret here), a nested
// connection claim, claims forwarded to the upstream and the token stripped,
// through the real binary and a real reverse_proxy.
func TestIdentityProviderTokens(t *testing.T) {
	dir := t.TempDir()
	secret := controltest.RandomKey() + controltest.RandomKey()
	var mu sync.Mutex
	var seen []http.Header
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		mu.Unlock()
	}))
	defer upstream.Close()

	gw, ctl := freePort(t), freePort(t)
	control := fmt.Sprintf("http://127.0.0.1:%d", ctl)
	caddyfile := fmt.Sprintf(`{
	admin off
}
:%d {
	bind 127.0.0.1
	connection_gate {
		control_url %s
		control_key {env.CONNGATE_GATEWAY_KEY}
		hmac_secret {env.JWT_SECRET}
		algorithms HS256
		issuer https://idp.example.com/
		connection_claim ext.connection
		require sub
		forward_claim sub X-User-Id
		strip_authorization
	}
	reverse_proxy %s
}
:%d {
	bind 127.0.0.1
	connection_control {
		store bolt %s
		api_key admin {env.CONNGATE_ADMIN_KEY}
		api_key gateway {env.CONNGATE_GATEWAY_KEY}
	}
}
`, gw, control, strings.TrimPrefix(upstream.URL, "http://"), ctl, filepath.Join(dir, "conngate.db"))
	writeSite(t, dir, caddyfile)
	d := &demo{control: control, adminKey: controltest.RandomKey(), gateway: fmt.Sprintf("http://127.0.0.1:%d", gw)}
	env := IsolatedEnv(dir, "CONNGATE_ADMIN_KEY="+d.adminKey, "CONNGATE_GATEWAY_KEY="+controltest.RandomKey(), "JWT_SECRET="+secret)
	startCaddy(t, dir, env, control+"/.well-known/jwks.json")
	waitGateways(t, d, 1)

	_, created := d.api(t, "POST", "/v1/connections", `{"name":"App","org_id":"org-1","user_id":"user-7"}`)
	id := created["connection"].(map[string]any)["id"].(string)
	sign := func(key string, claims jwt.MapClaims) string {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(key))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	claims := func() jwt.MapClaims {
		return jwt.MapClaims{"iss": "https://idp.example.com/", "sub": "user-7", "ext": map[string]any{"connection": id},
			"exp": time.Now().Add(time.Hour).Unix()}
	}

	if code, body := d.call(t, sign(secret, claims())); code != 200 {
		t.Fatalf("valid token: %d %v", code, body)
	}
	mu.Lock()
	got := seen[len(seen)-1]
	mu.Unlock()
	if got.Get("X-User-Id") != "user-7" || got.Get("X-Connection-Id") != id || got.Get("Authorization") != "" {
		t.Fatalf("upstream saw X-User-Id=%q X-Connection-Id=%q Authorization=%q", got.Get("X-User-Id"), got.Get("X-Connection-Id"), got.Get("Authorization"))
	}
	noSub := claims()
	delete(noSub, "sub")
	for name, tok := range map[string]string{
		"another secret": sign(strings.Repeat("x", 64), claims()),
		"missing sub":    sign(secret, noSub),
		"alg none": func() string {
			s, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claims()).SignedString(jwt.UnsafeAllowNoneSignatureType)
			return s
		}(),
	} {
		if code, body := d.call(t, tok); code != 401 || body["reason"] != "token_invalid" {
			t.Errorf("%s: %d %v", name, code, body)
		}
	}
	mu.Lock()
	if n := len(seen); n != 1 {
		t.Errorf("upstream saw %d requests, want 1", n)
	}
	mu.Unlock()
	if code, body := d.api(t, "POST", "/v1/connections/"+id+"/disable?wait=applied", ""); code != 200 || body["acknowledged"] != 1.0 {
		t.Fatalf("disable: %d %v", code, body)
	}
	if code, body := d.call(t, sign(secret, claims())); code != 401 || body["reason"] != "connection_disabled" {
		t.Fatalf("after disable: %d %v", code, body)
	}
}
