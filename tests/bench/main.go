// Command bench is the load benchmark: what does connection_gate cost next
// to plain Caddy? It builds the Caddy binary once, starts on loopback a small
// upstream, a control endpoint (bolt store), plain reverse_proxy, the gate
// with EdDSA tokens (from the control endpoint) and with RS256 tokens (via
// public_key), and forward_auth to a small caching authorizer, then drives
// them with wrk in alternating rounds with distinct tokens from pools of
// 10,000 and 100,000, and writes the figures into docs/PERFORMANCE.md and a
// chart. Every process it starts is stopped at the end, or on Ctrl-C.
//
//	go run ./tests/bench                  # the full run, about 8 minutes; writes docs/
//	go run ./tests/bench -smoke           # a few seconds of everything, writes nothing (CI)
//	go run ./tests/bench -writes -revisions HEAD~3,. -rounds 5 -toggles 3000
//	                                      # control endpoint writes only, two builds side by side
//
// It needs wrk (apt-get install wrk).
package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/conngate/conngate/tests"
)

type options struct {
	smoke      bool
	pools      []int
	rounds     int
	duration   time.Duration
	threads    int
	conns      int
	writers    int
	toggles    int
	doc        string
	chart      string
	profileDir string
	keep       bool

	writesOnly     bool
	revisions      []string
	gateways       int
	profileSeconds int
}

