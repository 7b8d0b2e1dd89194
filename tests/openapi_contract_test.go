package tests

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/conngate/conngate/caddymodule/control/contracttest"
	"github.com/conngate/conngate/caddymodule/controlapi"
)

// Every answer a test reads from a control endpoint of the real binary
// through http.DefaultClient (the do helper, and so demo.api) is checked
// against the OpenAPI document; one that leaves it fails the test that
// started that endpoint. What the CLI, curl, the browser and the gateways
// inside the binary exchange with it is not seen here.
func init() {
	http.DefaultClient.Transport = &contractTransport{next: http.DefaultTransport}
}

// controlHosts maps the host:port of each running control endpoint to the
// test that started it.
var controlHosts sync.Map

// watchControl has the answers of the control endpoint whose JWKS is at
// ready checked for test t, until t ends.
func watchControl(t testing.TB, ready string) {
	u, err := url.Parse(ready)
	if err != nil || u.Path != controlapi.PathJWKS {
		return // not a control endpoint's readiness URL
	}
	controlHosts.Store(u.Host, t)
	t.Cleanup(func() { controlHosts.CompareAndDelete(u.Host, t) })
}

// contractTransport passes every exchange through, and checks those with a
// watched control endpoint. A change stream is checked by its status and
// headers; its body is left to the caller.
type contractTransport struct {
	next http.RoundTripper
}

func (ct *contractTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	v, watched := controlHosts.Load(req.URL.Host)
	if !watched {
		return ct.next.RoundTrip(req)
	}
	t := v.(testing.TB)
	contract, err := contracttest.Load()
	if err != nil {
		t.Errorf("openapi.json: %v", err)
		return ct.next.RoundTrip(req)
	}
	check := &contracttest.Transport{Contract: contract, Next: ct.next, Report: func(err error) { t.Errorf("openapi.json: %v", err) }}
	return check.RoundTrip(req)
}

// CloseIdleConnections lets http.DefaultClient.CloseIdleConnections reach
// the transport beneath, as the reload tests need.
func (ct *contractTransport) CloseIdleConnections() {
	if c, ok := ct.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// recordingTB keeps what would fail a test.
type recordingTB struct {
	testing.TB
	mu     sync.Mutex
	errors []string
}

func (r *recordingTB) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

// take returns what was recorded and forgets it.
func (r *recordingTB) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	errs := r.errors
	r.errors = nil
	return errs
}

// An answer of a watched control endpoint that leaves the document fails
// the test that watches it; other hosts are not looked at.
func TestContractTransportReports(t *testing.T) {
	wrong := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, `{"id":"api_key:admin","admin":true}`) // no gateway, no roles
	}))
	defer wrong.Close()
	rec := &recordingTB{TB: t}
	watchControl(rec, wrong.URL+controlapi.PathJWKS)

	req, _ := http.NewRequest(http.MethodGet, wrong.URL+controlapi.PathMe, nil)
	req.Header.Set("Authorization", "Bearer some-key")
	if code, body := do(t, req); code != 200 || body["admin"] != true {
		t.Fatalf("the answer did not come through: %d %v", code, body)
	}
	if errs := rec.take(); len(errs) != 1 || !strings.Contains(errs[0], "GET /v1/me answered 200") || !strings.Contains(errs[0], "gateway") {
		t.Errorf("reported %q, want one report of the missing gateway field", errs)
	}

	controlHosts.Delete(strings.TrimPrefix(wrong.URL, "http://"))
	do(t, req)
	if errs := rec.take(); len(errs) != 0 {
		t.Errorf("an unwatched host was checked: %q", errs)
	}
}
