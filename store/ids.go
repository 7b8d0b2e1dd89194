package store

import (
	"bytes"
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"sync"
	"time"
)

// idEncoding keeps byte order in string order: its alphabet (0-9, a-v) is
// ascending in ASCII, so ids sort by creation time.
var idEncoding = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

// NewID returns a connection id: "conn_" then NewIDWith's.
func NewID(now time.Time) string { return NewIDWith("conn_", now) }

// NewIDWith returns prefix then 48 bits of millisecond time
// and 80 random bits. Time first makes listings come out in creation order
// and keeps inserts at the end of ordered indexes; the random part makes ids
// hard to guess. Within one millisecond (or if the clock steps back) the id
// is the previous one plus a random step of up to 2^48, so ids made by this
// process always increase and a neighbour is still not guessable from one id.
func NewIDWith(prefix string, now time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixMilli())<<16)
	rand.Read(b[6:]) // never fails: crypto/rand panics rather than return short
	lastID.Lock()
	defer lastID.Unlock()
	if bytes.Compare(b[:6], lastID.b[:6]) <= 0 {
		// Same millisecond or earlier: the previous id plus a random step.
		next := lastID.b
		step := binary.BigEndian.Uint64(b[8:])>>16 | 1
		lo := binary.BigEndian.Uint64(next[8:])
		hi := binary.BigEndian.Uint64(next[:8])
		if lo+step < lo {
			hi++
		}
		binary.BigEndian.PutUint64(next[8:], lo+step)
		binary.BigEndian.PutUint64(next[:8], hi)
		b = next
	}
	lastID.b = b
	return prefix + idEncoding.EncodeToString(b[:])
}

// lastID is the last id this process made.
var lastID struct {
	sync.Mutex
	b [16]byte
}
