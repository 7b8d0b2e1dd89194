package tests

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/conngate/conngate/caddymodule/control/controltest"
)

// Wrong API keys through the real binary behind a trusted proxy: after 10
// from one client address (X-Forwarded-For, honoured because the proxy is
// in trusted_proxies) that address gets 429 with Retry-After, even with the
// right key; other addresses are not affected.
func TestWrongKeysRateLimitedThroughTheBinary(t *testing.T) {
	dir := t.TempDir()
	ctl := freePort(t)
	d := &demo{control: fmt.Sprintf("http://127.0.0.1:%d", ctl), adminKey: controltest.RandomKey()}
	writeSite(t, dir, fmt.Sprintf(`{
	admin off
	servers {
		trusted_proxies static 127.0.0.1/32
	}
}
:%d {
	bind 127.0.0.1
	connection_control {
		store bolt %s
		api_key admin {env.CONNGATE_ADMIN_KEY}
	}
}
`, ctl, filepath.Join(dir, "conngate.db")))
	startCaddy(t, dir, IsolatedEnv(dir, "CONNGATE_ADMIN_KEY="+d.adminKey), d.control+"/.well-known/jwks.json")

	from := func(client, key string) (*http.Response, map[string]any) {
		req, _ := http.NewRequest(http.MethodGet, d.control+"/v1/me", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("X-Forwarded-For", client)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		json.NewDecoder(resp.Body).Decode(&body)
		return resp, body
	}
	for i := range 10 {
		if resp, body := from("203.0.113.7", fmt.Sprintf("wrong-key-%02d-of-some-length", i)); resp.StatusCode != 401 {
			t.Fatalf("wrong key %d: %d %v", i, resp.StatusCode, body)
		}
	}
	resp, body := from("203.0.113.7", d.adminKey)
	retry, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
	if resp.StatusCode != 429 || body["error"] != "too_many_attempts" || retry < 1 || retry > 60 {
		t.Fatalf("the right key after 10 wrong ones: %d %v Retry-After %q", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	if resp, body := from("203.0.113.8", d.adminKey); resp.StatusCode != 200 {
		t.Errorf("the right key from another client: %d %v", resp.StatusCode, body)
	}
	if code, body := d.api(t, "GET", "/v1/me", ""); code != 200 {
		t.Errorf("the right key from the proxy itself: %d %v", code, body)
	}
}

// A gateway verifying tokens from an outside key set, through the real
// binary: a key published as the provider comes back from an outage
// verifies within about a second; an encryption key never verifies, not
// even a token without kid; an RSA key of 1024 bits is refused.
func TestJWKSThroughTheBinary(t *testing.T) {
	dir := t.TempDir()
	newKey := func(bits int) *rsa.PrivateKey {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	signing, encryption, weak, published := newKey(2048), newKey(2048), newKey(1024), newKey(2048)
	jwk := func(kid string, key *rsa.PrivateKey, use jwkset.USE) jwkset.JWKMarshal {
		k, err := jwkset.NewJWKFromKey(key.Public(), jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: kid, USE: use}})
		if err != nil {
			t.Fatal(err)
		}
		return k.Marshal()
	}
	var (
		mu      sync.Mutex
		keys    = []jwkset.JWKMarshal{jwk("sig-1", signing, jwkset.UseSig), jwk("enc-1", encryption, jwkset.UseEnc), jwk("weak-1", weak, jwkset.UseSig)}
		failing atomic.Bool
	)
	provider := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		json.NewEncoder(w).Encode(jwkset.JWKSMarshal{Keys: keys})
	}))
	defer provider.Close()

	gw, ctl := freePort(t), freePort(t)
	control := fmt.Sprintf("http://127.0.0.1:%d", ctl)
	writeSite(t, dir, fmt.Sprintf(`{
	admin off
}
:%d {
	bind 127.0.0.1
	connection_gate {
		control_url %s
		control_key {env.CONNGATE_GATEWAY_KEY}
		jwks_url %s
		algorithms RS256
		issuer https://idp.example.com/
	}
	respond 200
}
:%d {
	bind 127.0.0.1
	connection_control {
		store bolt %s
		api_key admin {env.CONNGATE_ADMIN_KEY}
		api_key gateway {env.CONNGATE_GATEWAY_KEY}
	}
}
`, gw, control, provider.URL, ctl, filepath.Join(dir, "conngate.db")))
	d := &demo{control: control, adminKey: controltest.RandomKey(), gateway: fmt.Sprintf("http://127.0.0.1:%d", gw)}
	startCaddy(t, dir, IsolatedEnv(dir, "CONNGATE_ADMIN_KEY="+d.adminKey, "CONNGATE_GATEWAY_KEY="+controltest.RandomKey()),
		control+"/.well-known/jwks.json")
	waitGateways(t, d, 1)
	_, created := d.api(t, "POST", "/v1/connections", `{"name":"App","org_id":"org-1","user_id":"user-7"}`)
	id := created["connection"].(map[string]any)["id"].(string)
	n := 0
	sign := func(kid string, key *rsa.PrivateKey) string {
		n++ // every token differs, so none is answered from the verified-token cache
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"iss": "https://idp.example.com/", "cid": id,
			"exp": time.Now().Add(time.Hour).Unix(), "n": n})
		if kid != "" {
			tok.Header["kid"] = kid
		}
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if code, _ := d.call(t, sign("sig-1", signing)); code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the signing key of the set never verified")
		}
	}

	// The provider fails; a token with a kid it has not published yet is
	// refused, then verifies soon after the provider is back with the key.
	failing.Store(true)
	if code, body := d.call(t, sign("sig-2", published)); code != 401 {
		t.Fatalf("unknown kid while the provider is down: %d %v", code, body)
	}
	mu.Lock()
	keys = append(keys, jwk("sig-2", published, jwkset.UseSig))
	mu.Unlock()
	failing.Store(false)
	back := time.Now()
	for {
		code, _ := d.call(t, sign("sig-2", published))
		if code == 200 {
			break
		}
		if time.Since(back) > 1500*time.Millisecond {
			t.Fatalf("the key published after the outage still refused %s later: %d", time.Since(back).Round(time.Millisecond), code)
		}
	}
	t.Logf("the key published after the outage verified %s after the provider came back", time.Since(back).Round(time.Millisecond))

	for _, tt := range []struct {
		name  string
		token string
	}{
		{"encryption key, with kid", sign("enc-1", encryption)},
		{"encryption key, no kid", sign("", encryption)},
		{"RSA of 1024 bits, with kid", sign("weak-1", weak)},
		{"RSA of 1024 bits, no kid", sign("", weak)},
	} {
		if code, body := d.call(t, tt.token); code != 401 || body["reason"] != "token_invalid" {
			t.Errorf("%s: %d %v, want 401 token_invalid", tt.name, code, body)
		}
	}
	if code, body := d.call(t, sign("", signing)); code != 200 {
		t.Errorf("the signing key, no kid: %d %v", code, body)
	}
}
