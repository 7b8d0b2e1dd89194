package gate

import (
	"context"
	"fmt"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dgraph-io/ristretto/v2"
	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"

	"github.com/conngate/conngate/caddymodule/control/controltest"
	"github.com/conngate/conngate/store"
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

// BenchmarkCacheMemory is what cached tokens and statuses cost in memory:
// the live heap after GC with n verified tokens and n statuses cached, minus
// the same caches empty (ristretto allocates its counters up front), per
// token and status; and the whole heap with the default sizes holding
// 1,000,000 statuses and 100,000 tokens.
//
//	go test -run '^$' -bench CacheMemory -benchtime 1x ./caddymodule/gate/
func BenchmarkCacheMemory(b *testing.B) {
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			for b.Loop() {
				tokenBytes := max(DefaultTokenCacheBytes, int64(n)*tokenEntryCost*5/4)
				statuses := max(DefaultCacheSize, n)
				base, tokens, src := heapWithCaches(b, tokenBytes, statuses)
				fillCaches(b, tokens, src, n, n)
				b.ReportMetric(float64(liveHeap()-base)/float64(n), "B/token+status")
				tokens.close()
				src.Destruct()
			}
		})
	}
	b.Run("defaults,empty", func(b *testing.B) {
		for b.Loop() {
			before := liveHeap()
			base, tokens, src := heapWithCaches(b, DefaultTokenCacheBytes, DefaultCacheSize)
			b.ReportMetric(float64(base-before)/(1<<20), "MiB")
			tokens.close()
			src.Destruct()
		}
	})
	b.Run("defaults,1M-statuses,100k-tokens", func(b *testing.B) {
		for b.Loop() {
			before := liveHeap()
			_, tokens, src := heapWithCaches(b, DefaultTokenCacheBytes, DefaultCacheSize)
			fillCaches(b, tokens, src, 100_000, 1_000_000)
			b.ReportMetric(float64(liveHeap()-before)/(1<<20), "MiB")
			tokens.close()
			src.Destruct()
		}
	})
}

func liveHeap() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// heapWithCaches makes empty caches of the given sizes and returns the live
// heap with them.
func heapWithCaches(b *testing.B, tokenBytes int64, statuses int) (int64, *tokenVerifier, *statusSource) {
	tokens, err := newTokenVerifier(&keySources{}, verifierConfig{cacheBytes: tokenBytes})
	if err != nil {
		b.Fatal(err)
	}
	// A control endpoint that is never reached: only the cache is measured.
	cfg := sourceConfig{controlURLs: []string{"http://127.0.0.1:1"}, controlKey: "k", gatewayID: "g", cacheSize: statuses, idleTimeout: time.Hour}
	src, err := newStatusSource(cfg, newControlClient(cfg.controlURLs, cfg.controlKey), zap.NewNop(), newMetrics())
	if err != nil {
		b.Fatal(err)
	}
	return liveHeap(), tokens, src
}

// fillCaches caches nTokens verified tokens and nStatuses statuses, as
// requests would, with connection ids of the control endpoint's shape, and
// checks that they are all there.
func fillCaches(b *testing.B, tokens *tokenVerifier, src *statusSource, nTokens, nStatuses int) {
	id := func(i int) string { return fmt.Sprintf("conn_%026d", i) }
	exp := time.Now().Add(time.Hour).UnixNano()
	for i := range nTokens {
		key, sum := tokenKey(fmt.Sprintf("token-%d", i))
		for !tokens.cache.Set(key, &verifiedToken{sum: sum, connectionID: id(i), expires: exp}, tokenEntryCost) {
			tokens.cache.Wait() // the insert buffer is full: let it drain
		}
		if i%1000 == 999 {
			tokens.cache.Wait()
		}
	}
	tokens.cache.Wait()
	for i := range nStatuses {
		e := statusEntry{id: id(i), status: store.StatusActive, revision: uint64(i + 1), storedAt: exp}
		for !src.cache.Set(e.id, e, 1) {
			src.cache.Wait()
		}
		if i%1000 == 999 {
			src.cache.Wait()
		}
	}
	src.cache.Wait()
	missing := 0
	for i := range nTokens {
		key, _ := tokenKey(fmt.Sprintf("token-%d", i))
		if _, ok := tokens.cache.Get(key); !ok {
			missing++
		}
	}
	for i := range nStatuses {
		if _, ok := src.cache.Get(id(i)); !ok {
			missing++
		}
	}
	if missing > (nTokens+nStatuses)/100 {
		b.Fatalf("%d of %d entries not cached: the caches are too small for the test", missing, nTokens+nStatuses)
	}
}

// BenchmarkStatusCacheHitRatio is the hit ratio of a full status cache
// (100,000 statuses) under Zipf-distributed lookups over 2,000,000
// connections, with ristretto's admission counters at several multiples of
// the cache's size: what cacheCounters trades against memory.
//
//	go test -run '^$' -bench StatusCacheHitRatio -benchtime 1x ./caddymodule/gate/
func BenchmarkStatusCacheHitRatio(b *testing.B) {
	const size, connections, warm, measured = 100_000, 2_000_000, 1_000_000, 2_000_000
	for _, skew := range []float64{1.01, 1.2} {
		for _, perEntry := range []int64{10, countersPerEntry, 2, 1} {
			b.Run(fmt.Sprintf("zipf=%.2f,counters=%dx", skew, perEntry), func(b *testing.B) {
				for b.Loop() {
					cache, err := ristretto.NewCache(&ristretto.Config[string, statusEntry]{
						NumCounters: size * perEntry, MaxCost: size, BufferItems: 64, IgnoreInternalCost: true,
					})
					if err != nil {
						b.Fatal(err)
					}
					zipf := rand.NewZipf(rand.New(rand.NewSource(1)), skew, 1, connections-1)
					hits := 0
					for i := range warm + measured {
						id := strconv.FormatUint(zipf.Uint64(), 10)
						if _, ok := cache.Get(id); ok {
							if i >= warm {
								hits++
							}
						} else {
							cache.Set(id, statusEntry{id: id}, 1)
						}
						if i%1000 == 0 {
							cache.Wait()
						}
					}
					cache.Close()
					b.ReportMetric(float64(hits)/measured, "hit-ratio")
				}
			})
		}
	}
}

// BenchmarkGCMark is how long one full garbage collection takes with the
// caches empty and holding n tokens and n statuses: the mark work every GC
// cycle of a serving gateway does on top of plain Caddy's, during which the
// GC takes a quarter of the cores (one of two on the benchmark machine).
//
//	go test -run '^$' -bench GCMark -benchtime 20x ./caddymodule/gate/
func BenchmarkGCMark(b *testing.B) {
	for _, n := range []int{0, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			_, tokens, src := heapWithCaches(b, max(DefaultTokenCacheBytes, int64(n)*tokenEntryCost*5/4), max(DefaultCacheSize, n))
			defer src.Destruct()
			defer tokens.close()
			if n > 0 {
				fillCaches(b, tokens, src, n, n)
			}
			runtime.GC()
			b.ResetTimer()
			for b.Loop() {
				runtime.GC()
			}
		})
	}
}
