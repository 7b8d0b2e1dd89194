package store

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
)

// Fingerprint identifies the change among every change any store could
// have made at its revision: a store restored from a backup, or another
// store, that reuses the revision for a different change gives it a
// different fingerprint. A stream position is a revision and the
// fingerprint of the change at it, so that a subscriber resuming into a
// different history is told to start over instead of being trusted.
//
// It is computed from the fields as the store returns them (ChangedAt to
// the microsecond, which every backend keeps), never from the JSON.
func (c Change) Fingerprint() string {
	h := sha256.New()
	var n [8]byte
	put := func(v uint64) { binary.BigEndian.PutUint64(n[:], v); h.Write(n[:]) }
	str := func(s string) { put(uint64(len(s))); h.Write([]byte(s)) }
	put(c.Revision)
	str(c.ID)
	str(string(c.Status))
	put(uint64(c.ChangedAt.UnixMicro()))
	str(c.OrgID)
	str(c.UserID)
	return hex.EncodeToString(h.Sum(nil)[:8])
}
