package gate

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/golang-jwt/jwt/v5"

	"github.com/conngate/conngate/store"
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

// verified is what a token yields once checked. The cache keeps only what
// every request needs (about 250 bytes with ristretto's own bookkeeping,
// whatever the token's size): the token's SHA-256, compared in full on every
// hit (ristretto keeps 64-bit hashes, not keys), the connection id, the
// expiry and the key set generation. Each request gets its own copy, which
// also holds its raw token; the claims, needed only by forward_claim and the
// {http.auth.claims.*} placeholders, are decoded from it when first asked
// for. Keeping them (and the token) in the cache cost about 2 KB per token.
type verified struct {
	verifiedToken

	token  string        // the request's raw token
	claims jwt.MapClaims // decoded on first use
}

// verifiedToken is what the cache keeps of a verified token: 64 bytes, one
// size class below what it would take with the per-request fields.
type verifiedToken struct {
	sum          [sha256.Size]byte
	connectionID string
	expires      int64  // unix nanoseconds; never after exp (or iat+max_token_age), leeway included
	generation   uint64 // of the key sets when verified
}

// claimSet returns the token's claims, decoding the payload of the request's
// token (already verified: its SHA-256 is the cached one) on first use.
func (v *verified) claimSet() jwt.MapClaims {
	if v.claims != nil {
		return v.claims
	}
	v.claims = jwt.MapClaims{}
	_, rest, _ := strings.Cut(v.token, ".")
	payload, _, _ := strings.Cut(rest, ".")
	if b, err := base64.RawURLEncoding.DecodeString(payload); err == nil {
		json.Unmarshal(b, &v.claims)
	}
	return v.claims
}

// tokenVerifier checks bearer tokens: once per token, then from memory until
// the token expires, is evicted, or the key sets change.
type tokenVerifier struct {
	keys   *keySources
	parser *jwt.Parser
	cfg    verifierConfig
	cache  *ristretto.Cache[uint64, *verifiedToken] // keyed by the first 8 bytes of the token's SHA-256

	// closing guards the cache against writes after close: a request still
	// running when its config is cleaned up must not write to a closed
	// ristretto cache, which panics.
	closing sync.RWMutex
	closed  bool
}

// claimError is a token whose signature is fine but whose claims are not.
type claimError struct{ description string }

func (e *claimError) Error() string { return e.description }

// tokenEntryCost is what one cached token costs in memory, as measured by
// BenchmarkCacheMemory (heap after GC, ristretto's bookkeeping included,
// rounded up): token_cache_size divided by it is how many tokens fit.
const tokenEntryCost = 320

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
	cache, err := ristretto.NewCache(&ristretto.Config[uint64, *verifiedToken]{
		NumCounters:        cacheCounters(cfg.cacheBytes / tokenEntryCost),
		MaxCost:            cfg.cacheBytes,
		BufferItems:        64,
		IgnoreInternalCost: true,
		// The key is already a hash (part of the token's SHA-256), and every
		// hit compares the whole SHA-256: no conflict hash needed.
		KeyToHash: func(k uint64) (uint64, uint64) { return k, 0 },
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

// verify checks raw and returns what it yields: a copy of its own for the
// request.
func (v *tokenVerifier) verify(ctx context.Context, raw string) (*verified, error) {
	now := v.cfg.now().UnixNano()
	key, sum := tokenKey(raw)
	cached, hit := v.cache.Get(key)
	hit = hit && cached.sum == sum
	if hit && now < cached.expires && cached.generation == v.keys.generation.Load() {
		return &verified{verifiedToken: *cached, token: raw}, nil
	}
	gen := v.keys.generation.Load()
	e, err := v.check(ctx, raw)
	if err != nil {
		if hit {
			v.closing.RLock()
			if !v.closed {
				v.cache.Del(key) // expired, or its key is gone: no longer good
			}
			v.closing.RUnlock()
		}
		return nil, err
	}
	e.generation, e.sum = gen, sum
	// No ristretto TTL: expiry is checked on every hit above (one clock read
	// instead of ristretto's own), and an expired entry is dropped then;
	// cost pressure evicts the ones never seen again.
	entry := e.verifiedToken
	v.closing.RLock()
	if !v.closed {
		v.cache.Set(key, &entry, tokenEntryCost)
	}
	v.closing.RUnlock()
	return e, nil
}

// tokenKey returns the token's SHA-256 and the part of it the cache is
// keyed by.
func tokenKey(raw string) (uint64, [sha256.Size]byte) {
	sum := sha256.Sum256([]byte(raw))
	return binary.LittleEndian.Uint64(sum[:8]), sum
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
	// No connection can have an id the store refuses; looking one up would
	// only cost a lookup (or, for "." and "..", ask for another path).
	if store.ValidateID("connection id", cid) != nil {
		return nil, &claimError{"connection claim invalid"}
	}
	return &verified{verifiedToken: verifiedToken{connectionID: cid, expires: expires.UnixNano()}, token: raw, claims: claims}, nil
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
