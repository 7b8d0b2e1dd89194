package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"
)

// report is everything one run measured.
type report struct {
	opts              options
	started, finished time.Time
	setups            []*setup
	rounds            []roundResult
	cold              []coldResult
	memory            []memoryPoint
	writes            []writeRate
}

// Markers around the generated part of the document; what is outside them
// is written by people.
const (
	beginMarker = "<!-- load-benchmark:begin (written by go run ./tests/bench) -->"
	endMarker   = "<!-- load-benchmark:end -->"
)

// summary is one setup at one pool size, over the rounds.
type summary struct {
	rps, p99                 float64 // medians, absolute
	ratio, p99Ratio          float64 // medians of the per-round ratios to plain
	ratioMin, ratioMax       float64
	p99RatioMin, p99RatioMax float64
	caddyUS                  float64   // median CPU per request of the setup's Caddy, microseconds
	peerUS                   []float64 // same for each peer process
}

func (r *report) summarize(s *setup, pool int) summary {
	plain := map[int]roundResult{}
	var mine []roundResult
	for _, rr := range r.rounds {
		if rr.pool != pool {
			continue
		}
		if rr.setup == r.setups[0] {
			plain[rr.round] = rr
		}
		if rr.setup == s {
			mine = append(mine, rr)
		}
	}
	var sum summary
	var rps, p99, ratio, p99Ratio, caddy []float64
	peers := make([][]float64, len(s.peers))
	for _, rr := range mine {
		rps = append(rps, rr.wrk.rps())
		p99 = append(p99, float64(rr.wrk.p99.Microseconds()))
		ratio = append(ratio, rr.wrk.rps()/plain[rr.round].wrk.rps())
		p99Ratio = append(p99Ratio, float64(rr.wrk.p99)/float64(plain[rr.round].wrk.p99))
		caddy = append(caddy, float64(rr.caddyCPU.Microseconds())/float64(rr.wrk.requests))
		for i, d := range rr.peerCPU {
			peers[i] = append(peers[i], float64(d.Microseconds())/float64(rr.wrk.requests))
		}
	}
	if len(mine) == 0 {
		return sum
	}
	sum.rps, sum.p99, sum.ratio, sum.p99Ratio, sum.caddyUS = median(rps), median(p99), median(ratio), median(p99Ratio), median(caddy)
	sum.ratioMin, sum.ratioMax = minMax(ratio)
	sum.p99RatioMin, sum.p99RatioMax = minMax(p99Ratio)
	for _, p := range peers {
		sum.peerUS = append(sum.peerUS, median(p))
	}
	return sum
}

func minMax(xs []float64) (lo, hi float64) {
	lo, hi = xs[0], xs[0]
	for _, x := range xs {
		lo, hi = min(lo, x), max(hi, x)
	}
	return lo, hi
}

func mib(b int64) string {
	if b < 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}

