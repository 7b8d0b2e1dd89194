package control_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/oauth2"

	"github.com/conngate/conngate/caddymodule/control"
	"github.com/conngate/conngate/caddymodule/control/controltest"
	"github.com/conngate/conngate/caddymodule/controlapi"
)

// metadataWithHost gets the RFC 8414 metadata of s with the Host header
// host, as a client that reached the endpoint under that name would.
func metadataWithHost(t *testing.T, s *controltest.Server, host string) controlapi.ServerMetadata {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.URL+controlapi.PathOAuthMetadata, nil)
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var md controlapi.ServerMetadata
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("metadata: %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&md); err != nil {
		t.Fatal(err)
	}
	return md
}

// The metadata's issuer is the one clients expect (RFC 8414 section 3.3)
// and the access tokens' iss (RFC 9068): the issuer setting when it is the
// endpoint's https URL (or http on loopback), whatever Host a request
// names. Any other issuer keeps the origin the request reached.
func TestOAuthMetadataIssuer(t *testing.T) {
	for _, tt := range []struct {
		issuer     string
		wantIssuer string // "" for the request's origin
		wantBase   string
	}{
		{"https://control.example.com", "https://control.example.com", "https://control.example.com"},
		{"https://control.example.com/", "https://control.example.com/", "https://control.example.com"},
		{"https://control.example.com:8443", "https://control.example.com:8443", "https://control.example.com:8443"},
		{"http://127.0.0.1:9180", "http://127.0.0.1:9180", "http://127.0.0.1:9180"},
		{"http://localhost:9180", "http://localhost:9180", "http://localhost:9180"},
		{"http://[::1]:9180", "http://[::1]:9180", "http://[::1]:9180"},
		{"conngate", "", ""},
		{"http://control.example.com", "", ""},         // plain HTTP off loopback
		{"https://control.example.com/tenant", "", ""}, // a path: the metadata is served at the root only
		{"https://control.example.com/?x=1", "", ""},   // RFC 8414 section 2: no query
		{"https://control.example.com/#top", "", ""},   // nor fragment
		{"https://control.example.com#", "", ""},
		{"https://user@control.example.com", "", ""}, // nor user info
		{"https://", "", ""},                         // no host
		{"urn:example:conngate", "", ""},             // not a URL the endpoints can be built on
		{"HTTPS://Control.Example.com", "HTTPS://Control.Example.com", "https://Control.Example.com"}, // as configured, as tokens carry it
	} {
		t.Run(tt.issuer, func(t *testing.T) {
			s := controltest.Start(t, controltest.Options{Configure: func(c *control.Control) { c.Issuer = tt.issuer }})
			md := metadataWithHost(t, s, "attacker.example")
			wantIssuer, wantBase := tt.wantIssuer, tt.wantBase
			if wantIssuer == "" {
				wantIssuer, wantBase = "http://attacker.example", "http://attacker.example"
			}
			if md.Issuer != wantIssuer || md.AuthorizationEndpoint != wantBase+"/oauth/authorize" || md.TokenEndpoint != wantBase+"/oauth/token" ||
				md.RevocationEndpoint != wantBase+"/oauth/revoke" || md.IntrospectionEndpoint != wantBase+"/oauth/introspect" ||
				md.JWKSURI != wantBase+"/.well-known/jwks.json" {
				t.Errorf("issuer setting %q: got %+v, want issuer %q and endpoints on %s", tt.issuer, md, wantIssuer, wantBase)
			}
		})
	}
}

// With the issuer set to the endpoint's URL, an app that reads the
// metadata gets access tokens whose iss is the metadata's issuer.
func TestOAuthMetadataIssuerIsTheTokensIss(t *testing.T) {
	path, keys := writePrincipals(t)
	s := controltest.Start(t, controltest.Options{PrincipalsFile: path, Configure: func(c *control.Control) { c.Issuer = "https://control.example.com" }})
	md := metadataWithHost(t, s, "elsewhere.example:8443")
	var app controlapi.App
	body := map[string]any{"client_name": "App", "redirect_uris": []string{redirectURI}, "token_endpoint_auth_method": "none", "org_id": "org-1"}
	if code := s.Do(t, s.AdminKey, http.MethodPost, controlapi.PathApps, body, &app); code != http.StatusCreated {
		t.Fatalf("registering: %d", code)
	}
	// The metadata names the public URL; this test reaches the endpoint at s.URL.
	cfg := oauth2.Config{ClientID: app.ClientID, RedirectURL: redirectURI,
		Endpoint: oauth2.Endpoint{AuthURL: s.URL + "/oauth/authorize", TokenURL: s.URL + "/oauth/token"}}
	verifier := oauth2.GenerateVerifier()
	back := controltest.Authorize(t, s.URL, cfg.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier)), keys["developer"], "approve", "org-1")
	tok, err := cfg.Exchange(t.Context(), back.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	claims := jwt.RegisteredClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(tok.AccessToken, &claims); err != nil {
		t.Fatal(err)
	}
	if claims.Issuer != md.Issuer {
		t.Errorf("the access token's iss is %q, the metadata's issuer %q", claims.Issuer, md.Issuer)
	}
}
