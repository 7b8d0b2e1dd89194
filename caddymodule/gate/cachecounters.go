package gate

// countersPerEntry is how many of ristretto's admission counters (its
// TinyLFU frequency sketch and doorkeeper) each cache keeps per entry that
// fits. Ristretto's documentation suggests 10. They are allocated up front,
// used or not: at the default 1,000,000 statuses, ten per entry (rounded up
// to a power of two: 16.8 million) took 52 MiB of an idle gateway's 57 MiB
// of caches, and once the process allocates, Go's GC lets the heap grow to
// twice what is live, so they cost twice that in RSS. The counters only
// decide what a full cache admits and evicts: a cache that is not full
// keeps everything either way. Full, BenchmarkStatusCacheHitRatio measures
// the hit ratio at 4 per entry 0.2 to 1.6 points below 10 per entry
// (0.936 against 0.938 at Zipf 1.2, 0.749 against 0.765 at Zipf 1.01),
// each miss one lookup at the control endpoint; the empty default caches
// take 20 MiB instead of 57.
const countersPerEntry = 4

// cacheCounters is ristretto's NumCounters for a cache of entries entries.
func cacheCounters(entries int64) int64 {
	return max(entries*countersPerEntry, 1000)
}