func (r *report) markdown() string {
	var b strings.Builder
	o := r.opts
	fmt.Fprintf(&b, "Run of %s, %d cores, %s: %d rounds of %v per setup and pool, wrk %d threads / %d connections, setups alternating (each round starts with the next one), the same upstream transport (`keepalive_idle_conns_per_host 128`) everywhere.\n\n",
		r.started.Format("2006-01-02 15:04"), runtime.NumCPU(), r.finished.Sub(r.started).Round(time.Second), o.rounds, o.duration, o.threads, o.conns)
	for _, pool := range o.pools {
		fmt.Fprintf(&b, "**%d distinct tokens** (each request the next token of the pool; every token verified and its status cached in a warm-up pass before the rounds)\n\n", pool)
		b.WriteString("| setup | req/s (median) | ratio to plain (median, range) | p99 | p99 ratio (median, range) | Caddy CPU per request | upstream CPU per request | authorizer CPU per request |\n|---|---|---|---|---|---|---|---|\n")
		for _, s := range r.setups {
			m := r.summarize(s, pool)
			authz := "-"
			if len(m.peerUS) > 1 {
				authz = fmt.Sprintf("%.0f us", m.peerUS[1])
			}
			up := "-"
			if len(m.peerUS) > 0 {
				up = fmt.Sprintf("%.0f us", m.peerUS[0])
			}
			fmt.Fprintf(&b, "| %s | %.0f | **%.3f** (%.3f-%.3f) | %.2f ms | **%.2f** (%.2f-%.2f) | %.0f us | %s | %s |\n",
				s.name, m.rps, m.ratio, m.ratioMin, m.ratioMax, m.p99/1000, m.p99Ratio, m.p99RatioMin, m.p99RatioMax, m.caddyUS, up, authz)
		}
		b.WriteString("\n")
	}

	if len(r.cold) > 0 {
		fmt.Fprintf(&b, "**Cold path**: one request with each of %d never-seen tokens (Go client, %d connections), then a second, warm pass over the same tokens with the same client.\n\n", r.cold[0].tokens, o.conns)
		b.WriteString("| setup | cold req/s | warm req/s | Caddy CPU per cold request | status lookups | control CPU per lookup |\n|---|---|---|---|---|---|\n")
		for _, c := range r.cold {
			lookups, perLookup := "-", "-"
			if c.lookups >= 0 {
				lookups = fmt.Sprintf("%.0f", c.lookups)
			}
			if c.setup != r.setups[0] {
				n := c.lookups
				if n <= 0 {
					n = float64(c.tokens)
				}
				perLookup = fmt.Sprintf("%.0f us", float64(c.controlCPU.Microseconds())/n)
			}
			fmt.Fprintf(&b, "| %s | %.0f | %.0f | %.0f us | %s | %s |\n", c.setup.name,
				float64(c.tokens)/c.cold.Seconds(), float64(c.tokens)/c.warm.Seconds(),
				float64(c.caddyCPUCold.Microseconds())/float64(c.tokens), lookups, perLookup)
		}
		b.WriteString("\n")
	}

	b.WriteString("**Memory** of each Caddy process: RSS, and live heap after a forced GC (pprof `heap?gc=1`, then expvar `HeapAlloc`), once it has seen N distinct tokens (and so holds N verified tokens and N statuses, for the gates).\n\n")
	b.WriteString("| setup |")
	for _, m := range r.memory {
		fmt.Fprintf(&b, " RSS at %d | heap at %d |", m.entries, m.entries)
	}
	b.WriteString(" heap per token and status at the largest pool |\n|---|")
	for range r.memory {
		b.WriteString("---|---|")
	}
	b.WriteString("---|\n")
	for _, s := range r.setups {
		fmt.Fprintf(&b, "| %s |", s.name)
		for _, m := range r.memory {
			fmt.Fprintf(&b, " %s | %s |", mib(m.rss[s]), mib(m.heap[s]))
		}
		first, last := r.memory[0], r.memory[len(r.memory)-1]
		per := "-"
		if last.entries > 0 && last.heap[s] >= 0 && first.heap[s] >= 0 {
			per = fmt.Sprintf("%.0f B (RSS: %.0f B)", float64(last.heap[s]-first.heap[s])/float64(last.entries), float64(last.rss[s]-first.rss[s])/float64(last.entries))
		}
		fmt.Fprintf(&b, " %s |\n", per)
	}
	b.WriteString("\n")

	b.WriteString("**Control endpoint writes** (bolt store; each change durable before its answer; the two gateways subscribed to the change stream meanwhile)\n\n")
	b.WriteString("| writes | clients | count | per second | control CPU per write |\n|---|---|---|---|---|\n")
	for _, w := range r.writes {
		fmt.Fprintf(&b, "| %s | %d | %d | **%.0f** | %.0f us |\n", w.what, w.clients, w.n, w.perSecond(), float64(w.cpu.Microseconds())/float64(w.n))
	}
	return b.String()
}

// writeDoc replaces the generated section of path (between the markers),
// or appends one.
func (r *report) writeDoc(path string) error {
	old, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	body := beginMarker + "\n\n" + r.markdown() + "\n" + endMarker
	doc := string(old)
	i, j := strings.Index(doc, beginMarker), strings.Index(doc, endMarker)
	if i >= 0 && j > i {
		doc = doc[:i] + body + doc[j+len(endMarker):]
	} else {
		doc = strings.TrimRight(doc, "\n") + "\n\n" + body + "\n"
	}
	return os.WriteFile(path, []byte(doc), 0o644)
}
