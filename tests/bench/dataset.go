package main

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/conngate/conngate/caddymodule/controlapi"
)

// controlAPI speaks to the control endpoint as an administrator.
type controlAPI struct {
	base, key string
	client    *http.Client
}

func newControlAPI(base, key string) *controlAPI {
	return &controlAPI{base: base, key: key, client: &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 16},
	}}
}

func (c *controlAPI) do(method, path string, body []byte, out any) error {
	req, err := http.NewRequest(method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, b)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// writeRate is one measured run of writes to the control endpoint.
type writeRate struct {
	what    string
	n       int
	clients int
	took    time.Duration
	cpu     time.Duration // control process CPU
}

func (w writeRate) perSecond() float64 { return float64(w.n) / w.took.Seconds() }

// parallel runs do(i) for i in [0, n) from clients goroutines and returns
// the wall time; the first error stops it.
func parallel(n, clients int, do func(i int) error) (time.Duration, error) {
	var next atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	started := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for firstErr.Load() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := do(i); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, err
	}
	return time.Since(started), nil
}

// createConnections creates n connections from clients concurrent clients
// and returns their ids and EdDSA access tokens, and the rate.
func createConnections(api *controlAPI, control *proc, n, clients int) (ids, tokens []string, rate writeRate, err error) {
	ids, tokens = make([]string, n), make([]string, n)
	cpu0 := control.cpu()
	took, err := parallel(n, clients, func(i int) error {
		var created controlapi.Created
		body := fmt.Sprintf(`{"name":"bench %d","org_id":"org-%d","user_id":"user-%d"}`, i, i%100, i)
		if err := api.do(http.MethodPost, controlapi.PathConnections, []byte(body), &created); err != nil {
			return err
		}
		ids[i], tokens[i] = created.Connection.ID, created.AccessToken
		return nil
	})
	rate = writeRate{what: "creates", n: n, clients: clients, took: took, cpu: control.cpu() - cpu0}
	return ids, tokens, rate, err
}

// toggle disables and then enables again each of ids, from clients
// concurrent clients: 2*len(ids) status changes, every connection active
// at the end.
func toggle(api *controlAPI, control *proc, ids []string, clients int) (writeRate, error) {
	cpu0 := control.cpu()
	took, err := parallel(2*len(ids), clients, func(i int) error {
		action := "disable"
		if i >= len(ids) {
			action = "enable"
		}
		return api.do(http.MethodPost, controlapi.ActionPath(ids[i%len(ids)], action), nil, nil)
	})
	return writeRate{what: "status changes", n: 2 * len(ids), clients: clients, took: took, cpu: control.cpu() - cpu0}, err
}

// rsaSigner signs RS256 tokens with 11 claims, as an identity provider's.
type rsaSigner struct {
	key     *rsa.PrivateKey
	pemPath string
}

func newRSASigner(path string) (*rsaSigner, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	return &rsaSigner{key: key, pemPath: path}, nil
}

// sign signs one token per id, on every core.
func (s *rsaSigner) sign(ids []string) ([]string, error) {
	tokens := make([]string, len(ids))
	now := time.Now()
	_, err := parallel(len(ids), runtime.GOMAXPROCS(0), func(i int) error {
		var err error
		tokens[i], err = jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
			"iss": "https://idp.example.com/", "aud": "https://api.example.com", "sub": fmt.Sprintf("user-%d", i),
			"cid": ids[i], "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(24 * time.Hour).Unix(),
			"jti": fmt.Sprintf("%016x", i), "scope": "read write", "azp": "client-1", "org": fmt.Sprintf("org-%d", i%100),
		}).SignedString(s.key)
		return err
	})
	return tokens, err
}
