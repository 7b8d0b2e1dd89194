package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/conngate/conngate/caddymodule/controlapi"
)

// serveUpstream is the data API every setup proxies to: a constant small
// JSON answer, as cheap as a Go HTTP server gets.
func serveUpstream(addr string) error {
	body := []byte(`{"ok":true}` + "\n")
	return http.ListenAndServe(addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = []string{"application/json"}
		w.Write(body)
	}))
}

// serveAuthorizer is the peer for forward_auth: what a team would write
// without conngate. It verifies RS256 tokens against one public key, caches
// each verified token (by the whole token) until its exp, and looks each
// connection's status up on the control endpoint once, caching it without
// expiry (it has no change stream: a disable would never reach it; it is a
// lower bound of a real authorizer's cost).
func serveAuthorizer(addr, publicKeyFile, controlURL, controlKey string) error {
	pemBytes, err := os.ReadFile(publicKeyFile)
	if err != nil {
		return err
	}
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return errors.New("no PEM block in " + publicKeyFile)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return err
	}
	a := &authorizer{
		key:        pub,
		parser:     jwt.NewParser(jwt.WithValidMethods([]string{"RS256"}), jwt.WithExpirationRequired()),
		controlURL: controlURL,
		controlKey: controlKey,
		client:     &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
	}
	return http.ListenAndServe(addr, a)
}

type authorizer struct {
	key                    crypto.PublicKey
	parser                 *jwt.Parser
	controlURL, controlKey string
	client                 *http.Client
	tokens                 sync.Map // token -> authorized
	statuses               sync.Map // connection id -> status
}

type authorized struct {
	cid string
	exp time.Time
}

func (a *authorizer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		http.Error(w, "no token", http.StatusUnauthorized)
		return
	}
	var tok authorized
	if v, ok := a.tokens.Load(raw); ok && time.Now().Before(v.(authorized).exp) {
		tok = v.(authorized)
	} else {
		claims := jwt.MapClaims{}
		if _, err := a.parser.ParseWithClaims(raw, claims, func(*jwt.Token) (any, error) { return a.key, nil }); err != nil {
			http.Error(w, "bad token", http.StatusUnauthorized)
			return
		}
		exp, _ := claims.GetExpirationTime()
		cid, _ := claims["cid"].(string)
		tok = authorized{cid: cid, exp: exp.Time}
		a.tokens.Store(raw, tok)
	}
	status, err := a.status(r.Context(), tok.cid)
	if err != nil {
		http.Error(w, "status unavailable", http.StatusServiceUnavailable)
		return
	}
	if status != "active" {
		http.Error(w, "connection "+status, http.StatusUnauthorized)
		return
	}
	w.Header().Set("X-Connection-Id", tok.cid)
}

func (a *authorizer) status(ctx context.Context, id string) (string, error) {
	if v, ok := a.statuses.Load(id); ok {
		return v.(string), nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.controlURL+controlapi.StatusPath(id), nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+a.controlKey)
	resp, err := a.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var body controlapi.StatusBody
	if resp.StatusCode == http.StatusNotFound {
		body.Status = "unknown"
	} else if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status lookup: %s", resp.Status)
	} else if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return "", err
	}
	a.statuses.Store(id, string(body.Status))
	return string(body.Status), nil
}
