package gate

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/golang-jwt/jwt/v5"
)

// verifierConfig is what a tokenVerifier checks.
type verifierConfig struct {
	issuers    []string
	audiences  []string
	leeway     time.Duration
	algorithms []string
	claim      string // name or dotted path of the connection id claim
	require    []string
	maxAge     time.Duration
	cacheBytes int64
	now        func() time.Time // the clock every expiry check reads; nil for time.Now
}

// verified is what a token yields once checked, cached until it expires.
type verified struct {
	token        string // compared in full on every hit: ristretto keeps hashes, not keys
	connectionID string
	claims       jwt.MapClaims
	expires      int64  // unix nanoseconds; never after exp (or iat+max_token_age), leeway included
	generation   uint64 // of the key sets when verified
}

// tokenVerifier checks bearer tokens: once per token, then from memory until
// the token expires, is evicted, or the key sets change.
type tokenVerifier struct {
	keys   *keySources
	parser *jwt.Parser
	cfg    verifierConfig
	cache  *ristretto.Cache[string, *verified]

	// closing guards the cache against writes after close: a request still
	// running when its config is cleaned up must not write to a closed
	// ristretto cache, which panics.
	closing sync.RWMutex
	closed  bool
}

// claimError is a token whose signature is fine but whose claims are not.
type claimError struct{ description string }

func (e *claimError) Error() string { return e.description }

// tokenEntryOverhead approximates what an entry costs beside its token.
const tokenEntryOverhead = 512

func newTokenVerifier(keys *keySources, cfg verifierConfig) (*tokenVerifier, error) {
	if cfg.now == nil {
		cfg.now = time.Now
	}
	opts := []jwt.ParserOption{
		jwt.WithTimeFunc(cfg.now),
		jwt.WithValidMethods(cfg.algorithms),
		jwt.WithLeeway(cfg.leeway),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
	}
	if len(cfg.audiences) > 0 {
		opts = append(opts, jwt.WithAudience(cfg.audiences...))
	}
	seed := maphash.MakeSeed()
	cache, err := ristretto.NewCache(&ristretto.Config[string, *verified]{
		NumCounters:        max(cfg.cacheBytes/800*10, 1000), // about 10x the tokens that fit
		MaxCost:            cfg.cacheBytes,
		BufferItems:        64,
		IgnoreInternalCost: true,
		// One fast hash of the token, no conflict hash: every hit compares
		// the whole token anyway, so a collision costs a verification, not
		// a wrong answer, and hashing an 800-byte token twice per request
		// would cost more than the rest of the lookup.
		KeyToHash: func(token string) (uint64, uint64) { return maphash.String(seed, token), 0 },
	})
	if err != nil {
		return nil, fmt.Errorf("creating token cache: %w", err)
	}
	return &tokenVerifier{keys: keys, parser: jwt.NewParser(opts...), cfg: cfg, cache: cache}, nil
}

func (v *tokenVerifier) close() {
	v.closing.Lock()
	v.closed = true
	v.closing.Unlock()
	v.cache.Close()
}

// verify checks raw and returns what it yields.
func (v *tokenVerifier) verify(ctx context.Context, raw string) (*verified, error) {
	now := v.cfg.now().UnixNano()
	cached, hit := v.cache.Get(raw)
	hit = hit && cached.token == raw
	if hit && now < cached.expires && cached.generation == v.keys.generation.Load() {
		return cached, nil
	}
	gen := v.keys.generation.Load()
	e, err := v.check(ctx, raw)
	if err != nil {
		if hit {
			v.closing.RLock()
			if !v.closed {
				v.cache.Del(raw) // expired, or its key is gone: no longer good
			}
			v.closing.RUnlock()
		}
		return nil, err
	}
	e.generation = gen
	// No ristretto TTL: expiry is checked on every hit above (one clock read
	// instead of ristretto's own), and an expired entry is dropped then;
	// cost pressure evicts the ones never seen again.
	v.closing.RLock()
	if !v.closed {
		v.cache.Set(raw, e, int64(len(raw))+tokenEntryOverhead)
	}
	v.closing.RUnlock()
	return e, nil
}

// check verifies raw from scratch: signature, then claims.
func (v *tokenVerifier) check(ctx context.Context, raw string) (*verified, error) {
	claims := jwt.MapClaims{}
	if _, err := v.parser.ParseWithClaims(raw, claims, v.keys.keyfunc(ctx)); err != nil {
		return nil, err
	}
	return v.checkClaims(raw, claims)
}

// checkClaims applies what the JWT library does not: issuer lists, required
// claims, token age and the connection id.
func (v *tokenVerifier) checkClaims(raw string, claims jwt.MapClaims) (*verified, error) {
	if len(v.cfg.issuers) > 0 {
		iss, _ := claims["iss"].(string)
		if !slices.Contains(v.cfg.issuers, iss) {
			return nil, &claimError{"wrong issuer"}
		}
	}
	for _, name := range v.cfg.require {
		if _, ok := claims[name]; !ok {
			return nil, &claimError{"required claim " + name + " missing"}
		}
	}
	exp, err := claims.GetExpirationTime()
	if err != nil || exp == nil {
		return nil, &claimError{"required claim missing"}
	}
	expires := exp.Add(v.cfg.leeway)
	if v.cfg.maxAge > 0 {
		iat, err := claims.GetIssuedAt()
		if err != nil || iat == nil {
			return nil, &claimError{"iat missing; max_token_age needs it"}
		}
		oldest := iat.Add(v.cfg.maxAge + v.cfg.leeway)
		if !v.cfg.now().Before(oldest) {
			return nil, &claimError{"token too old"}
		}
		if oldest.Before(expires) {
			expires = oldest
		}
	}
	cid, ok := lookupClaim(claims, v.cfg.claim).(string)
	if !ok || cid == "" {
		return nil, &claimError{"connection claim missing"}
	}
	return &verified{token: raw, connectionID: cid, claims: claims, expires: expires.UnixNano()}, nil
}

// lookupClaim finds a claim by its name or, when no claim has that name, by
// a dotted path into nested objects. Trying the whole name first keeps
// namespaced claims such as "https://example.com/connection_id" usable.
func lookupClaim(claims map[string]any, name string) any {
	if v, ok := claims[name]; ok {
		return v
	}
	var cur any = claims
	for _, key := range strings.Split(name, ".") {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = obj[key]
	}
	return cur
}

// claimText renders a claim for a header or a placeholder: strings as they
// are, numbers and booleans as JSON, lists of strings comma-separated,
// anything else as JSON.
func claimText(v any) (string, bool) {
	switch c := v.(type) {
	case nil:
		return "", false
	case string:
		return c, true
	case float64:
		return strconv.FormatFloat(c, 'f', -1, 64), true
	case bool:
		return strconv.FormatBool(c), true
	case []any:
		parts := make([]string, 0, len(c))
		for _, item := range c {
			s, ok := item.(string)
			if !ok {
				b, _ := json.Marshal(c)
				return string(b), true
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, ","), true
	}
	b, err := json.Marshal(v)
	return string(b), err == nil
}
