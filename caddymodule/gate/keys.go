package gate

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// supportedAlgorithms are the JWS algorithms the gate can verify. "none" is
// deliberately absent.
var supportedAlgorithms = []string{"EdDSA", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512", "HS256", "HS384", "HS512"}

// minHMACSecret is the shortest accepted HMAC secret: RFC 7518 section 3.2
// asks for a key at least as long as the hash output (32 bytes for HS256).
const minHMACSecret = 32

// Errors a key lookup returns; tokenInvalid turns them into descriptions.
var (
	errNoKey = errors.New("no key to verify the token")
	// errKeysUnavailable: no key fits, but a key set has never been
	// fetched, so the token may well be good: the answer is 503, not a 401
	// that a client could take to mean its token is dead.
	errKeysUnavailable = errors.New("verification keys not fetched yet")
	errCrit            = errors.New("critical header not understood")
)

// keySources holds every key a gate verifies with. The key handed to the JWT
// library always matches the token's algorithm family, so an HMAC secret
// never verifies an RS/ES/PS/EdDSA token and a public key never serves as an
// HMAC secret. Header parameters that bring their own key (jku, x5u, jwk,
// x5c) are never read.
type keySources struct {
	jwks   []*jwksSet
	public []crypto.PublicKey
	hmac   [][]byte

	// generation counts the key set changes: a token verified under an
	// earlier generation is verified again, so that a token whose key was
	// dropped from a set stops working.
	generation atomic.Uint64
}

// changed is called by a key set when a fetch brings different keys.
func (k *keySources) changed() { k.generation.Add(1) }

// fallBack has each key set of a control endpoint fetched from the next
// control endpoints when that one fails: replicas publish the same keys.
// Switches are counted on failovers.
func (k *keySources) fallBack(controlURLs []string, failovers prometheus.Counter) {
	n := len(controlURLs)
	for _, set := range k.jwks {
		i := slices.IndexFunc(controlURLs, func(u string) bool { return jwksOf(u) == set.url })
		if i < 0 {
			continue
		}
		others := make([]string, 0, n-1)
		for j := 1; j < n; j++ {
			others = append(others, jwksOf(controlURLs[(i+j)%n]))
		}
		set.fallBackTo(others, failovers)
	}
}

// keyfunc returns the jwt.Keyfunc for one verification.
func (k *keySources) keyfunc(ctx context.Context) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		if _, ok := t.Header["crit"]; ok {
			// RFC 7515 section 4.1.11: extensions listed in crit must be
			// understood; this gate understands none.
			return nil, errCrit
		}
		alg := t.Method.Alg()
		if strings.HasPrefix(alg, "HS") {
			if len(k.hmac) == 0 {
				return nil, errNoKey
			}
			set := jwt.VerificationKeySet{}
			for _, secret := range k.hmac {
				set.Keys = append(set.Keys, secret)
			}
			return set, nil
		}
		set := jwt.VerificationKeySet{}
		for _, pub := range k.public {
			if fits(alg, pub) {
				set.Keys = append(set.Keys, pub)
			}
		}
		if kid, ok := t.Header["kid"].(string); ok {
			set.Keys = append(set.Keys, k.fromJWKS(ctx, t, kid, alg)...)
		} else {
			set.Keys = append(set.Keys, k.allFromJWKS(ctx, t, alg)...)
		}
		if len(set.Keys) == 0 {
			if k.someSetNeverLoaded() {
				return nil, errKeysUnavailable
			}
			return nil, errNoKey
		}
		return set, nil
	}
}

func (k *keySources) someSetNeverLoaded() bool {
	for _, s := range k.jwks {
		if !s.loaded.Load() {
			return true
		}
	}
	return false
}

