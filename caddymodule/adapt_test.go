package caddymodule

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

var update = flag.Bool("update", false, "rewrite the expected JSON of testdata/*.caddyfiletest")

func adapt(t *testing.T, caddyfile string) ([]byte, error) {
	t.Helper()
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	return out, err
}

func indent(t *testing.T, b []byte) string {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Indent(&buf, bytes.TrimSpace(b), "", "\t"); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, b)
	}
	return buf.String()
}

// Each testdata/*.caddyfiletest is a Caddyfile, a line of dashes, and the
// JSON it must adapt to.
func TestAdapt(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.caddyfiletest")
	if len(files) == 0 {
		t.Fatal("no golden files")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			in, want, ok := strings.Cut(string(data), "\n----------\n")
			if !ok {
				t.Fatal("no ---------- separator")
			}
			out, err := adapt(t, in)
			if err != nil {
				t.Fatalf("adapt: %v", err)
			}
			got := indent(t, out)
			if *update {
				os.WriteFile(file, []byte(in+"\n----------\n"+got+"\n"), 0o644)
				return
			}
			if got != indent(t, []byte(want)) {
				t.Errorf("adapted JSON differs.\ngot:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

func TestAdaptExample(t *testing.T) {
	data, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	out, err := adapt(t, string(data))
	if err != nil {
		t.Fatalf("Caddyfile.example does not adapt: %v", err)
	}
	for _, handler := range []string{`"handler":"connection_gate"`, `"handler":"connection_control"`, `"handler":"reverse_proxy"`} {
		if !bytes.Contains(out, []byte(handler)) {
			t.Errorf("adapted example lacks %s", handler)
		}
	}
}

func TestCaddyfileErrors(t *testing.T) {
	tests := []struct {
		name, caddyfile, want string
	}{
		{"gate unknown subdirective", "connection_gate {\n\tcolour blue\n}", `unrecognized subdirective "colour"`},
		{"gate argument on the directive", "connection_gate now", "wrong argument count"},
		{"gate ttl missing value", "connection_gate {\n\tttl\n}", "wrong argument count"},
		{"gate ttl not a duration", "connection_gate {\n\tttl soon\n}", "ttl"},
		{"gate negative disconnected_ttl", "connection_gate {\n\tdisconnected_ttl -1s\n}", `disconnected_ttl "-1s": want a duration such as 30s, or 0`},
		{"gate negative cache size", "connection_gate {\n\tcache_size -1\n}", "cache_size"},
		{"gate control_url without value", "connection_gate {\n\tcontrol_url\n}", "wrong argument count"},
		{"gate algorithms without value", "connection_gate {\n\talgorithms\n}", "wrong argument count"},
		{"control unknown subdirective", "connection_control {\n\tcolour blue\n}", `unrecognized subdirective "colour"`},
		{"control unknown role", "connection_control {\n\tapi_key root abcdefabcdefabcdef\n}", `role "root"`},
		{"control api_key without key", "connection_control {\n\tapi_key admin\n}", "wrong argument count"},
		{"control unknown store", "connection_control {\n\tstore mongo x\n}", "mongo"},
		{"control bolt without path", "connection_control {\n\tstore bolt\n}", "wrong argument count"},
		{"control bolt unknown option", "connection_control {\n\tstore bolt x {\n\t\tsize 1\n\t}\n}", `unrecognized subdirective "size"`},
		{"control bolt bad log size", "connection_control {\n\tstore bolt x {\n\t\tchange_log_size none\n\t}\n}", "change_log_size"},
		{"control bad lifetime", "connection_control {\n\ttoken_lifetime forever\n}", "token_lifetime"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := adapt(t, ":8080 {\n"+tt.caddyfile+"\n}\n")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}
