package gate

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/conngate/conngate/caddymodule/control/controltest"
)

// FuzzGateToken sends arbitrary Authorization values through the whole
// gate. Whatever arrives: no panic, no 5xx, and a pass only for the one
// validly signed token.
//
//	go test -run '^$' -fuzz '^FuzzGateToken$' -fuzztime 30s ./caddymodule/gate/
func FuzzGateToken(f *testing.F) {
	s := controltest.Start(f, controltest.Options{})
	rs, _, es, _ := newSigners()
	rsPath, _ := writePublicPEM(f, rs)
	esPath, _ := writePublicPEM(f, es)
	g := newGate(f, s, func(g *Gate) {
		g.PublicKeyFiles = []string{rsPath, esPath}
		g.HMACSecrets = []string{hmacSecret}
		g.Algorithms = []string{"EdDSA", "RS256", "ES256", "HS256"}
	})
	created := s.Create(f, "org-1")
	valid := rs.sign(f, jwt.MapClaims{"iss": s.Issuer, "aud": s.Audience, "cid": created.Connection.ID,
		"exp": time.Now().Add(24 * time.Hour).Unix()}, nil)
	passing := map[string]bool{valid: true, created.AccessToken: true}

	f.Add("Bearer " + valid)
	f.Add("Bearer " + created.AccessToken)
	f.Add("bearer " + valid[:len(valid)-3])
	f.Add("Bearer " + strings.Replace(valid, ".", "..", 1))
	f.Fuzz(func(t *testing.T, authorization string) {
		req := httptest.NewRequest(http.MethodGet, "/data", nil)
		req.Header.Set("Authorization", authorization)
		res := sendRequest(t, g, req)
		switch res.status {
		case http.StatusOK:
			_, token, _ := strings.Cut(authorization, " ")
			if !passing[strings.TrimLeft(token, " ")] {
				t.Fatalf("%q passed", authorization)
			}
		case http.StatusBadRequest, http.StatusUnauthorized:
		default:
			t.Fatalf("%q: status %d", authorization, res.status)
		}
	})
}
