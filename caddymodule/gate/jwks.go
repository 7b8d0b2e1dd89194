package gate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"
)

// JWKS fetching. A fetch never takes longer than jwksFetchTimeout, one for
// an unknown kid never longer than jwksOnDemandTimeout; a request with an
// unknown kid waits at most jwksWaitMax for the refresh it triggers. After
// such a refresh succeeds the next one may start jwksUnknownKIDInterval
// later, after it fails (the provider is down or hangs) jwksRetryAfterFailure
// later: a key published as the provider comes back is found at once, not
// after the interval.
const (
	jwksFetchTimeout       = 5 * time.Second
	jwksOnDemandTimeout    = 2 * time.Second
	jwksWaitMax            = 500 * time.Millisecond
	jwksUnknownKIDInterval = 10 * time.Second
	jwksRetryAfterFailure  = 500 * time.Millisecond
	jwksMaxBytes           = 1 << 20
	// At start-up a key set served by this same Caddy (the control
	// endpoint's) is unreachable until its listener is up, a moment after
	// the gate is provisioned. Until the first fetch succeeds, and for at
	// most jwksStartupGrace, failures are retried every jwksStartupRetry
	// and logged at debug level, not warned about.
	jwksStartupGrace = 5 * time.Second
	jwksStartupRetry = 100 * time.Millisecond
)

// jwksSet is one JSON Web Key Set: its keys in memory (read through
// keyfunc), refreshed on a timer and on demand for an unknown kid. A failed
// fetch keeps the last good keys. The set of the control endpoints is
// served by each of them: it is fetched from the one that last answered,
// and from the others when that one fails.
type jwksSet struct {
	url      string // as configured: names the set in logs
	sources  endpoints
	client   *http.Client
	storage  jwkset.Storage
	keys     keyfunc.Keyfunc
	logger   *zap.Logger
	onChange func() // called when a fetch brings a different key set
	// startupGrace is jwksStartupGrace; tests shorten it.
	startupGrace time.Duration

	loaded       atomic.Bool // a fetch has succeeded at least once
	flights      singleflight.Group
	nextOnDemand atomic.Int64 // unix nanoseconds before which no unknown-kid refresh starts
	mu           sync.Mutex
	digest       [sha256.Size]byte // of the last key set stored
}

func newJWKSSet(url string, logger *zap.Logger, onChange func()) (*jwksSet, error) {
	storage := jwkset.NewMemoryStorage()
	kf, err := keyfunc.New(keyfunc.Options{Storage: storage})
	if err != nil {
		return nil, err
	}
	return &jwksSet{
		url:      url,
		sources:  endpoints{urls: []string{url}},
		client:   &http.Client{Timeout: jwksFetchTimeout},
		storage:  storage,
		keys:     kf,
		logger:   logger.With(zap.String("jwks_url", url)),
		onChange: onChange,

		startupGrace: jwksStartupGrace,
	}, nil
}

// run refreshes the set every interval until ctx ends. The first fetch is
// immediate; when it fails (the provider, or a control endpoint in this same
// Caddy, is not up yet) tokens are refused until a later fetch succeeds.
func (s *jwksSet) run(ctx context.Context, interval time.Duration) {
	started := time.Now()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := s.refresh(ctx)
		if err != nil && !s.loaded.Load() && time.Since(started) < s.startupGrace {
			s.logger.Debug("JSON Web Key Set not reachable yet; retrying", zap.Error(err))
			t.Reset(jwksStartupRetry)
			continue
		}
		if err != nil {
			s.logger.Warn("fetching JSON Web Key Set failed; keeping the last good keys", zap.Error(err))
			t.Reset(min(interval, 5*time.Second)) // retry sooner than a routine refresh
			continue
		}
		t.Reset(interval)
	}
}

