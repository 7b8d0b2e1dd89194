package control

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/conngate/conngate/store/boltstore"
)

// Without signing_key the key is generated once and kept in the store: the
// same store gives the same key after a reopen, another store another key.
func TestGeneratedSigningKeyIsKept(t *testing.T) {
	dir := t.TempDir()
	kid := func(path string) string {
		s, err := boltstore.Open(path, boltstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		ti, err := newTokenIssuer(context.Background(), s, "", "iss", "aud", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return ti.kid
	}
	a := kid(filepath.Join(dir, "a.db"))
	if again := kid(filepath.Join(dir, "a.db")); again != a {
		t.Errorf("key changed across reopen: %s -> %s", a, again)
	}
	if other := kid(filepath.Join(dir, "b.db")); other == a {
		t.Error("two stores generated the same key")
	}
}

func TestSigningKeyFile(t *testing.T) {
	dir := t.TempDir()
	s, err := boltstore.Open(filepath.Join(dir, "db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	good := filepath.Join(dir, "good.pem")
	os.WriteFile(good, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	ti, err := newTokenIssuer(context.Background(), s, good, "iss", "aud", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !ti.key.Equal(priv) {
		t.Error("the key from the file is not the one used")
	}

	notPEM := filepath.Join(dir, "bad.pem")
	os.WriteFile(notPEM, []byte("hello"), 0o600)
	for _, path := range []string{notPEM, filepath.Join(dir, "missing.pem")} {
		if _, err := newTokenIssuer(context.Background(), s, path, "iss", "aud", time.Hour); err == nil || !strings.Contains(err.Error(), "signing key") {
			t.Errorf("%s: err = %v, want a signing key error", filepath.Base(path), err)
		}
	}
}
