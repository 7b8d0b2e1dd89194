package control

import (
	"crypto/sha256"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// maxApprovals bounds what approvals remembers; past it (a flood of
// approvals within a code's lifetime) a double submission is no longer
// recognised, which only costs a second code: the browser follows the last
// redirect, so the app redeems one of them, and only a redeemed code makes
// a connection.
const maxApprovals = 100_000

// approvals remembers, for a code's lifetime, the code each consent
// approval gave, by the flow it approved (person, app, organisation,
// redirect URI, PKCE challenge, state: the challenge is new in every flow).
// The consent form submitted twice (a double click, a browser that
// resends) then gives the same code, not two codes of which the app can
// redeem only the one its browser came back with; the other would lie in
// the store unused until it expires.
type approvals struct {
	mu      sync.Mutex
	byFlow  map[[32]byte]approval
	flights singleflight.Group
}

type approval struct {
	code string
	at   time.Time
}

func flowKey(parts ...string) [32]byte {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return [32]byte(h.Sum(nil))
}

// approve returns the code approved for flow within ttl, or runs approve,
// once however many submissions arrive together, and remembers its code.
func (a *approvals) approve(flow [32]byte, now time.Time, ttl time.Duration, approve func() (string, error)) (code string, again bool, err error) {
	a.mu.Lock()
	if prev, ok := a.byFlow[flow]; ok && now.Sub(prev.at) < ttl {
		a.mu.Unlock()
		return prev.code, true, nil
	}
	a.mu.Unlock()
	v, err, shared := a.flights.Do(string(flow[:]), func() (any, error) {
		code, err := approve()
		if err != nil {
			return "", err
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.byFlow == nil {
			a.byFlow = map[[32]byte]approval{}
		}
		for k, v := range a.byFlow {
			if now.Sub(v.at) >= ttl {
				delete(a.byFlow, k)
			}
		}
		if len(a.byFlow) < maxApprovals {
			a.byFlow[flow] = approval{code, now}
		}
		return code, nil
	})
	if err != nil {
		return "", false, err
	}
	return v.(string), shared, nil
}
