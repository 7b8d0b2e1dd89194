package control_test

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/conngate/conngate/caddymodule/control/controltest"
)

// The page and its assets are served from the binary with a CSP that allows
// only them, and nothing in them loads from elsewhere.
func TestConnectionsPageIsSelfContained(t *testing.T) {
	s := controltest.Start(t, controltest.Options{})
	external := regexp.MustCompile(`(src|href)="(https?:)?//|url\(\s*['"]?https?:|@import|fetch\(\s*["']https?:`)
	for path, contentType := range map[string]string{
		"/": "text/html", "/connections": "text/html", "/assets/app.js": "text/javascript", "/assets/app.css": "text/css",
	} {
		resp, err := http.Get(s.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), contentType) {
			t.Errorf("%s: %d %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		csp := resp.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
			t.Errorf("%s: CSP %q", path, csp)
		}
		if external.Match(body) {
			t.Errorf("%s loads something from elsewhere: %s", path, external.Find(body))
		}
	}
	if resp, _ := http.Get(s.URL + "/nothing-here"); resp.StatusCode != 404 {
		t.Errorf("unknown page: %d", resp.StatusCode)
	}
}
