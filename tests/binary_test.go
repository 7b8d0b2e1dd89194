package tests

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// caddyBin is the binary built once for the whole package by TestMain.
var caddyBin string

func TestMain(m *testing.M) {
	if os.Getenv(holdStreamsEnv) != "" {
		os.Exit(holdStreams()) // a helper process of a benchmark, not a test run
	}
	dir, err := os.MkdirTemp("", "conngate-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	caddyBin = filepath.Join(dir, "caddy")
	build := exec.Command("go", "build", "-o", caddyBin, "./xcaddy")
	build.Dir = ".."
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building caddy:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// caddyProcess is one running `caddy run`.
type caddyProcess struct {
	cmd *exec.Cmd
	log *bytes.Buffer
}

// runCaddy runs a caddy subcommand to completion in dir and returns its output.
func runCaddy(t *testing.T, dir string, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(caddyBin, args...)
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// startCaddy runs `caddy run` on the Caddyfile in dir and waits until ready
// answers 200. The process is stopped when the test ends. When ready is a
// control endpoint's JWKS, the test's answers from that endpoint are checked
// against the OpenAPI document (openapi_contract_test.go).
func startCaddy(t testing.TB, dir string, env []string, ready string) *caddyProcess {
	t.Helper()
	watchControl(t, ready)
	p := &caddyProcess{log: new(bytes.Buffer)}
	p.cmd = exec.Command(caddyBin, "run", "--config", "Caddyfile", "--adapter", "caddyfile")
	p.cmd.Dir, p.cmd.Env = dir, env
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !p.stop() {
			t.Error("caddy did not exit within 10s of SIGTERM (open change streams must not hold up shutdown)")
		}
		if t.Failed() {
			t.Logf("caddy log:\n%s", p.log)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(ready)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) || p.cmd.ProcessState != nil {
			t.Fatalf("caddy did not become ready at %s: %v\n%s", ready, err, p.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits; it kills the process after 10 s and then
// reports false.
func (p *caddyProcess) stop() (graceful bool) {
	if p.cmd.ProcessState != nil {
		return true
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-done
		return false
	}
}

// writeSite writes caddyfile as dir/Caddyfile, creating dir.
func writeSite(t testing.TB, dir, caddyfile string) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "Caddyfile"), []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
}
