package control

import (
	"time"

	"github.com/caddyserver/caddy/v2"
)

// NewKeyringForTest builds a keyring from keys and maps each key to its
// principal's id.
func NewKeyringForTest(keys []APIKey) (map[string]string, error) {
	kr, err := newKeyring(caddy.NewReplacer(), keys, "")
	if err != nil {
		return nil, err
	}
	ids := map[string]string{}
	for i, k := range keys {
		ids[k.Key] = kr.principals[i].id
	}
	return ids, nil
}

// SetClockForTest makes c read the time from now: code expiry, refresh
// token overlap, sessions.
func SetClockForTest(c *Control, now func() time.Time) { c.now = now }
