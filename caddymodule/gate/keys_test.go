package gate

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// signer is a private key with the kid and algorithm it signs under.
type signer struct {
	kid    string
	method jwt.SigningMethod
	key    crypto.PrivateKey // or []byte for HMAC
}

func (s signer) public() crypto.PublicKey {
	return s.key.(interface{ Public() crypto.PublicKey }).Public()
}

func (s signer) sign(t testing.TB, claims jwt.MapClaims, header map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(s.method, claims)
	if s.kid != "" {
		tok.Header["kid"] = s.kid
	}
	for k, v := range header {
		tok.Header[k] = v
	}
	out, err := tok.SignedString(s.key)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var (
	keyOnce sync.Once
	rsaKey  *rsa.PrivateKey
	rsaKey2 *rsa.PrivateKey
)

// testRSAKeys are generated once per test binary: RSA generation is slow.
func testRSAKeys() (*rsa.PrivateKey, *rsa.PrivateKey) {
	keyOnce.Do(func() {
		rsaKey, _ = rsa.GenerateKey(rand.Reader, 2048)
		rsaKey2, _ = rsa.GenerateKey(rand.Reader, 2048)
	})
	return rsaKey, rsaKey2
}

func newSigners() (rs, rsOther, es, ed signer) {
	k1, k2 := testRSAKeys()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	return signer{"rsa-1", jwt.SigningMethodRS256, k1}, signer{"rsa-1", jwt.SigningMethodRS256, k2},
		signer{"ec-1", jwt.SigningMethodES256, ec}, signer{"ed-1", jwt.SigningMethodEdDSA, edKey}
}

// writePublicPEM writes the signer's public key as a PUBLIC KEY PEM file.
func writePublicPEM(t testing.TB, s signer) (path string, der []byte) {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(s.public())
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(t.TempDir(), s.kid+".pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	if err := os.WriteFile(path, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, pemBytes
}

// jwksServer serves a key set that a test can change, break or slow down.
type jwksServer struct {
	*httptest.Server
	mu       sync.Mutex
	keys     []jwkset.JWKMarshal
	failing  atomic.Bool
	hang     hold // while engaged, fetches get no answer
	fetches  atomic.Int32
	timedOut atomic.Int32 // fetches the client gave up on while they hung
}

func newJWKSServer(t *testing.T, signers ...signer) *jwksServer {
	j := &jwksServer{}
	j.publish(signers...)
	j.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		j.fetches.Add(1)
		j.hang.wait(r.Context())
		if r.Context().Err() != nil {
			j.timedOut.Add(1)
			return
		}
		if j.failing.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		j.mu.Lock()
		set := jwkset.JWKSMarshal{Keys: j.keys}
		j.mu.Unlock()
		json.NewEncoder(w).Encode(set)
	}))
	t.Cleanup(func() {
		j.hang.release()
		j.CloseClientConnections()
		j.Close()
	})
	return j
}

// publish serves the signers' public keys, each with its kid and "use": "sig".
func (j *jwksServer) publish(signers ...signer) {
	keys := make([]jwkset.JWKMarshal, 0, len(signers))
	for _, s := range signers {
		keys = append(keys, jwkOf(s, jwkset.JWKMetadataOptions{KID: s.kid, USE: jwkset.UseSig}))
	}
	j.publishJWKs(keys...)
}

// publishJWKs serves exactly these keys.
func (j *jwksServer) publishJWKs(keys ...jwkset.JWKMarshal) {
	j.mu.Lock()
	j.keys = keys
	j.mu.Unlock()
}

// jwkOf is the signer's public key as a JWK with the given parameters.
func jwkOf(s signer, meta jwkset.JWKMetadataOptions) jwkset.JWKMarshal {
	k, err := jwkset.NewJWKFromKey(s.public(), jwkset.JWKOptions{Metadata: meta})
	if err != nil {
		panic(err)
	}
	return k.Marshal()
}