// fallBackTo makes the set fetched from urls too, when the ones before fail;
// each switch is logged and counted on failovers.
func (s *jwksSet) fallBackTo(urls []string, failovers prometheus.Counter) {
	s.sources.urls = append(s.sources.urls, urls...)
	s.sources.report = func(from, to string, cause error) {
		s.logger.Warn("control endpoint failover: the key set now comes from another control endpoint",
			zap.String("from", from), zap.String("to", to), zap.NamedError("from_error", cause))
		failovers.Inc()
	}
}

// refresh fetches the set, from the next URL when one fails.
func (s *jwksSet) refresh(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, jwksFetchTimeout)
	defer cancel()
	return s.sources.try(ctx, func(ctx context.Context, url string) (bool, error) {
		err := s.fetch(ctx, url)
		return err != nil, err
	})
}

func (s *jwksSet) fetch(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, jwksMaxBytes+1))
	if err != nil {
		return err
	}
	if len(body) > jwksMaxBytes {
		return fmt.Errorf("key set larger than %d bytes", jwksMaxBytes)
	}
	digest := sha256.Sum256(bytes.TrimSpace(body))
	s.mu.Lock()
	defer s.mu.Unlock()
	if digest == s.digest {
		s.loaded.Store(true)
		return nil
	}
	var set jwkset.JWKSMarshal
	if err := json.Unmarshal(body, &set); err != nil {
		return fmt.Errorf("decoding key set: %w", err)
	}
	keys := make([]jwkset.JWK, 0, len(set.Keys))
	var refused []string
	for _, m := range set.Keys {
		k, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
		if err == nil {
			err = checkJWK(k)
		}
		switch {
		case errors.Is(err, errNotForSigning):
			// An encryption key beside the signing keys is normal.
			s.logger.Debug("skipping a key of the set", zap.String("kid", m.KID), zap.Error(err))
		case err != nil:
			refused = append(refused, fmt.Sprintf("kid %q: %v", m.KID, err))
		default:
			keys = append(keys, k)
		}
	}
	if len(refused) > 0 {
		// Once per set that differs from the last one, not per request.
		s.logger.Warn("keys of the JSON Web Key Set refused", zap.Strings("refused", refused))
	}
	if len(keys) == 0 && len(set.Keys) > 0 {
		return errors.New("no usable key in the key set")
	}
	if err := s.storage.KeyReplaceAll(ctx, keys); err != nil {
		return err
	}
	s.digest = digest
	s.loaded.Store(true)
	s.logger.Info("JSON Web Key Set loaded", zap.Int("keys", len(keys)))
	s.onChange()
	return nil
}

// refreshForUnknownKID refetches the set, once however many requests ask at
// the same time and not before nextOnDemand, and waits for it at most
// jwksWaitMax. It reports whether a refresh completed in time.
func (s *jwksSet) refreshForUnknownKID(ctx context.Context) bool {
	results := s.flights.DoChan("refresh", func() (any, error) {
		if time.Now().UnixNano() < s.nextOnDemand.Load() {
			return nil, errRefreshTooSoon
		}
		// Not the request's context: the requests that join this flight
		// share its result.
		fetch, cancel := context.WithTimeout(context.Background(), jwksOnDemandTimeout)
		defer cancel()
		err := s.refresh(fetch)
		pause := jwksUnknownKIDInterval
		if err != nil {
			pause = jwksRetryAfterFailure
		}
		s.nextOnDemand.Store(time.Now().Add(pause).UnixNano())
		return nil, err
	})
	wait := time.NewTimer(jwksWaitMax)
	defer wait.Stop()
	select {
	case res := <-results:
		return res.Err == nil
	case <-wait.C:
		return false
	case <-ctx.Done():
		return false
	}
}

var errRefreshTooSoon = errors.New("the key set was refreshed for an unknown kid too recently")

// jwksOf is the URL of a control endpoint's key set.
func jwksOf(controlURL string) string { return controlURL + "/.well-known/jwks.json" }
