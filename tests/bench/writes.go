package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/conngate/conngate/tests"
)

// writeSetup is one binary's control endpoint with its subscribed gateways,
// measured against another binary's in the writes-only mode.
type writeSetup struct {
	name     string
	control  *proc
	api      *controlAPI
	gateways []*proc
}

// writeRound is one round of one setup: creates, then status changes of
// the connections just created.
type writeRound struct {
	setup            *writeSetup
	creates, changes writeRate
	// CPU per write of the gateways together, of this program (the
	// clients), and of the whole machine (every process, others' too).
	createsCPU, changesCPU otherCPU
}

type otherCPU struct{ gateways, clients, machine float64 }

// cpuSnapshot is the CPU used so far by the gateways, this process and the
// machine.
type cpuSnapshot struct{ gateways, clients, machine time.Duration }

func (s *writeSetup) cpuNow() cpuSnapshot {
	var c cpuSnapshot
	for _, g := range s.gateways {
		c.gateways += g.cpu()
	}
	c.clients = cpuOf("/proc/self/stat")
	c.machine = machineCPU()
	return c
}

// perWrite is the CPU per write between two snapshots, in microseconds.
func (c cpuSnapshot) perWrite(before cpuSnapshot, n int) otherCPU {
	us := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(n) }
	return otherCPU{gateways: us(c.gateways - before.gateways), clients: us(c.clients - before.clients), machine: us(c.machine - before.machine)}
}

// machineCPU is the busy time of every core so far (/proc/stat: user, nice,
// system, irq and softirq; not idle, iowait or time stolen by the host).
func machineCPU() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	var busy int64
	for i, f := range strings.Fields(line)[1:] {
		v, _ := strconv.ParseInt(f, 10, 64)
		if i < 7 && i != 3 && i != 4 { // guest time is already counted in user
			busy += v
		}
	}
	return time.Duration(busy) * time.Second / clockTicks
}

