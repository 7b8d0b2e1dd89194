package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// codeBlockAfter returns the first fenced code block after heading.
func codeBlockAfter(t *testing.T, doc, heading string) string {
	t.Helper()
	_, rest, ok := strings.Cut(doc, heading)
	if !ok {
		t.Fatalf("README has no %q", heading)
	}
	_, rest, _ = strings.Cut(rest, "```sh\n")
	block, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatalf("no code block after %q", heading)
	}
	return block
}

// CI must run exactly the README's test command.
func TestCIRunsTheREADMETestCommand(t *testing.T) {
	cmd := strings.TrimSpace(codeBlockAfter(t, readFile(t, "../README.md"), "## Run the tests"))
	if !strings.Contains(readFile(t, "../.ci/run"), "\n"+cmd+"\n") {
		t.Fatalf(".ci/run does not run the README's test command %q", cmd)
	}
}

// Every subdirective the Caddyfile parsers accept is in the README reference.
func TestREADMEDocumentsEverySubdirective(t *testing.T) {
	readme := readFile(t, "../README.md")
	caseLabel := regexp.MustCompile(`case ((?:"[a-z_]+",? ?)+):`)
	for _, file := range []string{"../caddymodule/gate/caddyfile.go", "../caddymodule/control/caddyfile.go"} {
		src := readFile(t, file)
		matches := caseLabel.FindAllStringSubmatch(src, -1)
		if len(matches) < 5 {
			t.Fatalf("%s: found only %d subdirectives; has the parser changed shape?", file, len(matches))
		}
		for _, m := range matches {
			for _, name := range regexp.MustCompile(`"([a-z_]+)"`).FindAllStringSubmatch(m[1], -1) {
				if !strings.Contains(readme, "| `"+name[1]) {
					t.Errorf("%s: subdirective %s is not in the README reference table", filepath.Base(filepath.Dir(file)), name[1])
				}
			}
		}
	}
}

// The README's curl walk-through, run as written (ports moved to the test's
// instance), gives the statuses it promises.
func TestREADMEWalkthroughRunsAsWritten(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is needed to run the README walk-through; .ci/run installs it")
	}
	script := codeBlockAfter(t, readFile(t, "../README.md"), "### Walk-through")
	d := newDemo(t)
	d.start(t)
	script = strings.NewReplacer("http://127.0.0.1:9180", d.control, "http://127.0.0.1:8080", d.gateway).Replace(script)
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	cmd.Dir, cmd.Env = d.dir, append(d.env, "PATH="+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("walk-through failed: %v\n%s", err, out)
	}
	var statuses []string
	for _, m := range regexp.MustCompile(`(?m)^HTTP/1\.1 (\d{3})`).FindAllStringSubmatch(string(out), -1) {
		statuses = append(statuses, m[1])
	}
	want := []string{"200", "401", "200", "401", "409"}
	if strings.Join(statuses, " ") != strings.Join(want, " ") {
		t.Fatalf("statuses %v, want %v\n%s", statuses, want, out)
	}
	for _, reason := range []string{"connection_disabled", "connection_deleted", `"error":"connection_deleted"`} {
		if !strings.Contains(string(out), reason) {
			t.Errorf("walk-through output lacks %s", reason)
		}
	}
}

// Every Caddyfile in the README without <placeholders> is one the real
// binary accepts: a whole config, or directives (wrapped in a site block).
func TestREADMECaddyfilesAdapt(t *testing.T) {
	blocks := regexp.MustCompile("(?s)```caddyfile\n(.*?)```").FindAllStringSubmatch(readFile(t, "../README.md"), -1)
	tried := 0
	for _, b := range blocks {
		if strings.Contains(b[1], "<") {
			continue // a syntax summary, not a config
		}
		tried++
		config := b[1]
		if first := strings.TrimSpace(config); !strings.HasPrefix(first, "{") && !strings.HasPrefix(first, ":") && !strings.HasPrefix(first, "http") {
			config = ":8080 {\n" + config + "}\n"
		}
		dir := t.TempDir()
		writeSite(t, dir, config)
		out, err := runCaddy(t, dir, IsolatedEnv(dir, "CONNGATE_ADMIN_KEY=x", "CONNGATE_GATEWAY_KEY=y", "CONNGATE_POSTGRES_DSN=postgres://db/x"),
			"adapt", "--config", "Caddyfile", "--adapter", "caddyfile")
		if err != nil {
			t.Errorf("README Caddyfile does not adapt: %v\n%s\n--- the block:\n%s", err, out, b[1])
		}
	}
	if tried < 4 {
		t.Fatalf("found %d Caddyfiles in the README, want at least four (two of them in Scaling out)", tried)
	}
}