func main() {
	if len(os.Args) > 1 && !strings.HasPrefix(os.Args[1], "-") {
		os.Exit(child(os.Args[1], os.Args[2:]))
	}
	var o options
	var pools string
	flag.BoolVar(&o.smoke, "smoke", false, "a few seconds of everything with small pools; writes no files unless -doc/-chart are given")
	flag.StringVar(&pools, "pools", "10000,100000", "token pool sizes, comma-separated")
	flag.IntVar(&o.rounds, "rounds", 3, "alternating rounds per pool")
	flag.DurationVar(&o.duration, "duration", 6*time.Second, "length of one wrk run")
	flag.IntVar(&o.threads, "threads", 2, "wrk threads")
	flag.IntVar(&o.conns, "conns", 64, "wrk connections")
	flag.IntVar(&o.writers, "writers", 8, "concurrent clients for the control endpoint's writes")
	flag.IntVar(&o.toggles, "toggles", 10000, "connections disabled and enabled again in the status change benchmark")
	flag.StringVar(&o.doc, "doc", "docs/PERFORMANCE.md", "document whose load benchmark section is rewritten")
	flag.StringVar(&o.chart, "chart", "docs/load-benchmark.png", "PNG chart written")
	flag.StringVar(&o.profileDir, "profile-dir", "", "if set, one extra round per gate setup and pool with a CPU profile of its Caddy written here")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (logs, store)")
	flag.BoolVar(&o.writesOnly, "writes", false, "only the control endpoint's writes through HTTP: -rounds rounds of -toggles creates and 2x -toggles status changes from -writers clients")
	var revisions string
	flag.StringVar(&revisions, "revisions", ".", "with -writes, comma-separated git revisions whose binaries are measured side by side in alternating rounds; . is the working tree")
	flag.IntVar(&o.gateways, "gateways", 2, "with -writes, gateways subscribed to each control endpoint's change stream")
	flag.IntVar(&o.profileSeconds, "profile-seconds", 5, "with -writes and -profile-dir, length of each control endpoint profile")
	flag.Parse()
	for _, p := range strings.Split(pools, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 1 {
			fmt.Fprintln(os.Stderr, "bad -pools:", pools)
			os.Exit(2)
		}
		o.pools = append(o.pools, n)
	}
	slices.Sort(o.pools)
	o.revisions = strings.Split(revisions, ",")
	if o.smoke {
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		o.pools, o.rounds, o.duration, o.toggles = []int{300}, 1, time.Second, 100
		if !set["doc"] {
			o.doc = ""
		}
		if !set["chart"] {
			o.chart = ""
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if o.writesOnly {
		err = runWrites(ctx, o)
	} else {
		err = run(ctx, o)
	}
	stopAll()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// child runs one of the small servers this program starts as processes of
// their own, so that their CPU is measured apart.
func child(mode string, args []string) int {
	var err error
	switch mode {
	case "upstream":
		err = serveUpstream(args[0])
	case "authorizer":
		err = serveAuthorizer(args[0], args[1], args[2], os.Getenv("BENCH_CONTROL_KEY"))
	default:
		err = fmt.Errorf("unknown mode %q", mode)
	}
	fmt.Fprintln(os.Stderr, err)
	return 1
}

// setup is one way of serving the API, measured against the others.
type setup struct {
	name  string
	caddy *proc
	peers []*proc // other processes on its request path (upstream, authorizer)
	url   string
	alg   string // which token pool it is driven with
}

func randomKey() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func repoRoot() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return "", fmt.Errorf("finding the module root: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

func run(ctx context.Context, o options) error {
	if _, err := exec.LookPath("wrk"); err != nil {
		return errors.New("wrk not found: apt-get install -y wrk")
	}
	root, err := repoRoot()
	if err != nil {
		return err
	}
	dir, cleanup, err := benchDir("conngate-bench-", o.keep)
	if err != nil {
		return err
	}
	defer cleanup()
	self, err := os.Executable()
	if err != nil {
		return err
	}

	step := func(format string, args ...any) {
		fmt.Printf("%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}
	step("building caddy")
	bin := filepath.Join(dir, "caddy")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./xcaddy")
	build.Dir, build.Stdout, build.Stderr = root, os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("building caddy: %w", err)
	}

	adminKey, gatewayKey := randomKey(), randomKey()
	env := tests.IsolatedEnv(dir, "CONNGATE_ADMIN_KEY="+adminKey, "CONNGATE_GATEWAY_KEY="+gatewayKey, "BENCH_CONTROL_KEY="+gatewayKey)

	upPort := freePort()
	upstream, err := start("upstream", dir, env, self, "upstream", fmt.Sprintf("127.0.0.1:%d", upPort))
	if err != nil {
		return err
	}
	if err := upstream.waitReady(fmt.Sprintf("http://127.0.0.1:%d/", upPort)); err != nil {
		return err
	}

	control, controlURL, err := startControl(dir, env, bin)
	if err != nil {
		return err
	}
	signer, err := newRSASigner(filepath.Join(dir, "rs256.pem"))
	if err != nil {
		return err
	}
	authzPort := freePort()
	authz, err := start("authorizer", dir, env, self, "authorizer", fmt.Sprintf("127.0.0.1:%d", authzPort), signer.pemPath, controlURL)
	if err != nil {
		return err
	}

	setups := []*setup{
		{name: "plain reverse_proxy", alg: "RS256", peers: []*proc{upstream}},
		{name: "gate, EdDSA", alg: "EdDSA", peers: []*proc{upstream}},
		{name: "gate, RS256", alg: "RS256", peers: []*proc{upstream}},
		{name: "forward_auth", alg: "RS256", peers: []*proc{upstream, authz}},
	}
	proxy := fmt.Sprintf(`reverse_proxy 127.0.0.1:%d {
		transport http {
			keepalive_idle_conns_per_host 128
		}
	}`, upPort)
	gate := func(id, extra string) string {
		return fmt.Sprintf(`connection_gate {
		control_url %s
		control_key {env.CONNGATE_GATEWAY_KEY}
		gateway_id %s%s
	}
	`, controlURL, id, extra)
	}
	handlers := []string{
		proxy,
		gate("bench-eddsa", "") + proxy,
		gate("bench-rs256", "\n\t\tpublic_key "+signer.pemPath+"\n\t\talgorithms RS256") + proxy,
		fmt.Sprintf(`forward_auth 127.0.0.1:%d {
		uri /auth
		copy_headers X-Connection-Id
		transport http {
			keepalive_idle_conns_per_host 128
		}
	}
	`, authzPort) + proxy,
	}
	for i, s := range setups {
		port, adminPort := freePort(), freePort()
		site := filepath.Join(dir, fmt.Sprintf("setup-%d", i))
		os.MkdirAll(site, 0o700)
		caddyfile := fmt.Sprintf("{\n\tadmin 127.0.0.1:%d\n\tpersist_config off\n}\n:%d {\n\tbind 127.0.0.1\n\t%s\n}\n", adminPort, port, handlers[i])
		if err := os.WriteFile(filepath.Join(site, "Caddyfile"), []byte(caddyfile), 0o600); err != nil {
			return err
		}
		s.caddy, err = start(s.name, site, env, bin, "run", "--config", "Caddyfile", "--adapter", "caddyfile")
		if err != nil {
			return err
		}
		s.caddy.admin = fmt.Sprintf("127.0.0.1:%d", adminPort)
		s.url = fmt.Sprintf("http://127.0.0.1:%d/data", port)
		if err := s.caddy.waitReady("http://" + s.caddy.admin + "/config/"); err != nil {
			return err
		}
	}
	api := newControlAPI(controlURL, adminKey)
	if err := waitGateways(api, 2); err != nil {
		return err
	}

	r := &report{opts: o, started: time.Now(), setups: setups}
	r.memory = append(r.memory, measureMemory(0, setups))

	maxPool := o.pools[len(o.pools)-1]
	step("creating %d connections from %d clients", maxPool, o.writers)
	profiled := make(chan error, 1)
	if o.profileDir != "" {
		// The control endpoint's CPU while it creates: the first 10 s.
		go func() { profiled <- control.profile(ctx, 10, filepath.Join(o.profileDir, "control-creates.pprof")) }()
	}
	ids, edTokens, rate, err := createConnections(api, control, maxPool, o.writers)
	if err != nil {
		return err
	}
	if o.profileDir != "" {
		if err := <-profiled; err != nil {
			return fmt.Errorf("profiling the control endpoint: %w", err)
		}
	}
	r.writes = append(r.writes, rate)
	step("  %.0f creates/s", rate.perSecond())
	step("disabling and enabling %d connections from %d clients", min(o.toggles, maxPool), o.writers)
	rate, err = toggle(api, control, ids[:min(o.toggles, maxPool)], o.writers)
	if err != nil {
		return err
	}
	r.writes = append(r.writes, rate)
	step("  %.0f status changes/s", rate.perSecond())
	rate, err = toggle(api, control, ids[:min(o.toggles, maxPool)], 1)
	if err != nil {
		return err
	}
	r.writes = append(r.writes, rate)
	step("  %.0f status changes/s from one client", rate.perSecond())

	step("signing %d RS256 tokens", maxPool)
	rsTokens, err := signer.sign(ids)
	if err != nil {
		return err
	}
	tokens := map[string][]string{"EdDSA": edTokens, "RS256": rsTokens}
	script := filepath.Join(dir, "tokens.lua")
	if err := os.WriteFile(script, []byte(wrkScript), 0o600); err != nil {
		return err
	}
	tokenFile := func(alg string, pool int) string { return filepath.Join(dir, fmt.Sprintf("%s-%d.txt", alg, pool)) }
	for _, pool := range o.pools {
		for alg, list := range tokens {
			if err := writeLines(tokenFile(alg, pool), list[:pool]); err != nil {
				return err
			}
		}
	}

	seen := 0
	for pi, pool := range o.pools {
		if err := ctx.Err(); err != nil {
			return err
		}
		if pi == 0 {
			// The first pass over the first pool meets every token for the
			// first time: the cold path.
			for _, s := range setups {
				step("cold pass, %s, %d tokens", s.name, pool)
				c, err := coldAndWarm(s, control, tokens[s.alg][:pool], o.conns)
				if err != nil {
					return err
				}
				r.cold = append(r.cold, c)
			}
		} else {
			for _, s := range setups[1:] {
				step("warming %s with tokens %d to %d", s.name, seen, pool)
				if _, err := pass(s.url, tokens[s.alg][seen:pool], o.conns); err != nil {
					return err
				}
			}
		}
		seen = pool
		r.memory = append(r.memory, measureMemory(pool, setups))
		for round := range o.rounds {
			for k := range setups {
				s := setups[(k+round)%len(setups)]
				if err := ctx.Err(); err != nil {
					return err
				}
				res, err := measureRound(s, script, tokenFile(s.alg, pool), o)
				if err != nil {
					return fmt.Errorf("%s, pool %d: %w", s.name, pool, err)
				}
				res.pool, res.round = pool, round
				r.rounds = append(r.rounds, res)
				step("pool %d round %d %-20s %8.0f req/s  p99 %v", pool, round+1, s.name, res.wrk.rps(), res.wrk.p99)
			}
		}
		if o.profileDir != "" {
			for _, s := range setups[1:3] {
				path := filepath.Join(o.profileDir, fmt.Sprintf("%s-%d.pprof", strings.NewReplacer(", ", "-", " ", "-").Replace(s.name), pool))
				errc := make(chan error, 1)
				go func() { errc <- s.caddy.profile(ctx, int(o.duration.Seconds()), path) }()
				if _, err := runWrk(script, s.url, tokenFile(s.alg, pool), o.threads, o.conns, o.duration+time.Second); err != nil {
					return err
				}
				if err := <-errc; err != nil {
					return fmt.Errorf("profiling %s: %w", s.name, err)
				}
				step("profile written: %s", path)
			}
		}
	}
	r.finished = time.Now()

	fmt.Println()
	fmt.Println(r.markdown())
	if o.doc != "" {
		if err := r.writeDoc(inRepo(root, o.doc)); err != nil {
			return err
		}
		step("wrote %s", o.doc)
	}
	if o.chart != "" {
		if err := r.writeChart(inRepo(root, o.chart)); err != nil {
			return err
		}
		step("wrote %s", o.chart)
	}
	return nil
}

func startControl(dir string, env []string, bin string) (*proc, string, error) {
	port, adminPort := freePort(), freePort()
	site := filepath.Join(dir, "control")
	os.MkdirAll(site, 0o700)
	caddyfile := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
}
:%d {
	bind 127.0.0.1
	connection_control {
		store bolt %s
		api_key admin {env.CONNGATE_ADMIN_KEY}
		api_key gateway {env.CONNGATE_GATEWAY_KEY}
		token_lifetime 24h
	}
}
`, adminPort, port, filepath.Join(dir, "conngate.db"))
	if err := os.WriteFile(filepath.Join(site, "Caddyfile"), []byte(caddyfile), 0o600); err != nil {
		return nil, "", err
	}
	p, err := start("control", site, env, bin, "run", "--config", "Caddyfile", "--adapter", "caddyfile")
	if err != nil {
		return nil, "", err
	}
	p.admin = fmt.Sprintf("127.0.0.1:%d", adminPort)
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	return p, url, p.waitReady(url + "/.well-known/jwks.json")
}

func waitGateways(api *controlAPI, n int) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		var list struct {
			Gateways []struct{ ID string } `json:"gateways"`
		}
		err := api.do(http.MethodGet, "/v1/gateways", nil, &list)
		if err == nil && len(list.Gateways) >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gateways did not subscribe to the change stream: %v %v", list, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// roundResult is one wrk run of one setup, with the CPU every process of
// the setup used meanwhile.
type roundResult struct {
	setup        *setup
	pool, round  int
	wrk          wrkResult
	caddyCPU     time.Duration
	peerCPU      []time.Duration
	controlDelta time.Duration
}

func measureRound(s *setup, script, tokenFile string, o options) (roundResult, error) {
	cpu0 := s.caddy.cpu()
	peers0 := make([]time.Duration, len(s.peers))
	for i, p := range s.peers {
		peers0[i] = p.cpu()
	}
	res, err := runWrk(script, s.url, tokenFile, o.threads, o.conns, o.duration)
	if err != nil {
		return roundResult{}, err
	}
	rr := roundResult{setup: s, wrk: res, caddyCPU: s.caddy.cpu() - cpu0}
	for i, p := range s.peers {
		rr.peerCPU = append(rr.peerCPU, p.cpu()-peers0[i])
	}
	return rr, nil
}

// coldResult compares the first pass over never-seen tokens with a second,
// warm pass over the same tokens.
type coldResult struct {
	setup        *setup
	tokens       int
	cold, warm   time.Duration
	controlCPU   time.Duration
	lookups      float64 // from the gate's metrics; -1 when it has none
	caddyCPUCold time.Duration
}

func coldAndWarm(s *setup, control *proc, tokens []string, conns int) (coldResult, error) {
	c := coldResult{setup: s, tokens: len(tokens)}
	lookups0 := s.caddy.metric("conngate_control_lookups_total")
	ctl0, cpu0 := control.cpu(), s.caddy.cpu()
	var err error
	if c.cold, err = pass(s.url, tokens, conns); err != nil {
		return c, err
	}
	c.controlCPU, c.caddyCPUCold = control.cpu()-ctl0, s.caddy.cpu()-cpu0
	if l := s.caddy.metric("conngate_control_lookups_total"); l >= 0 {
		c.lookups = l - max(lookups0, 0)
	} else {
		c.lookups = -1
	}
	c.warm, err = pass(s.url, tokens, conns)
	return c, err
}

// memoryPoint is every Caddy's memory once it has seen entries tokens.
type memoryPoint struct {
	entries int
	rss     map[*setup]int64
	heap    map[*setup]int64
}

func measureMemory(entries int, setups []*setup) memoryPoint {
	m := memoryPoint{entries: entries, rss: map[*setup]int64{}, heap: map[*setup]int64{}}
	for _, s := range setups {
		h, err := s.caddy.heapAfterGC()
		if err != nil {
			h = -1
		}
		m.heap[s] = h
		m.rss[s] = s.caddy.rss()
	}
	return m
}

func median[T cmp.Ordered](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		var zero T
		return zero
	}
	return s[len(s)/2]
}

// inRepo is path as given when absolute, else relative to the repository's
// root (the defaults name files in it wherever the program is run from).
func inRepo(root, path string) string {
	if filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(root, path)
}

// benchDir makes the run's temporary directory (logs, stores), removed by
// cleanup unless keep is set, when its path is printed instead.
func benchDir(prefix string, keep bool) (dir string, cleanup func(), err error) {
	dir, err = os.MkdirTemp("", prefix)
	if err != nil {
		return "", nil, err
	}
	if keep {
		fmt.Println("temporary directory:", dir)
		return dir, func() {}, nil
	}
	return dir, func() { os.RemoveAll(dir) }, nil
}