// fromJWKS finds the kid in the key sets, refreshing them once (bounded
// wait) when no set knows it.
func (k *keySources) fromJWKS(ctx context.Context, t *jwt.Token, kid, alg string) []jwt.VerificationKey {
	find := func() []jwt.VerificationKey {
		var keys []jwt.VerificationKey
		for _, s := range k.jwks {
			keys = append(keys, s.keysFor(ctx, t, alg)...)
		}
		return keys
	}
	if keys := find(); len(keys) > 0 {
		return keys
	}
	refreshed := false
	for _, s := range k.jwks {
		if _, err := s.storage.KeyRead(ctx, kid); errors.Is(err, jwkset.ErrKeyNotFound) {
			refreshed = s.refreshForUnknownKID(ctx) || refreshed
		}
	}
	if refreshed {
		return find()
	}
	return nil
}

// allFromJWKS returns every key of the sets that may verify alg, for a token
// that names no kid.
func (k *keySources) allFromJWKS(ctx context.Context, t *jwt.Token, alg string) []jwt.VerificationKey {
	var keys []jwt.VerificationKey
	for _, s := range k.jwks {
		keys = append(keys, s.keysFor(ctx, t, alg)...)
	}
	return keys
}

// keysFor returns the keys of the set that may verify t: the key of its kid,
// or every key when it names none. keyfunc leaves out a key whose "alg"
// differs from the token's (a key without "alg" may serve any algorithm of
// its type); keys of another "use" never reach the set (checkJWK).
func (s *jwksSet) keysFor(ctx context.Context, t *jwt.Token, alg string) []jwt.VerificationKey {
	found, err := s.keys.KeyfuncCtx(ctx)(t)
	if err != nil {
		return nil
	}
	candidates := []jwt.VerificationKey{found}
	if set, ok := found.(jwt.VerificationKeySet); ok {
		candidates = set.Keys
	}
	var keys []jwt.VerificationKey
	for _, key := range candidates {
		if fits(alg, key) {
			keys = append(keys, key)
		}
	}
	return keys
}

// fits reports whether key is of the type alg verifies with.
func fits(alg string, key any) bool {
	switch alg[:2] {
	case "RS", "PS":
		_, ok := key.(*rsa.PublicKey)
		return ok
	case "ES":
		ec, ok := key.(*ecdsa.PublicKey)
		if !ok {
			return false
		}
		want := map[string]elliptic.Curve{"ES256": elliptic.P256(), "ES384": elliptic.P384(), "ES512": elliptic.P521()}[alg]
		return ec.Curve == want
	case "Ed":
		_, ok := key.(ed25519.PublicKey)
		return ok
	}
	return false
}

// readPublicKey reads a PEM file holding one RSA, ECDSA (P-256, P-384,
// P-521) or Ed25519 public key.
func readPublicKey(path string) (crypto.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	var key any
	switch block.Type {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	default:
		return nil, fmt.Errorf("%s: a PEM block of type %q; want PUBLIC KEY (never a private key)", path, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := checkPublicKey(key); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return key, nil
}

// errNotForSigning: a key of a JSON Web Key Set that is meant for something
// else than verifying signatures ("use": "enc", or "key_ops" without
// "verify").
var errNotForSigning = errors.New("not a signature verification key")

// checkJWK refuses a key of a JSON Web Key Set that must not verify tokens:
// one for another use, or one checkPublicKey refuses. A key without "use"
// or "key_ops" is accepted.
func checkJWK(k jwkset.JWK) error {
	m := k.Marshal()
	if m.USE != "" && m.USE != jwkset.UseSig {
		return fmt.Errorf("%w: use %q", errNotForSigning, m.USE)
	}
	if len(m.KEYOPS) > 0 && !slices.Contains(m.KEYOPS, jwkset.KeyOpsVerify) {
		return fmt.Errorf("%w: key_ops %q", errNotForSigning, m.KEYOPS)
	}
	return checkPublicKey(k.Key())
}

// checkPublicKey refuses what the gate does not verify with, wherever the
// key comes from: RSA under 2048 bits, other curves, other key types.
func checkPublicKey(key any) error {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return fmt.Errorf("RSA key of %d bits; want at least 2048", k.N.BitLen())
		}
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() && k.Curve != elliptic.P521() {
			return errors.New("unsupported curve")
		}
	case ed25519.PublicKey:
	default:
		return fmt.Errorf("unsupported key type %T", key)
	}
	return nil
}
