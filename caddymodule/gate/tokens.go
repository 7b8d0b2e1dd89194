package gate

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/caddyserver/caddy/v2"
	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"
	"golang.org/x/time/rate"
)

// supportedAlgorithms are the asymmetric JWS algorithms a JWKS can verify.
// "none" and the HMAC family are deliberately absent.
var supportedAlgorithms = []string{"EdDSA", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}

// Key set fetching. A request never waits longer than jwksWaitMax for a
// refresh triggered by an unknown kid; such refreshes happen at most once per
// unknownKIDInterval, and the whole set is re-fetched every refreshInterval.
const (
	jwksFetchTimeout   = 5 * time.Second
	jwksWaitMax        = time.Second
	unknownKIDInterval = 10 * time.Second
	refreshInterval    = 5 * time.Minute
)

type verifierConfig struct {
	jwksURLs   []string
	issuers    []string
	audiences  []string
	leeway     time.Duration
	algorithms []string
	claim      string
}

// tokenVerifier checks a bearer token and returns its connection id.
type tokenVerifier struct {
	keys    keyfunc.Keyfunc
	parser  *jwt.Parser
	issuers []string
	claim   string
}

// claimError is a token whose signature is fine but whose claims are not.
type claimError struct{ description string }

func (e *claimError) Error() string { return e.description }

func newTokenVerifier(ctx caddy.Context, logger *zap.Logger, cfg verifierConfig) (*tokenVerifier, error) {
	// The first fetch happens here, synchronously. When it fails (for example
	// because the control endpoint is served by this same Caddy and is not
	// listening yet) start-up goes on: tokens are refused until a refresh on
	// the first unknown kid, or the periodic one, gets the keys.
	keys, err := keyfunc.NewDefaultOverrideCtx(ctx, cfg.jwksURLs, keyfunc.Override{
		Client:            &http.Client{Timeout: jwksFetchTimeout},
		HTTPTimeout:       jwksFetchTimeout,
		RateLimitWaitMax:  jwksWaitMax,
		RefreshInterval:   refreshInterval,
		RefreshUnknownKID: rate.NewLimiter(rate.Every(unknownKIDInterval), 1),
		RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
			return func(_ context.Context, err error) {
				// At start-up this is expected when the control endpoint is
				// served by this same Caddy and is not listening yet.
				logger.Warn("fetching JSON Web Key Set failed; tokens signed with keys not fetched yet are refused until a retry succeeds",
					zap.String("url", u), zap.Error(err))
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("setting up JWKS: %w", err)
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(cfg.algorithms),
		jwt.WithLeeway(cfg.leeway),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
	}
	if len(cfg.audiences) > 0 {
		opts = append(opts, jwt.WithAudience(cfg.audiences...))
	}
	return &tokenVerifier{keys: keys, parser: jwt.NewParser(opts...), issuers: cfg.issuers, claim: cfg.claim}, nil
}

// connectionID verifies raw and returns the connection id it names.
func (v *tokenVerifier) connectionID(ctx context.Context, raw string) (string, error) {
	claims := jwt.MapClaims{}
	if _, err := v.parser.ParseWithClaims(raw, claims, v.keys.KeyfuncCtx(ctx)); err != nil {
		return "", err
	}
	if len(v.issuers) > 0 {
		iss, _ := claims["iss"].(string)
		if !slices.Contains(v.issuers, iss) {
			return "", &claimError{"wrong issuer"}
		}
	}
	cid, _ := claims[v.claim].(string)
	if cid == "" {
		return "", &claimError{"connection claim missing"}
	}
	return cid, nil
}
