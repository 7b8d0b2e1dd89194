package gate

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/conngate/conngate/caddymodule/control/controltest"
)

// jwksGate is a gate that verifies RS256 tokens from one test JWKS, with no
// periodic refresh during the test: only on-demand refreshes happen.
func jwksGate(t *testing.T, s *controltest.Server, jwks *jwksServer) *Gate {
	g := newGate(t, s, func(g *Gate) {
		g.JWKSURLs = []string{jwks.URL}
		g.Algorithms = []string{"RS256"}
		g.JWKSRefreshInterval = 3600e9
	})
	// Loaded, not only asked for: the server counts the fetch before the
	// gate has stored the keys.
	eventually(t, within, "first key set loaded", func() bool { return g.tokens.keys.jwks[0].loaded.Load() })
	return g
}

// allowOnDemandRefresh lifts the once-per-10s limit, as if 10 s had passed.
func allowOnDemandRefresh(g *Gate) {
	for _, set := range g.tokens.keys.jwks {
		set.nextOnDemand.Store(0)
	}
}

func TestJWKSRotation(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	conn := s.Create(t, "org-1").Connection.ID
	old, _, _, _ := newSigners()
	jwks := newJWKSServer(t, old)
	g := jwksGate(t, s, jwks)
	claims := jwt.MapClaims{"cid": conn, "iss": s.Issuer, "aud": s.Audience, "exp": time.Now().Add(time.Hour).Unix()}
	oldToken := old.sign(t, claims, nil)
	expectStatus(t, g, oldToken, 200, "")

	// A new key is published and used: accepted after an on-demand refresh.
	key2, _ := rsa.GenerateKey(rand.Reader, 2048)
	next := signer{"rsa-2", jwt.SigningMethodRS256, key2}
	jwks.publish(old, next)
	fetches := jwks.fetches.Load()
	expectStatus(t, g, next.sign(t, claims, nil), 200, "")
	if jwks.fetches.Load() != fetches+1 {
		t.Fatalf("the unknown kid made %d fetches, want 1", jwks.fetches.Load()-fetches)
	}

	// The old key is removed: its tokens, cached as verified, stop working
	// at the next refresh, and their cache entries go.
	jwks.publish(next)
	allowOnDemandRefresh(g)
	expectStatus(t, g, signer{"rsa-3", jwt.SigningMethodRS256, key2}.sign(t, claims, nil), 401, "token_invalid") // triggers the refresh
	res := send(t, g, bearer(oldToken))
	if res.status != 401 || res.body.Description != "no key to verify the token" {
		t.Fatalf("token of a removed key: %d %+v", res.status, res.body)
	}
	g.tokens.cache.Wait()
	if key, _ := tokenKey(oldToken); cached(g.tokens, key) {
		t.Error("the removed key's token is still cached")
	}

	// The provider goes down: the last good keys are kept.
	jwks.failing.Store(true)
	allowOnDemandRefresh(g)
	expectStatus(t, g, signer{"rsa-4", jwt.SigningMethodRS256, key2}.sign(t, claims, nil), 401, "token_invalid")
	expectStatus(t, g, next.sign(t, jwt.MapClaims{"cid": conn, "iss": s.Issuer, "aud": s.Audience, "exp": time.Now().Add(time.Hour).Unix(), "n": 1}, nil), 200, "")
}

