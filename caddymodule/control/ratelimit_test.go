package control

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/conngate/conngate/caddymodule/controlapi"
)

func TestKeyAttempts(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	a := newKeyAttempts()
	a.now = func() time.Time { return now }
	guesser, other := netip.MustParsePrefix("192.0.2.1/32"), netip.MustParsePrefix("192.0.2.2/32")

	for i := range keyFailuresAllowed {
		if wait := a.blocked(guesser); wait != 0 {
			t.Fatalf("blocked after %d failures, allowed %d", i, keyFailuresAllowed)
		}
		a.failed(guesser)
		now = now.Add(time.Second)
	}
	if wait := a.blocked(guesser); wait != keyFailureWindow-keyFailuresAllowed*time.Second {
		t.Errorf("after %d failures: wait %s, want the rest of the window", keyFailuresAllowed, wait)
	}
	if wait := a.blocked(other); wait != 0 {
		t.Errorf("another address waits %s", wait)
	}
	now = now.Add(keyFailureWindow - keyFailuresAllowed*time.Second)
	if wait := a.blocked(guesser); wait != 0 {
		t.Errorf("still blocked (%s) when the window has ended", wait)
	}
	if len(a.byAddress) != 0 || a.windows.Len() != 0 {
		t.Errorf("ended windows kept: %d, %d", len(a.byAddress), a.windows.Len())
	}
}

// However many addresses fail, at most keyFailureAddresses are kept; the
// oldest window goes first.
func TestKeyAttemptsBounded(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	a := newKeyAttempts()
	a.now = func() time.Time { return now }
	a.max = 100
	first := netip.MustParsePrefix("10.0.0.0/32")
	for range keyFailuresAllowed {
		a.failed(first)
	}
	for i := range 1000 {
		a.failed(netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 32))
		if len(a.byAddress) > a.max || a.windows.Len() > a.max {
			t.Fatalf("%d addresses tracked, cap %d", len(a.byAddress), a.max)
		}
	}
	if _, ok := a.byAddress[first]; ok {
		t.Error("the oldest window was kept past the cap")
	}
}

func TestClientAddress(t *testing.T) {
	for _, tt := range []struct {
		name, clientIP, remote, want string
	}{
		{"Caddy's client IP (trusted_proxies applied)", "203.0.113.7", "10.0.0.1:4000", "203.0.113.7/32"},
		{"IPv6: its /64", "2001:db8:1:2:aaaa::1", "10.0.0.1:4000", "2001:db8:1:2::/64"},
		{"IPv4-mapped IPv6", "::ffff:192.0.2.9", "10.0.0.1:4000", "192.0.2.9/32"},
		{"no Caddy variables: the peer", "", "192.0.2.4:5000", "192.0.2.4/32"},
		{"IPv6 peer with a zone", "", "[fe80::1%eth0]:5000", "fe80::/64"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = tt.remote
			if tt.clientIP != "" {
				r = r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: tt.clientIP}))
			}
			if got := clientAddress(r).String(); got != tt.want {
				t.Errorf("%s, want %s", got, tt.want)
			}
		})
	}
}

// Through an endpoint: wrong keys get 401 until the limit, then 429 with
// Retry-After and the API's error body, even with the right key; the right
// key from another address still works; a request without a key is no
// attempt.
func TestWrongKeysRateLimited(t *testing.T) {
	admin := "an-admin-key-of-enough-length-0123456789"
	keys, err := newKeyring(caddy.NewReplacer(), []APIKey{{Role: "admin", Key: admin}}, "")
	if err != nil {
		t.Fatal(err)
	}
	e := endpoint{c: &Control{keys: keys, logger: zap.NewNop()}, ops: map[string]operation{
		http.MethodGet: {serve: func(w http.ResponseWriter, r *http.Request) error {
			w.WriteHeader(http.StatusNoContent)
			return nil
		}},
	}}
	call := func(from, key string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, "/v1/me", nil)
		r.RemoteAddr = from + ":40000"
		if key != "" {
			r.Header.Set("Authorization", "Bearer "+key)
		}
		w := httptest.NewRecorder()
		e.ServeHTTP(w, r)
		return w
	}
	for i := range keyFailuresAllowed + 5 {
		if w := call("192.0.2.1", ""); w.Code != http.StatusUnauthorized {
			t.Fatalf("no key, request %d: %d", i, w.Code)
		}
	}
	for i := range keyFailuresAllowed {
		if w := call("192.0.2.1", fmt.Sprintf("wrong-key-%d", i)); w.Code != http.StatusUnauthorized {
			t.Fatalf("wrong key %d: %d", i, w.Code)
		}
	}
	for _, key := range []string{"wrong-key-again", admin} {
		w := call("192.0.2.1", key)
		var body controlapi.Error
		json.Unmarshal(w.Body.Bytes(), &body)
		retry, _ := strconv.Atoi(w.Header().Get("Retry-After"))
		if w.Code != http.StatusTooManyRequests || body.Code != controlapi.CodeTooManyAttempts || body.Message == "" ||
			retry < 1 || retry > int(keyFailureWindow.Seconds()) {
			t.Errorf("after %d wrong keys, key %q: %d %s Retry-After %q", keyFailuresAllowed, key, w.Code, w.Body, w.Header().Get("Retry-After"))
		}
	}
	if w := call("192.0.2.2", admin); w.Code != http.StatusNoContent {
		t.Errorf("the right key from another address: %d %s", w.Code, w.Body)
	}
}
