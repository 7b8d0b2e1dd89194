package control

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/conngate/conngate/store"
)

// signingKeySecret is the store secret that holds the generated key's seed.
const signingKeySecret = "token-signing-key-ed25519-seed"

// tokenIssuer signs connection access tokens and publishes the public key.
type tokenIssuer struct {
	key      ed25519.PrivateKey
	kid      string
	issuer   string
	audience string
	lifetime time.Duration
	jwks     []byte // the JSON Web Key Set document, built once
}

// accessClaims are the claims of an issued token. cid is what gateways
// check; sub is the user the connection acts for.
type accessClaims struct {
	jwt.RegisteredClaims
	ConnectionID string `json:"cid"`
}

func newTokenIssuer(ctx context.Context, s store.Store, keyFile, issuer, audience string, lifetime time.Duration) (*tokenIssuer, error) {
	var key ed25519.PrivateKey
	var err error
	if keyFile != "" {
		key, err = readSigningKey(keyFile)
	} else {
		var seed []byte
		seed, err = s.Secret(ctx, signingKeySecret, func() ([]byte, error) {
			seed := make([]byte, ed25519.SeedSize)
			rand.Read(seed) // never fails
			return seed, nil
		})
		if err == nil && len(seed) != ed25519.SeedSize {
			err = fmt.Errorf("stored signing key has %d bytes, want %d", len(seed), ed25519.SeedSize)
		}
		if err == nil {
			key = ed25519.NewKeyFromSeed(seed)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("loading token signing key: %w", err)
	}
	pub := key.Public().(ed25519.PublicKey)
	t := &tokenIssuer{key: key, kid: thumbprint(pub), issuer: issuer, audience: audience, lifetime: lifetime}
	t.jwks, err = json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "OKP", "crv": "Ed25519", "x": base64.RawURLEncoding.EncodeToString(pub),
		"kid": t.kid, "alg": "EdDSA", "use": "sig",
	}}})
	return t, err
}

func readSigningKey(path string) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: want a PEM block of type PRIVATE KEY (PKCS #8), e.g. from: openssl genpkey -algorithm ed25519", path)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	key, ok := parsed.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: the key is a %T, want an Ed25519 key", path, parsed)
	}
	return key, nil
}

// thumbprint is the RFC 7638 JWK thumbprint of an Ed25519 public key, used
// as its kid: stable for the key, different for any other.
func thumbprint(pub ed25519.PublicKey) string {
	canonical := `{"crv":"Ed25519","kty":"OKP","x":"` + base64.RawURLEncoding.EncodeToString(pub) + `"}`
	sum := sha256.Sum256([]byte(canonical))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// issue signs an access token for the connection.
func (t *tokenIssuer) issue(c store.Connection, now time.Time) (token string, expires time.Time, err error) {
	jti := make([]byte, 16)
	rand.Read(jti) // never fails
	expires = now.Add(t.lifetime).Truncate(time.Second)
	claims := accessClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    t.issuer,
			Subject:   c.UserID,
			Audience:  jwt.ClaimStrings{t.audience},
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(expires),
			ID:        base64.RawURLEncoding.EncodeToString(jti),
		},
		ConnectionID: c.ID,
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	tok.Header["kid"] = t.kid
	token, err = tok.SignedString(t.key)
	return token, expires, err
}

func (c *Control) serveJWKS(w http.ResponseWriter, _ *http.Request) error {
	h := w.Header()
	h.Set("Content-Type", "application/jwk-set+json")
	// Short enough that a changed key spreads within a minute.
	h.Set("Cache-Control", "public, max-age=60")
	_, _ = w.Write(c.tokens.jwks) // the client has gone if this fails
	return nil
}

// verify checks an access token this issuer signed: signature, issuer,
// audience and expiry at now. Tokens of other issuers, or expired, are not
// ours to speak for.
func (t *tokenIssuer) verify(token string, now time.Time) (*accessClaims, bool) {
	claims := &accessClaims{}
	_, err := jwt.ParseWithClaims(token, claims, func(*jwt.Token) (any, error) { return t.key.Public(), nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}), jwt.WithIssuer(t.issuer), jwt.WithAudience(t.audience),
		jwt.WithExpirationRequired(), jwt.WithTimeFunc(func() time.Time { return now }))
	return claims, err == nil && claims.ConnectionID != ""
}
