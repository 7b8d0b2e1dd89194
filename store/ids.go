package store

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"time"
)

// idEncoding keeps byte order in string order: its alphabet (0-9, a-v) is
// ascending in ASCII, so ids sort by creation time.
var idEncoding = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

// NewID returns a connection id: "conn_" then 48 bits of millisecond time
// and 80 random bits. Time first makes listings come out in creation order
// and keeps inserts at the end of ordered indexes; the random part makes ids
// unguessable.
func NewID(now time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixMilli())<<16)
	rand.Read(b[6:]) // never fails: crypto/rand panics rather than return short
	return "conn_" + idEncoding.EncodeToString(b[:])
}