// runWrites is -writes: only the control endpoint's writes through HTTP, for
// the binary of each of -revisions, each with its own store and gateways,
// in alternating rounds.
func runWrites(ctx context.Context, o options) error {
	root, err := repoRoot()
	if err != nil {
		return err
	}
	dir, cleanup, err := benchDir("conngate-bench-writes-", o.keep)
	if err != nil {
		return err
	}
	defer cleanup()
	step := func(format string, args ...any) {
		fmt.Printf("%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}

	type binary struct{ name, path string }
	var bins []binary
	for i, rev := range o.revisions {
		src := root
		if rev != "." {
			src = filepath.Join(dir, fmt.Sprintf("src-%d", i))
			if out, err := exec.CommandContext(ctx, "git", "-C", root, "worktree", "add", "--detach", src, rev).CombinedOutput(); err != nil {
				return fmt.Errorf("checking out %s: %w: %s", rev, err, out)
			}
			defer exec.Command("git", "-C", root, "worktree", "remove", "--force", src).Run()
		}
		b := binary{name: rev, path: filepath.Join(dir, fmt.Sprintf("caddy-%d", i))}
		if rev == "." {
			b.name = "working tree"
		} else if out, err := exec.Command("git", "-C", root, "rev-parse", "--short", rev).Output(); err == nil {
			b.name = strings.TrimSpace(string(out))
		}
		step("building caddy of %s", b.name)
		if err := buildCaddy(ctx, src, b.path); err != nil {
			return err
		}
		bins = append(bins, b)
	}

	adminKey, gatewayKey := randomKey(), randomKey()
	env := tests.IsolatedEnv(dir, "CONNGATE_ADMIN_KEY="+adminKey, "CONNGATE_GATEWAY_KEY="+gatewayKey)
	var setups []*writeSetup
	for i, b := range bins {
		sd := filepath.Join(dir, fmt.Sprintf("writes-%d", i))
		os.MkdirAll(sd, 0o700)
		control, url, err := startControl(sd, env, b.path)
		if err != nil {
			return err
		}
		s := &writeSetup{name: b.name, control: control, api: newControlAPI(url, adminKey)}
		for g := range o.gateways {
			gw, err := startGateway(filepath.Join(sd, fmt.Sprintf("gateway-%d", g)), env, b.path, url, fmt.Sprintf("gw-%d", g))
			if err != nil {
				return err
			}
			s.gateways = append(s.gateways, gw)
		}
		if err := waitGateways(s.api, o.gateways); err != nil {
			return err
		}
		setups = append(setups, s)
	}

	var rounds []writeRound
	for round := range o.rounds {
		for k := range setups {
			s := setups[(k+round)%len(setups)]
			if err := ctx.Err(); err != nil {
				return err
			}
			wr, err := measureWrites(ctx, s, o, round)
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			rounds = append(rounds, wr)
			step("round %d %-14s %5.0f creates/s (CPU us each: control %3.0f, gateways %3.0f, clients %3.0f, machine %4.0f)  %5.0f changes/s (control %3.0f, gateways %3.0f, clients %3.0f, machine %4.0f)",
				round+1, s.name,
				wr.creates.perSecond(), wr.creates.cpuPerWrite(), wr.createsCPU.gateways, wr.createsCPU.clients, wr.createsCPU.machine,
				wr.changes.perSecond(), wr.changes.cpuPerWrite(), wr.changesCPU.gateways, wr.changesCPU.clients, wr.changesCPU.machine)
		}
	}
	fmt.Println()
	fmt.Print(writesMarkdown(setups, rounds, o))
	return nil
}

// measureWrites creates o.toggles connections, then disables and enables
// each; with -profile-dir, a CPU profile of the control endpoint over the
// first -profile-seconds of both phases of the first round is written there.
func measureWrites(ctx context.Context, s *writeSetup, o options, round int) (writeRound, error) {
	profile := func(phase string) (wait func() error) {
		if o.profileDir == "" || round != 0 {
			return func() error { return nil }
		}
		errc := make(chan error, 1)
		path := filepath.Join(o.profileDir, fmt.Sprintf("control-%s-%s.pprof", phase, strings.ReplaceAll(s.name, " ", "-")))
		go func() { errc <- s.control.profile(ctx, o.profileSeconds, path) }()
		return func() error { return <-errc }
	}
	wait := profile("creates")
	cpu0 := s.cpuNow()
	ids, _, creates, err := createConnections(s.api, s.control, o.toggles, o.writers)
	if err != nil {
		return writeRound{}, err
	}
	cpu1 := s.cpuNow()
	if err := wait(); err != nil {
		return writeRound{}, fmt.Errorf("profiling: %w", err)
	}
	wait = profile("changes")
	cpu2 := s.cpuNow()
	changes, err := toggle(s.api, s.control, ids, o.writers)
	if err != nil {
		return writeRound{}, err
	}
	cpu3 := s.cpuNow()
	if err := wait(); err != nil {
		return writeRound{}, fmt.Errorf("profiling: %w", err)
	}
	return writeRound{setup: s, creates: creates, changes: changes,
		createsCPU: cpu1.perWrite(cpu0, creates.n), changesCPU: cpu3.perWrite(cpu2, changes.n)}, nil
}

func writesMarkdown(setups []*writeSetup, rounds []writeRound, o options) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Control endpoint writes through HTTP: %d clients, %d gateways subscribed per control endpoint, %d rounds of %d creates then %d status changes, setups alternating; median (range).\n\n",
		o.writers, o.gateways, o.rounds, o.toggles, 2*o.toggles)
	b.WriteString("| setup | writes | per second | control CPU per write | gateways' | clients' | whole machine's |\n|---|---|---|---|---|---|---|\n")
	for _, s := range setups {
		for _, what := range []string{"creates", "status changes"} {
			var rate, control, gw, cl, machine []float64
			for _, r := range rounds {
				if r.setup != s {
					continue
				}
				w, c := r.creates, r.createsCPU
				if what != "creates" {
					w, c = r.changes, r.changesCPU
				}
				rate, control = append(rate, w.perSecond()), append(control, w.cpuPerWrite())
				gw, cl, machine = append(gw, c.gateways), append(cl, c.clients), append(machine, c.machine)
			}
			fmt.Fprintf(&b, "| %s | %s | **%.0f** (%.0f-%.0f) | %.0f us | %.0f us | %.0f us | %.0f us |\n", s.name, what,
				median(rate), minOf(rate), maxOf(rate), median(control), median(gw), median(cl), median(machine))
		}
	}
	return b.String()
}

func (w writeRate) cpuPerWrite() float64 { return float64(w.cpu.Microseconds()) / float64(w.n) }

func minOf(xs []float64) float64 {
	m := xs[0]
	for _, x := range xs {
		m = min(m, x)
	}
	return m
}

func maxOf(xs []float64) float64 {
	m := xs[0]
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

func buildCaddy(ctx context.Context, src, out string) error {
	build := exec.CommandContext(ctx, "go", "build", "-o", out, "./xcaddy")
	build.Dir, build.Stdout, build.Stderr = src, os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("building caddy in %s: %w", src, err)
	}
	return nil
}

// startGateway starts a Caddy whose connection_gate subscribes to the
// control endpoint's change stream as gatewayID; it serves no traffic here.
func startGateway(site string, env []string, bin, controlURL, gatewayID string) (*proc, error) {
	port, adminPort := freePort(), freePort()
	os.MkdirAll(site, 0o700)
	caddyfile := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
}
:%d {
	bind 127.0.0.1
	route {
		connection_gate {
			control_url %s
			control_key {env.CONNGATE_GATEWAY_KEY}
			gateway_id %s
		}
		respond "ok"
	}
}
`, adminPort, port, controlURL, gatewayID)
	if err := os.WriteFile(filepath.Join(site, "Caddyfile"), []byte(caddyfile), 0o600); err != nil {
		return nil, err
	}
	p, err := start(gatewayID, site, env, bin, "run", "--config", "Caddyfile", "--adapter", "caddyfile")
	if err != nil {
		return nil, err
	}
	p.admin = fmt.Sprintf("127.0.0.1:%d", adminPort)
	return p, p.waitReady("http://" + p.admin + "/config/")
}
