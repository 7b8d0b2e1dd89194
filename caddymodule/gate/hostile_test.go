package gate

import (
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/conngate/conngate/caddymodule/control/controltest"
	"github.com/conngate/conngate/store"
)

const hmacSecret = "0123456789abcdef0123456789abcdef-test-secret"

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// Hostile and broken tokens and headers, each with the answer it must get.
// Nothing a client sends may produce a 5xx, a panic, or a pass.
func TestHostileTokens(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	rs, rsOther, es, _ := newSigners()
	_, rsPEM := writePublicPEM(t, rs)
	jwks := newJWKSServer(t, rs, es)
	g := newGate(t, s, func(g *Gate) {
		g.JWKSURLs = []string{jwks.URL, s.URL + "/.well-known/jwks.json"}
		g.HMACSecrets = []string{hmacSecret}
		g.Algorithms = []string{"EdDSA", "RS256", "ES256", "HS256"}
	})
	active := s.Create(t, "org-1")
	disabled := s.Create(t, "org-1")
	s.Act(t, disabled.Connection.ID, store.ActionDisable)

	now := time.Now()
	claims := func(edit func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{"iss": s.Issuer, "aud": s.Audience, "sub": "user-1", "cid": active.Connection.ID,
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
		if edit != nil {
			edit(c)
		}
		return c
	}
	hs := signer{"", jwt.SigningMethodHS256, []byte(hmacSecret)}
	rsTok := func(edit func(jwt.MapClaims)) string { return rs.sign(t, claims(edit), nil) }
	validRS := rsTok(nil)
	parts := strings.Split(validRS, ".")
	unsigned := func(header, payload string) string { return b64(header) + "." + b64(payload) + "." }

	tests := []struct {
		name        string
		header      http.Header
		status      int
		reason      string
		description string
	}{
		// What must pass.
		{"EdDSA from the control endpoint", bearer(active.AccessToken), 200, "", ""},
		{"RS256 from the JWKS", bearer(validRS), 200, "", ""},
		{"ES256 from the JWKS", bearer(es.sign(t, claims(nil), nil)), 200, "", ""},
		{"HS256 with the secret", bearer(hs.sign(t, claims(nil), nil)), 200, "", ""},
		{"lowercase bearer", http.Header{"Authorization": {"bearer " + validRS}}, 200, "", ""},
		{"uppercase BEARER", http.Header{"Authorization": {"BEARER " + validRS}}, 200, "", ""},
		{"expired within leeway", bearer(rsTok(func(c jwt.MapClaims) { c["exp"] = now.Add(-10 * time.Second).Unix() })), 200, "", ""},
		{"audience list naming ours", bearer(rsTok(func(c jwt.MapClaims) { c["aud"] = []string{"other", s.Audience} })), 200, "", ""},
		{"jku is not followed but harmless", bearer(rs.sign(t, claims(nil), map[string]any{"jku": "http://127.0.0.1:1/evil"})), 200, "", ""},

		// Where the token is, and how many.
		{"no Authorization", http.Header{}, 401, "token_missing", ""},
		{"Basic scheme: the bare challenge (RFC 6750 section 3.1)", http.Header{"Authorization": {"Basic dXNlcjpwYXNz"}}, 401, "token_missing", ""},
		{"bare token, no scheme", http.Header{"Authorization": {validRS}}, 401, "token_missing", ""},
		{"scheme only", http.Header{"Authorization": {"Bearer"}}, 400, "authorization_malformed", "empty bearer token"},
		{"empty token", http.Header{"Authorization": {"Bearer "}}, 400, "authorization_malformed", "empty bearer token"},
		{"two tokens", http.Header{"Authorization": {"Bearer " + validRS + " " + validRS}}, 400, "authorization_malformed", "more than one token"},
		{"tokens joined by a comma", http.Header{"Authorization": {"Bearer " + validRS + "," + validRS}}, 400, "authorization_malformed", "more than one token"},
		{"tab after the scheme", http.Header{"Authorization": {"Bearer\t" + validRS}}, 400, "authorization_malformed", ""},
		{"duplicate Authorization headers", http.Header{"Authorization": {"Bearer " + validRS, "Bearer " + validRS}}, 400, "authorization_malformed", "more than one Authorization header"},
		{"token in a cookie only", http.Header{"Cookie": {"access_token=" + validRS}}, 401, "token_missing", ""},
		{"token in X-Access-Token only", http.Header{"X-Access-Token": {validRS}}, 401, "token_missing", ""},

		// Structure.
		{"not a JWT", bearer("hello"), 401, "token_invalid", "token malformed"},
		{"two segments", bearer(parts[0] + "." + parts[1]), 401, "token_invalid", "token malformed"},
		{"four segments", bearer(validRS + ".AAAA"), 401, "token_invalid", "token malformed"},
		{"non-base64 segments", bearer("!!!.@@@.###"), 401, "token_invalid", "token malformed"},
		{"header JSON is an array", bearer(b64(`["RS256"]`) + "." + parts[1] + "." + parts[2]), 401, "token_invalid", "token malformed"},
		{"payload JSON is a number", bearer(parts[0] + "." + b64(`123`) + "." + parts[2]), 401, "token_invalid", "token malformed"},
		{"payload JSON is a string", bearer(parts[0] + "." + b64(`"cid"`) + "." + parts[2]), 401, "token_invalid", "token malformed"},
		{"payload not JSON", bearer(parts[0] + "." + b64(`{cid:`) + "." + parts[2]), 401, "token_invalid", "token malformed"},
		{"64 KB token", bearer(parts[0] + "." + strings.Repeat("A", 64<<10) + "." + parts[2]), 401, "token_invalid", ""},
		{"empty signature", bearer(parts[0] + "." + parts[1] + "."), 401, "token_invalid", ""},

		// Algorithms and keys.
		{"alg none", bearer(unsigned(`{"alg":"none","typ":"JWT"}`, `{"cid":"`+active.Connection.ID+`"}`)), 401, "token_invalid", ""},
		{"alg None", bearer(unsigned(`{"alg":"None"}`, `{"cid":"`+active.Connection.ID+`"}`)), 401, "token_invalid", ""},
		{"alg missing", bearer(unsigned(`{"typ":"JWT"}`, `{"cid":"`+active.Connection.ID+`"}`)), 401, "token_invalid", ""},
		{"HS256 signed with the RSA public key as secret", bearer(signer{"rsa-1", jwt.SigningMethodHS256, rsPEM}.sign(t, claims(nil), nil)), 401, "token_invalid", "signature invalid"},
		{"HS256 signed with another secret", bearer(signer{"", jwt.SigningMethodHS256, []byte(strings.Repeat("x", 32))}.sign(t, claims(nil), nil)), 401, "token_invalid", "signature invalid"},
		{"HS384, not allowed", bearer(signer{"", jwt.SigningMethodHS384, []byte(hmacSecret)}.sign(t, claims(nil), nil)), 401, "token_invalid", "signature invalid"},
		{"PS256, not allowed", bearer(signer{"rsa-1", jwt.SigningMethodPS256, rs.key}.sign(t, claims(nil), nil)), 401, "token_invalid", "signature invalid"},
		{"RS256 header on an ES256 key", bearer(b64(`{"alg":"RS256","kid":"ec-1"}`) + "." + strings.Split(es.sign(t, claims(nil), nil), ".")[1] + "." + strings.Split(es.sign(t, claims(nil), nil), ".")[2]), 401, "token_invalid", ""},
		{"signed by another key under our kid", bearer(rsOther.sign(t, claims(nil), nil)), 401, "token_invalid", "signature invalid"},
		{"unknown kid", bearer(signer{"nobody", jwt.SigningMethodRS256, rsOther.key}.sign(t, claims(nil), nil)), 401, "token_invalid", "no key to verify the token"},
		{"key brought in a jwk header", bearer(rsOther.sign(t, claims(nil), map[string]any{"kid": "mine", "jwk": map[string]any{"kty": "RSA"}})), 401, "token_invalid", "no key to verify the token"},
		{"key brought in x5c", bearer(rsOther.sign(t, claims(nil), map[string]any{"kid": "mine", "x5c": []string{"MIIB"}})), 401, "token_invalid", "no key to verify the token"},
		{"crit header", bearer(rs.sign(t, claims(nil), map[string]any{"crit": []string{"exp"}})), 401, "token_invalid", "critical header not understood"},
		{"tampered payload", bearer(parts[0] + "." + b64(`{"cid":"`+disabled.Connection.ID+`","exp":9999999999}`) + "." + parts[2]), 401, "token_invalid", "signature invalid"},
		{"tampered header", bearer(b64(`{"alg":"RS256","kid":"rsa-1","x":1}`) + "." + parts[1] + "." + parts[2]), 401, "token_invalid", "signature invalid"},

		// Claims.
		{"expired", bearer(rsTok(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Hour).Unix() })), 401, "token_invalid", "token expired"},
		{"exp as a string", bearer(rsTok(func(c jwt.MapClaims) { c["exp"] = "tomorrow" })), 401, "token_invalid", ""},
		{"no exp", bearer(rsTok(func(c jwt.MapClaims) { delete(c, "exp") })), 401, "token_invalid", "required claim missing"},
		{"nbf in the future", bearer(rsTok(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Hour).Unix() })), 401, "token_invalid", "token not valid yet"},
		{"iat in the future", bearer(rsTok(func(c jwt.MapClaims) { c["iat"] = now.Add(time.Hour).Unix() })), 401, "token_invalid", "token issued in the future"},
		{"wrong issuer", bearer(rsTok(func(c jwt.MapClaims) { c["iss"] = "https://evil.example" })), 401, "token_invalid", "wrong issuer"},
		{"no issuer", bearer(rsTok(func(c jwt.MapClaims) { delete(c, "iss") })), 401, "token_invalid", "wrong issuer"},
		{"wrong audience", bearer(rsTok(func(c jwt.MapClaims) { c["aud"] = "other-api" })), 401, "token_invalid", "wrong audience"},
		{"no audience", bearer(rsTok(func(c jwt.MapClaims) { delete(c, "aud") })), 401, "token_invalid", ""},
		{"no cid", bearer(rsTok(func(c jwt.MapClaims) { delete(c, "cid") })), 401, "token_invalid", "connection claim missing"},
		{"cid a number", bearer(rsTok(func(c jwt.MapClaims) { c["cid"] = 42 })), 401, "token_invalid", "connection claim missing"},
		{"cid empty", bearer(rsTok(func(c jwt.MapClaims) { c["cid"] = "" })), 401, "token_invalid", "connection claim missing"},
		{"cid an object", bearer(rsTok(func(c jwt.MapClaims) { c["cid"] = map[string]any{"id": active.Connection.ID} })), 401, "token_invalid", "connection claim missing"},
		{"cid a list", bearer(rsTok(func(c jwt.MapClaims) { c["cid"] = []string{active.Connection.ID} })), 401, "token_invalid", "connection claim missing"},

		// Connection state.
		{"disabled connection", bearer(rsTok(func(c jwt.MapClaims) { c["cid"] = disabled.Connection.ID })), 401, "connection_disabled", "connection disabled"},
		{"unknown connection", bearer(rsTok(func(c jwt.MapClaims) { c["cid"] = "conn_nobody" })), 401, "connection_unknown", "connection unknown"},
		{"connection id with a slash", bearer(rsTok(func(c jwt.MapClaims) { c["cid"] = "../../v1/connections" })), 401, "token_invalid", "connection claim invalid"},
		{"connection id a dot", bearer(rsTok(func(c jwt.MapClaims) { c["cid"] = "." })), 401, "token_invalid", "connection claim invalid"},
		{"connection id two dots", bearer(rsTok(func(c jwt.MapClaims) { c["cid"] = ".." })), 401, "token_invalid", "connection claim invalid"},
	}
	if len(tests) < 40 {
		t.Fatalf("only %d cases", len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := send(t, g, tt.header)
			if res.status != tt.status {
				t.Fatalf("status %d (%+v), want %d", res.status, res.body, tt.status)
			}
			if tt.status == 200 {
				return
			}
			if res.upstream != nil {
				t.Fatal("a refused request reached the next handler")
			}
			if res.body.Reason != tt.reason || (tt.description != "" && res.body.Description != tt.description) {
				t.Fatalf("reason %q %q, want %q %q", res.body.Reason, res.body.Description, tt.reason, tt.description)
			}
			// No credentials the gate understands: the bare challenge, with
			// no error code (RFC 6750 section 3.1).
			if got := res.header.Get("WWW-Authenticate"); tt.reason == "token_missing" && strings.Contains(got, "error=") {
				t.Fatalf("challenge %q, want a bare one", got)
			}
		})
	}

	// A token in the query or a form field never counts.
	for _, target := range []string{"/data?access_token=" + validRS} {
		req := httptest.NewRequest(http.MethodGet, target, nil)
		if res := sendRequest(t, g, req); res.status != 401 || res.body.Reason != "token_missing" {
			t.Errorf("%s: %d %s", target, res.status, res.body.Reason)
		}
	}
	form := httptest.NewRequest(http.MethodPost, "/data", strings.NewReader("access_token="+validRS))
	form.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if res := sendRequest(t, g, form); res.status != 401 || res.body.Reason != "token_missing" {
		t.Errorf("form field: %d %s", res.status, res.body.Reason)
	}
}
