package gate

import (
	"context"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/golang-jwt/jwt/v5"

	"github.com/conngate/conngate/caddymodule/control/controltest"
)

func claimsGate(t *testing.T, tweak func(*Gate)) (*Gate, signer, string, jwt.MapClaims) {
	s := controltest.Start(t, controltest.Options{})
	_, _, _, ed := newSigners()
	path, _ := writePublicPEM(t, ed)
	g := newGate(t, s, func(g *Gate) {
		g.PublicKeyFiles = []string{path}
		g.Issuers, g.Audiences = nil, nil
		if tweak != nil {
			tweak(g)
		}
	})
	cid := s.Create(t, "org-1").Connection.ID
	return g, ed, cid, jwt.MapClaims{"sub": "user-1", "cid": cid, "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()}
}

func TestMaxTokenAge(t *testing.T) {
	g, ed, _, base := claimsGate(t, func(g *Gate) { g.MaxTokenAge = caddy.Duration(time.Hour) })
	expectStatus(t, g, ed.sign(t, base, nil), 200, "")
	old := jwt.MapClaims{}
	for k, v := range base {
		old[k] = v
	}
	old["iat"] = time.Now().Add(-2 * time.Hour).Unix()
	if res := send(t, g, bearer(ed.sign(t, old, nil))); res.status != 401 || res.body.Description != "token too old" {
		t.Fatalf("old token: %d %+v", res.status, res.body)
	}
	delete(old, "iat")
	if res := send(t, g, bearer(ed.sign(t, old, nil))); res.status != 401 {
		t.Fatalf("no iat with max_token_age: %d", res.status)
	}
}

// A verified token is served from memory only until it expires: exp plus
// leeway, or iat plus max_token_age plus leeway if that comes first.
func TestTokenCacheNeverOutlivesExp(t *testing.T) {
	const leeway = 30 * time.Second
	iat := time.Unix(1_900_000_000, 0)
	exp := iat.Add(time.Hour)
	tests := []struct {
		name   string
		maxAge time.Duration
		at     time.Time
		want   string // error description; "" to pass
	}{
		{"within exp", 0, exp, ""},
		{"just before exp+leeway", 0, exp.Add(leeway - time.Nanosecond), ""},
		{"at exp+leeway", 0, exp.Add(leeway), "token expired"},
		{"within max_token_age", 10 * time.Minute, iat.Add(10 * time.Minute), ""},
		{"just before iat+max_token_age+leeway", 10 * time.Minute, iat.Add(10*time.Minute + leeway - time.Nanosecond), ""},
		{"at iat+max_token_age+leeway", 10 * time.Minute, iat.Add(10*time.Minute + leeway), "token too old"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock(iat)
			v, err := newTokenVerifier(&keySources{hmac: [][]byte{[]byte(hmacSecret)}}, verifierConfig{
				leeway: leeway, algorithms: []string{"HS256"}, claim: "cid", maxAge: tt.maxAge, cacheBytes: 1 << 20, now: clock.Now,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer v.close()
			tok := signer{"", jwt.SigningMethodHS256, []byte(hmacSecret)}.sign(t, jwt.MapClaims{"cid": "conn_a", "iat": iat.Unix(), "exp": exp.Unix()}, nil)
			if _, err := v.verify(context.Background(), tok); err != nil {
				t.Fatalf("at iat: %v", err)
			}
			v.cache.Wait()
			if key, _ := tokenKey(tok); !cached(v, key) {
				t.Fatal("verified token not cached")
			}
			clock.Set(tt.at)
			_, err = v.verify(context.Background(), tok)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want != "" && (err == nil || tokenInvalid(err).description != tt.want):
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// An entry found under a token's key is used only if it holds that token's
// whole SHA-256.
func TestTokenCacheComparesTheWholeToken(t *testing.T) {
	g, ed, cid, claims := claimsGate(t, nil)
	tok := ed.sign(t, claims, nil)
	key, _ := tokenKey(tok)
	_, other := tokenKey(tok + "x")
	g.tokens.cache.Set(key, &verifiedToken{sum: other, connectionID: "conn_someone_else", expires: time.Now().Add(time.Hour).UnixNano()}, 1)
	g.tokens.cache.Wait()
	v, err := g.tokens.verify(context.Background(), tok)
	if err != nil || v.connectionID != cid {
		t.Fatalf("verify = %+v, %v; want the token's own connection %s", v, err, cid)
	}
}

func TestForwardedClaimsAndPlaceholders(t *testing.T) {
	g, ed, cid, claims := claimsGate(t, func(g *Gate) {
		g.ForwardClaims = []ForwardClaim{{"sub", "X-User-Id"}, {"ext.org", "X-Org-Id"}, {"missing", "X-Missing"}}
		g.StripAuthorization = true
	})
	claims["ext"] = map[string]any{"org": "org-1", "roles": []string{"a", "b"}}
	h := bearer(ed.sign(t, claims, nil))
	h.Set("X-User-Id", "spoofed")
	h.Set("X-Missing", "spoofed")
	res := send(t, g, h)
	if res.status != 200 {
		t.Fatalf("status %d", res.status)
	}
	up := res.upstream.Header
	if up.Get("X-User-Id") != "user-1" || up.Get("X-Org-Id") != "org-1" || up.Get("X-Missing") != "" || up.Get("Authorization") != "" {
		t.Fatalf("upstream headers %v", up)
	}
	for key, want := range map[string]string{
		"http.auth.connection.id":    cid,
		"http.auth.claims.sub":       "user-1",
		"http.auth.claims.ext.org":   "org-1",
		"http.auth.claims.ext.roles": "a,b",
	} {
		if got, _ := res.repl.GetString(key); got != want {
			t.Errorf("{%s} = %q, want %q", key, got, want)
		}
	}
	if _, ok := res.repl.Get("http.auth.claims.nope"); ok {
		t.Error("placeholder for a missing claim is set")
	}
}

func cached(v *tokenVerifier, key uint64) bool {
	_, ok := v.cache.Get(key)
	return ok
}