// A hanging provider delays only requests with an unknown kid, and those by
// at most the short bound; refreshes are coalesced and rate-limited.
func TestJWKSNeverStallsTraffic(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	conn := s.Create(t, "org-1").Connection.ID
	known, _, _, _ := newSigners()
	key2, _ := rsa.GenerateKey(rand.Reader, 2048)
	jwks := newJWKSServer(t, known)
	g := jwksGate(t, s, jwks)
	claims := func(n int) jwt.MapClaims {
		return jwt.MapClaims{"cid": conn, "iss": s.Issuer, "aud": s.Audience, "exp": time.Now().Add(time.Hour).Unix(), "n": n}
	}

	// Coalesced: many requests with one new kid make one fetch, and all pass.
	fresh := signer{"rsa-new", jwt.SigningMethodRS256, key2}
	jwks.publish(known, fresh)
	fetches := jwks.fetches.Load()
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if res := send(t, g, bearer(fresh.sign(t, claims(i), nil))); res.status != 200 {
				t.Errorf("request %d: %d %+v", i, res.status, res.body)
			}
		}()
	}
	wg.Wait()
	if n := jwks.fetches.Load() - fetches; n != 1 {
		t.Errorf("%d fetches for 20 concurrent requests with one new kid, want 1", n)
	}

	// Rate-limited: another unknown kid right after gets 401 at once, no fetch.
	fetches = jwks.fetches.Load()
	start := time.Now()
	expectStatus(t, g, signer{"rsa-other", jwt.SigningMethodRS256, key2}.sign(t, claims(0), nil), 401, "token_invalid")
	if took := time.Since(start); took > 100*time.Millisecond || jwks.fetches.Load() != fetches {
		t.Errorf("rate-limited unknown kid took %s and %d fetches", took, jwks.fetches.Load()-fetches)
	}

	// Hanging provider: the unknown kid waits at most the bound; a known kid
	// is not slowed at all.
	jwks.hang.engage()
	allowOnDemandRefresh(g)
	fetches = jwks.fetches.Load()
	done := make(chan time.Duration)
	go func() {
		start := time.Now()
		send(t, g, bearer(signer{"rsa-hang", jwt.SigningMethodRS256, key2}.sign(t, claims(1), nil)))
		done <- time.Since(start)
	}()
	eventually(t, within, "the refresh for the unknown kid reached the provider", func() bool { return jwks.fetches.Load() > fetches })
	start = time.Now()
	expectStatus(t, g, known.sign(t, claims(2), nil), 200, "")
	if took := time.Since(start); took > 200*time.Millisecond {
		t.Errorf("a known kid took %s while the provider hangs", took)
	}
	if took := <-done; took > jwksWaitMax+500*time.Millisecond {
		t.Errorf("an unknown kid waited %s for a hanging provider; the bound is %s", took, jwksWaitMax)
	}
}

// While no key set has ever been fetched, a token cannot be judged: 503 with
// Retry-After, not a 401 that a client could take to mean its token is dead.
func TestKeysNotFetchedYetIs503(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	conn := s.Create(t, "org-1").Connection.ID
	signer1, _, _, _ := newSigners()
	jwks := newJWKSServer(t, signer1)
	jwks.failing.Store(true)
	g := newGate(t, s, func(g *Gate) {
		g.JWKSURLs = []string{jwks.URL}
		g.Algorithms = []string{"RS256"}
		g.JWKSRefreshInterval = 3600e9
	})
	tok := signer1.sign(t, jwt.MapClaims{"cid": conn, "iss": s.Issuer, "aud": s.Audience, "exp": time.Now().Add(time.Hour).Unix()}, nil)
	res := send(t, g, bearer(tok))
	if res.status != 503 || res.body.Reason != "keys_unavailable" || res.header.Get("Retry-After") == "" || res.upstream != nil {
		t.Fatalf("provider down since start: %d %+v", res.status, res.body)
	}
	jwks.failing.Store(false)
	allowOnDemandRefresh(g)
	expectStatus(t, g, tok, 200, "")
	// Once a set has loaded, an unknown key is the token's problem: 401.
	allowOnDemandRefresh(g)
	expectStatus(t, g, signer{"other", jwt.SigningMethodRS256, signer1.key}.sign(t, jwt.MapClaims{"cid": conn, "iss": s.Issuer, "aud": s.Audience, "exp": time.Now().Add(time.Hour).Unix()}, nil), 401, "token_invalid")
}

