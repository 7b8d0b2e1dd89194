package control

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/conngate/conngate/store"
)

// APIKey grants a role to whoever presents Key as a Bearer token.
type APIKey struct {
	// "admin" (every action in every organisation) or "gateway" (reads
	// statuses and events, acknowledges them, nothing else).
	Role string `json:"role"`
	// The key itself, usually a placeholder such as {env.CONNGATE_ADMIN_KEY}.
	Key string `json:"key"`
}

// orgRole is a principal's role in one organisation.
type orgRole string

const (
	roleOwner         orgRole = "owner"
	roleManager       orgRole = "manager"
	roleAdministrator orgRole = "administrator"
	roleDeveloper     orgRole = "developer"
	roleViewer        orgRole = "viewer"
)

func (r orgRole) valid() bool {
	switch r {
	case roleOwner, roleManager, roleAdministrator, roleDeveloper, roleViewer:
		return true
	}
	return false
}

// manages reports whether the role may change the organisation's
// connections and read its audit log.
func (r orgRole) manages() bool {
	return r == roleOwner || r == roleManager || r == roleAdministrator
}

// principal is who is calling: an api_key, or an entry of the principals
// file.
type principal struct {
	id string
	// named is true for principals of the principals file: a named gateway
	// may subscribe and acknowledge only under its own id.
	named   bool
	admin   bool // api_key admin: every right in every organisation
	gateway bool // reads statuses and events and acknowledges them, nothing else
	roles   map[string]orgRole
}

// principalsFile is the JSON of principals_file. It holds the sha-256 of
// each key, never a key.
type principalsFile struct {
	Principals []struct {
		ID        string             `json:"id"`
		Name      string             `json:"name"`
		KeySHA256 string             `json:"key_sha256"`
		Roles     map[string]orgRole `json:"roles"`
		Gateway   bool               `json:"gateway"`
	} `json:"principals"`
}

// keyring finds the principal of a presented key. It keeps the sha-256 of
// every key and compares digests in constant time, all of them on every
// call, so that timing tells nothing about which key (if any) matched.
type keyring struct {
	digests    [][sha256.Size]byte
	principals []*principal
	// principalsMissing names a principals_file that does not exist.
	principalsMissing string
	// attempts limits the wrong keys a client address may present.
	attempts *keyAttempts
}

// minKeyLength keeps guessable keys out: the docs ask for `openssl rand -hex 32`.
const minKeyLength = 16

func newKeyring(repl *caddy.Replacer, keys []APIKey, principalsPath string) (*keyring, error) {
	kr := &keyring{attempts: newKeyAttempts()}
	perRole := map[string]int{}
	for i, k := range keys {
		if k.Role != "admin" && k.Role != "gateway" {
			return nil, fmt.Errorf("api_key %d: unknown role %q (want admin or gateway)", i+1, k.Role)
		}
		secret := repl.ReplaceKnown(k.Key, "")
		switch {
		case secret == "":
			return nil, fmt.Errorf("api_key %s: the key is empty (if it comes from a placeholder such as {env.NAME}, is that variable set?)", k.Role)
		case strings.HasPrefix(secret, "{") && strings.HasSuffix(secret, "}"):
			return nil, fmt.Errorf("api_key %s: placeholder %s is not known", k.Role, secret)
		case len(secret) < minKeyLength:
			return nil, fmt.Errorf("api_key %s: the key is shorter than %d characters; use a random one, e.g. openssl rand -hex 32", k.Role, minKeyLength)
		}
		// Several keys of a role (say, during a rotation) each get their own
		// id, so that the audit log tells them apart.
		perRole[k.Role]++
		id := "api_key:" + k.Role
		if n := perRole[k.Role]; n > 1 {
			id = fmt.Sprintf("%s:%d", id, n)
		}
		p := &principal{id: id, admin: k.Role == "admin", gateway: k.Role == "gateway"}
		if err := kr.add(sha256.Sum256([]byte(secret)), p); err != nil {
			return nil, fmt.Errorf("api_key %s: %w", k.Role, err)
		}
	}
	if principalsPath != "" {
		err := kr.load(principalsPath)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			// No file yet means no people yet: that grants nothing, so it
			// is safe, and it lets a file be created after the first start
			// (the demo does) and picked up by a reload.
			kr.principalsMissing = principalsPath
		case err != nil:
			return nil, fmt.Errorf("principals_file %s: %w", principalsPath, err)
		}
	}
	return kr, nil
}

