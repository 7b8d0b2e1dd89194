package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one process the benchmark started; every one is stopped by
// stopAll, whatever happens.
type proc struct {
	name  string
	cmd   *exec.Cmd
	log   *lockedBuffer
	admin string // Caddy admin address (pprof, expvar, metrics); empty for others
}

var (
	procsMu sync.Mutex
	procs   []*proc
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 1<<20 {
		return len(p), nil // enough to see what went wrong
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// start runs name with args in dir and registers it for stopAll.
func start(name, dir string, env []string, bin string, args ...string) (*proc, error) {
	p := &proc{name: name, log: &lockedBuffer{}}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir, p.cmd.Env = dir, env
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	// Its own process group: a Ctrl-C on the benchmark reaches only us, and
	// we stop the children ourselves.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	procsMu.Lock()
	procs = append(procs, p)
	procsMu.Unlock()
	return p, nil
}

// stopAll sends SIGTERM to every started process, and SIGKILL to those still
// running 10 s later.
func stopAll() {
	procsMu.Lock()
	defer procsMu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { p.cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				p.cmd.Process.Kill()
				<-done
			}
		}()
	}
	wg.Wait()
	procs = nil
}

// waitReady polls url until it answers 200 or the process dies.
func (p *proc) waitReady(url string) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready at %s: %v\n%s", p.name, url, err, p.log)
		}
		if p.exited() {
			return fmt.Errorf("%s exited:\n%s", p.name, p.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *proc) exited() bool {
	// Signal 0 checks existence without touching the process.
	return p.cmd.Process.Signal(syscall.Signal(0)) != nil
}

// cpu returns the user+system CPU time the process has used so far.
func (p *proc) cpu() time.Duration {
	return cpuOf(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
}

// cpuOf reads the user+system CPU time from a /proc/<pid>/stat file.
func cpuOf(statFile string) time.Duration {
	b, err := os.ReadFile(statFile)
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / clockTicks
}

// clockTicks is USER_HZ, 100 on every Linux this runs on.
const clockTicks = 100

// rss returns the resident set size in bytes.
func (p *proc) rss() int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// heapAfterGC asks a Caddy process to collect garbage (pprof's heap profile
// with gc=1) and returns its live heap (expvar's memstats.HeapAlloc).
func (p *proc) heapAfterGC() (int64, error) {
	if p.admin == "" {
		return 0, fmt.Errorf("%s has no admin endpoint", p.name)
	}
	resp, err := http.Get("http://" + p.admin + "/debug/pprof/heap?gc=1")
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	resp, err = http.Get("http://" + p.admin + "/debug/vars")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var vars struct {
		Memstats struct {
			HeapAlloc int64 `json:"HeapAlloc"`
		} `json:"memstats"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&vars); err != nil {
		return 0, fmt.Errorf("reading %s expvar: %w", p.name, err)
	}
	return vars.Memstats.HeapAlloc, nil
}

// metric returns the sum of a Prometheus counter's series from the admin
// endpoint's /metrics, -1 when absent.
func (p *proc) metric(name string) float64 {
	resp, err := http.Get("http://" + p.admin + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	sum, found := 0.0, false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, name+"{") || strings.HasPrefix(line, name+" ") {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err == nil {
				sum, found = sum+v, true
			}
		}
	}
	if !found {
		return -1
	}
	return sum
}

// profile writes a CPU profile of seconds to path while the caller drives load.
func (p *proc) profile(ctx context.Context, seconds int, path string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", p.admin, seconds), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