// At start-up the control endpoint in the same Caddy is not listening yet:
// the gate retries its key set quickly and quietly for a few seconds, and
// warns only when the set stays unreachable past that.
func TestJWKSStartupRetriesQuietly(t *testing.T) {
	for _, tt := range []struct {
		name     string
		grace    time.Duration
		wantWarn bool
	}{
		{"unreachable within the start-up grace: retried, no warning", time.Minute, false},
		{"unreachable past the start-up grace: warned", 0, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			signer1, _, _, _ := newSigners()
			jwks := newJWKSServer(t, signer1)
			jwks.failing.Store(true)
			core, logs := observer.New(zapcore.DebugLevel)
			set, err := newJWKSSet(jwks.URL, zap.New(core), func() {})
			if err != nil {
				t.Fatal(err)
			}
			set.startupGrace = tt.grace
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go set.run(ctx, time.Hour)
			warnings := func() int { return logs.FilterLevelExact(zapcore.WarnLevel).Len() }
			if tt.wantWarn {
				eventually(t, 5*time.Second, "a warning", func() bool { return warnings() == 1 })
				return
			}
			eventually(t, 5*time.Second, "three quick retries", func() bool { return jwks.fetches.Load() >= 3 })
			jwks.failing.Store(false)
			eventually(t, 5*time.Second, "the key set loaded", set.loaded.Load)
			if n := warnings(); n != 0 {
				t.Errorf("%d warnings while the key set was only not up yet", n)
			}
		})
	}
}

// Only signing keys verify, and only for their own algorithm: a key whose
// "use" or "key_ops" says otherwise, or whose "alg" is not the token's, is
// never tried, with or without a kid in the token. A key that says nothing
// of its use or algorithm serves any algorithm of its type. RSA keys under
// 2048 bits are refused, as they are from public_key.
func TestJWKSKeyUseAlgAndSize(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	conn := s.Create(t, "org-1").Connection.ID
	rs, _, es, _ := newSigners()
	weakKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	weak := signer{"rsa-1", jwt.SigningMethodRS256, weakKey}
	jwks := newJWKSServer(t, rs)
	g := jwksGate(t, s, jwks)
	set := g.tokens.keys.jwks[0]

	for i, tt := range []struct {
		name   string
		signer signer
		meta   jwkset.JWKMetadataOptions
		want   int
	}{
		{"use sig", rs, jwkset.JWKMetadataOptions{USE: jwkset.UseSig}, 200},
		{"no use, no alg", rs, jwkset.JWKMetadataOptions{}, 200},
		{"alg of the token", rs, jwkset.JWKMetadataOptions{ALG: jwkset.AlgRS256}, 200},
		{"key_ops verify", rs, jwkset.JWKMetadataOptions{KEYOPS: []jwkset.KEYOPS{jwkset.KeyOpsVerify}}, 200},
		{"use enc", rs, jwkset.JWKMetadataOptions{USE: jwkset.UseEnc}, 401},
		{"key_ops encrypt", rs, jwkset.JWKMetadataOptions{KEYOPS: []jwkset.KEYOPS{jwkset.KeyOpsEncrypt}}, 401},
		{"another signing alg", rs, jwkset.JWKMetadataOptions{ALG: jwkset.AlgRS512}, 401},
		{"an encryption alg", rs, jwkset.JWKMetadataOptions{ALG: jwkset.AlgRSAOAEP}, 401},
		{"RSA of 1024 bits", weak, jwkset.JWKMetadataOptions{USE: jwkset.UseSig}, 401},
	} {
		for _, withKID := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s, kid in the token %t", tt.name, withKID), func(t *testing.T) {
				meta := tt.meta
				meta.KID = tt.signer.kid
				// An unrelated EC key keeps the set usable when the key
				// under test is refused.
				jwks.publishJWKs(jwkOf(tt.signer, meta), jwkOf(es, jwkset.JWKMetadataOptions{KID: es.kid}))
				if err := set.refresh(context.Background()); err != nil {
					t.Fatal(err)
				}
				sign := tt.signer
				if !withKID {
					sign.kid = ""
				}
				claims := jwt.MapClaims{"cid": conn, "iss": s.Issuer, "aud": s.Audience, "exp": time.Now().Add(time.Hour).Unix(),
					"case": fmt.Sprint(i, withKID)}
				res := send(t, g, bearer(sign.sign(t, claims, nil)))
				if res.status != tt.want {
					t.Fatalf("%d %+v, want %d", res.status, res.body, tt.want)
				}
			})
		}
	}
}

