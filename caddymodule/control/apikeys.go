package control

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
)

// APIKey grants a role to whoever presents Key as a Bearer token.
type APIKey struct {
	// "admin" (every action) or "gateway" (reads statuses only).
	Role string `json:"role"`
	// The key itself, usually a placeholder such as {env.CONNGATE_ADMIN_KEY}.
	Key string `json:"key"`
}

type role string

const (
	roleAdmin   role = "admin"
	roleGateway role = "gateway"
)

// minKeyLength keeps guessable keys out: 16 characters is 128 bits only for
// random bytes, so the docs ask for `openssl rand -hex 32`.
const minKeyLength = 16

// permission is what an operation needs. A role has a set of them.
type permission int

const (
	permReadStatus permission = iota + 1 // what a gateway needs
	permManage                           // create, list, view, change
)

var rolePermissions = map[role][]permission{
	roleAdmin:   {permReadStatus, permManage},
	roleGateway: {permReadStatus},
}

// keyring holds the sha-256 of every key. Comparing digests in constant time
// means neither a key's content nor its length leaks through timing.
type keyring struct {
	digests [][sha256.Size]byte
	roles   []role
}

func newKeyring(repl *caddy.Replacer, keys []APIKey) (*keyring, error) {
	kr := &keyring{}
	for i, k := range keys {
		r := role(k.Role)
		if _, ok := rolePermissions[r]; !ok {
			return nil, fmt.Errorf("api_key %d: unknown role %q (want admin or gateway)", i+1, k.Role)
		}
		secret := repl.ReplaceKnown(k.Key, "")
		switch {
		case secret == "":
			return nil, fmt.Errorf("api_key %s: the key is empty (if it comes from a placeholder such as {env.NAME}, is that variable set?)", r)
		case strings.HasPrefix(secret, "{") && strings.HasSuffix(secret, "}"):
			return nil, fmt.Errorf("api_key %s: placeholder %s is not known", r, secret)
		case len(secret) < minKeyLength:
			return nil, fmt.Errorf("api_key %s: the key is shorter than %d characters; use a random one, e.g. openssl rand -hex 32", r, minKeyLength)
		}
		d := sha256.Sum256([]byte(secret))
		for j, other := range kr.digests {
			if other == d {
				return nil, fmt.Errorf("api_key %s: the same key is also given for role %s", r, kr.roles[j])
			}
		}
		kr.digests = append(kr.digests, d)
		kr.roles = append(kr.roles, r)
	}
	return kr, nil
}

func (kr *keyring) has(r role) bool {
	for _, have := range kr.roles {
		if have == r {
			return true
		}
	}
	return false
}

// roleOf returns the role of the key in the request's Authorization header,
// or "" when there is no valid key. Every configured key is compared, so the
// time taken does not tell which one (if any) matched.
func (kr *keyring) roleOf(r *http.Request) role {
	scheme, key, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || key == "" {
		return ""
	}
	d := sha256.Sum256([]byte(key))
	var found role
	for i := range kr.digests {
		if subtle.ConstantTimeCompare(d[:], kr.digests[i][:]) == 1 {
			found = kr.roles[i]
		}
	}
	return found
}

func (r role) may(p permission) bool {
	for _, have := range rolePermissions[r] {
		if have == p {
			return true
		}
	}
	return false
}
