package gate

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"

	"github.com/conngate/conngate/caddymodule/control/controltest"
)

// discard is a ResponseWriter that keeps nothing.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(int)             {}

// benchGate is a gate with static keys for EdDSA, RS256 and ES256 and the
// tokens each signs for one active connection.
func benchGate(b *testing.B) (*Gate, map[string]string) {
	s := controltest.Start(b, controltest.Options{})
	rs, _, es, ed := newSigners()
	var paths []string
	for _, sg := range []signer{rs, es, ed} {
		p, _ := writePublicPEM(b, sg)
		paths = append(paths, p)
	}
	g := newGate(b, s, func(g *Gate) {
		g.PublicKeyFiles = paths
		g.Algorithms = []string{"EdDSA", "RS256", "ES256"}
	})
	// As in production, where Caddy logs at INFO: the gate's debug
	// decision logs are skipped by Check, not written.
	g.logger = zap.NewNop()
	cid := s.Create(b, "org-1").Connection.ID
	tokens := map[string]string{}
	for _, sg := range []signer{ed, rs, es} {
		// Claims like an identity provider's: 11 of them.
		tokens[sg.method.Alg()] = sg.sign(b, jwt.MapClaims{"iss": s.Issuer, "aud": s.Audience, "sub": "user-1", "cid": cid,
			"iat": time.Now().Unix(), "nbf": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(), "jti": "abcdef0123456789",
			"scope": "read write", "azp": "client-1", "org": "org-1"}, nil)
	}
	return g, tokens
}

// BenchmarkGateWarm is the gate's own work per request once the token is
// verified and the status cached: parse the header, find the token, find the
// status, set the upstream header and placeholders, call next.
//
// Each request needs a replacer of its own (Caddy makes one per request
// before the gate runs; reusing one would pile the gate's placeholder
// providers up on it). Making it is not the gate's work, so the "setup"
// sub-benchmark measures just that, in the same run: the gate's cost is
// a warm sub-benchmark minus setup.
//
//	go test -run '^$' -bench 'GateWarm' -benchmem -count 5 ./caddymodule/gate/
func BenchmarkGateWarm(b *testing.B) {
	g, tokens := benchGate(b)
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	newRequest := func(token string) (*http.Request, context.Context) {
		req := httptest.NewRequest(http.MethodGet, "/data", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		return req, req.Context()
	}
	b.Run("setup", func(b *testing.B) {
		req, base := newRequest(tokens["EdDSA"])
		b.ReportAllocs()
		for b.Loop() {
			*req = *req.WithContext(context.WithValue(base, caddy.ReplacerCtxKey, caddy.NewReplacer()))
		}
	})
	for _, alg := range []string{"EdDSA", "RS256", "ES256"} {
		b.Run(alg, func(b *testing.B) {
			req, base := newRequest(tokens[alg])
			w := &discard{h: http.Header{}}
			*req = *req.WithContext(context.WithValue(base, caddy.ReplacerCtxKey, caddy.NewReplacer()))
			if err := g.ServeHTTP(w, req, next); err != nil || req.Header.Get("X-Connection-Id") == "" {
				b.Fatal("warm-up request not let through")
			}
			g.tokens.cache.Wait()
			b.ReportAllocs()
			for b.Loop() {
				*req = *req.WithContext(context.WithValue(base, caddy.ReplacerCtxKey, caddy.NewReplacer()))
				g.ServeHTTP(w, req, next)
			}
		})
	}
}

// BenchmarkVerifyCold is one full verification (signature and claims), what
// a request pays the first time a token is seen.
func BenchmarkVerifyCold(b *testing.B) {
	g, tokens := benchGate(b)
	for _, alg := range []string{"EdDSA", "RS256", "ES256"} {
		b.Run(alg, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := g.tokens.check(context.Background(), tokens[alg]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