func (kr *keyring) add(digest [sha256.Size]byte, p *principal) error {
	for i, other := range kr.digests {
		if other == digest {
			return fmt.Errorf("the same key is also given to %s", kr.principals[i].id)
		}
		if kr.principals[i].id == p.id {
			return fmt.Errorf("principal id %s is given twice", p.id)
		}
	}
	kr.digests = append(kr.digests, digest)
	kr.principals = append(kr.principals, p)
	return nil
}

func (kr *keyring) load(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	var f principalsFile
	if err := dec.Decode(&f); err != nil {
		return fmt.Errorf("not the expected JSON: %w", err)
	}
	for i, e := range f.Principals {
		where := fmt.Sprintf("principal %d (%q)", i+1, e.ID)
		if err := store.ValidateID("id", e.ID); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		if strings.HasPrefix(e.ID, "api_key:") {
			return fmt.Errorf("%s: ids starting with api_key: are reserved", where)
		}
		raw, err := hex.DecodeString(e.KeySHA256)
		if err != nil || len(raw) != sha256.Size {
			return fmt.Errorf("%s: key_sha256 must be 64 hex digits, the sha-256 of the key (caddy connections new-key prints it)", where)
		}
		if e.Gateway && len(e.Roles) > 0 {
			return fmt.Errorf("%s: a gateway has no organisation roles", where)
		}
		for org, role := range e.Roles {
			if err := store.ValidateID("organisation", org); err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
			if !role.valid() {
				return fmt.Errorf("%s: role %q in %s: want owner, manager, administrator, developer or viewer", where, role, org)
			}
		}
		if err := kr.add([sha256.Size]byte(raw), &principal{id: e.ID, named: true, gateway: e.Gateway, roles: e.Roles}); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
	}
	return nil
}

func (kr *keyring) hasAdmin() bool {
	for _, p := range kr.principals {
		if p.admin {
			return true
		}
	}
	return false
}

// principalOf returns who presented the key in the request's Authorization
// header, or nil. A wait above 0 means the client's address has presented
// too many wrong keys: the key was not looked at.
func (kr *keyring) principalOf(r *http.Request) (p *principal, wait time.Duration) {
	scheme, key, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return nil, 0
	}
	return kr.byKeyFrom(r, key)
}

// byKeyFrom is byKey for a key presented in the request r, counting a
// wrong key against r's client address (an empty key is no attempt).
func (kr *keyring) byKeyFrom(r *http.Request, key string) (p *principal, wait time.Duration) {
	if key == "" {
		return nil, 0
	}
	address := clientAddress(r)
	if wait := kr.attempts.blocked(address); wait > 0 {
		return nil, wait
	}
	p = kr.byKey(key)
	if p == nil {
		kr.attempts.failed(address)
	}
	return p, 0
}

// byKey returns the principal whose key this is, or nil.
func (kr *keyring) byKey(key string) *principal {
	if key == "" {
		return nil
	}
	d := sha256.Sum256([]byte(key))
	var found *principal
	for i := range kr.digests {
		if subtle.ConstantTimeCompare(d[:], kr.digests[i][:]) == 1 {
			found = kr.principals[i]
		}
	}
	return found
}

// byID returns the principal of the principals file with this id, or nil:
// the person a session or a Caddy authentication handler names.
func (kr *keyring) byID(id string) *principal {
	for _, p := range kr.principals {
		if p.named && p.id == id {
			return p
		}
	}
	return nil
}