// A refused key is logged once per key set fetched, with its kid and why,
// never its material; keys for another use are not warned about.
func TestJWKSRefusedKeysLoggedOnce(t *testing.T) {
	rs, _, es, _ := newSigners()
	weakKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	weak := signer{"weak-1", jwt.SigningMethodRS256, weakKey}
	weakJWK := jwkOf(weak, jwkset.JWKMetadataOptions{KID: weak.kid})
	jwks := newJWKSServer(t)
	jwks.publishJWKs(jwkOf(rs, jwkset.JWKMetadataOptions{KID: rs.kid}), weakJWK,
		jwkOf(es, jwkset.JWKMetadataOptions{KID: "enc-1", USE: jwkset.UseEnc}))
	core, logs := observer.New(zapcore.DebugLevel)
	set, err := newJWKSSet(jwks.URL, zap.New(core), func() {})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := set.refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	warned := logs.FilterLevelExact(zapcore.WarnLevel).All()
	if len(warned) != 1 {
		t.Fatalf("%d warnings for three fetches of one key set, want 1: %+v", len(warned), warned)
	}
	line := fmt.Sprint(warned[0].Message, warned[0].Context)
	if !strings.Contains(line, `"weak-1"`) || !strings.Contains(line, "1024 bits") {
		t.Errorf("the warning does not say which key and why: %s", line)
	}
	if strings.Contains(line, weakJWK.N) || strings.Contains(line, "enc-1") {
		t.Errorf("the warning holds key material or an encryption key: %s", line)
	}
	all, _ := set.storage.KeyReadAll(context.Background())
	if len(all) != 1 || all[0].Marshal().KID != rs.kid {
		t.Errorf("stored keys: %d, want only %s", len(all), rs.kid)
	}

	jwks.publishJWKs(jwkOf(rs, jwkset.JWKMetadataOptions{KID: rs.kid}), weakJWK)
	if err := set.refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := logs.FilterLevelExact(zapcore.WarnLevel).Len(); n != 2 {
		t.Errorf("%d warnings after a changed key set, want 2", n)
	}
}

// After an outage of the provider (failed or timed-out fetches), a key
// published as it comes back verifies within about a second: a failed
// refresh for an unknown kid does not hold back the next one for the
// unknown-kid interval (10 s).
func TestJWKSRetryAfterOutage(t *testing.T) {
	for _, tt := range []struct {
		name   string
		outage func(*jwksServer)
		ended  func(*jwksServer) bool
		end    func(*jwksServer)
	}{
		{"provider answers 500",
			func(j *jwksServer) { j.failing.Store(true) },
			func(j *jwksServer) bool { return true },
			func(j *jwksServer) { j.failing.Store(false) }},
		{"provider hangs",
			func(j *jwksServer) { j.hang.engage() },
			func(j *jwksServer) bool { return j.timedOut.Load() > 0 },
			func(j *jwksServer) { j.hang.release() }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := controltest.Start(t, controltest.Options{})
			conn := s.Create(t, "org-1").Connection.ID
			known, _, _, _ := newSigners()
			jwks := newJWKSServer(t, known)
			g := jwksGate(t, s, jwks)
			_, key2 := testRSAKeys()
			fresh := signer{"rsa-after-outage", jwt.SigningMethodRS256, key2}
			token := fresh.sign(t, jwt.MapClaims{"cid": conn, "iss": s.Issuer, "aud": s.Audience, "exp": time.Now().Add(time.Hour).Unix()}, nil)

			tt.outage(jwks)
			fetches := jwks.fetches.Load()
			expectStatus(t, g, token, 401, "token_invalid")
			if jwks.fetches.Load() == fetches {
				t.Fatal("the unknown kid did not try to refresh the key set")
			}
			eventually(t, 2*jwksFetchTimeout, "the refresh failed", func() bool { return tt.ended(jwks) })
			jwks.publish(known, fresh)
			tt.end(jwks)
			start := time.Now()
			eventually(t, 1500*time.Millisecond, "the new key verifies", func() bool {
				return send(t, g, bearer(token)).status == 200
			})
			t.Logf("verified %s after the provider came back", time.Since(start).Round(time.Millisecond))
		})
	}
}
