package gate

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// A refusal goes to the server's error routes when it has some, and is
// answered by the gate otherwise; the challenge headers and placeholders
// are the same either way.
func TestDenyWithAndWithoutErrorRoutes(t *testing.T) {
	withRoutes := &caddyhttp.Server{Errors: &caddyhttp.HTTPErrorConfig{Routes: caddyhttp.RouteList{{}}}}
	servers := []struct {
		name         string
		server       *caddyhttp.Server // nil: none in the request's context
		inErrorRoute bool
		handled      bool // the refusal is returned to the error routes
	}{
		{"no server in context", nil, false, false},
		{"server without error config", &caddyhttp.Server{}, false, false},
		{"server with no error routes", &caddyhttp.Server{Errors: &caddyhttp.HTTPErrorConfig{}}, false, false},
		{"server with error routes", withRoutes, false, true},
		{"already inside the error routes", withRoutes, true, false},
	}
	denials := []struct {
		denial    *denial
		cid       string
		challenge string // WWW-Authenticate; "" for none
		body      string // the default answer, byte for byte
	}{
		{denyNoToken, "", `Bearer realm="conngate"`,
			`{"error":"unauthorized","reason":"token_missing"}`},
		{malformed("more than one token"), "", `Bearer realm="conngate", error="invalid_request", error_description="more than one token"`,
			`{"error":"invalid_request","error_description":"more than one token","reason":"authorization_malformed"}`},
		{denyDisabled, "conn_a", `Bearer realm="conngate", error="invalid_token", error_description="connection disabled"`,
			`{"error":"invalid_token","error_description":"connection disabled","reason":"connection_disabled"}`},
		{denyUnavailable, "conn_a", "",
			`{"error":"temporarily_unavailable","reason":"status_unavailable"}`},
	}
	g := &Gate{Realm: "conngate", metrics: newMetrics(), logger: zap.NewNop()}
	for _, srv := range servers {
		for _, tt := range denials {
			t.Run(srv.name+"/"+tt.denial.reason, func(t *testing.T) {
				repl := caddy.NewReplacer()
				ctx := context.WithValue(context.Background(), caddy.ReplacerCtxKey, repl)
				if srv.server != nil {
					ctx = context.WithValue(ctx, caddyhttp.ServerCtxKey, srv.server)
				}
				if srv.inErrorRoute {
					ctx = context.WithValue(ctx, caddyhttp.ErrorCtxKey, errors.New("an earlier error"))
				}
				req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/data", nil)
				rec := httptest.NewRecorder()
				err := g.deny(rec, req, tt.denial, tt.cid)

				h := rec.Header()
				if got := h.Get("WWW-Authenticate"); got != tt.challenge {
					t.Errorf("WWW-Authenticate %q, want %q", got, tt.challenge)
				}
				if got, want := h.Get("Retry-After") != "", tt.denial.status == http.StatusServiceUnavailable; got != want {
					t.Errorf("Retry-After %q", h.Get("Retry-After"))
				}
				if h.Get("Cache-Control") != "no-store" {
					t.Errorf("Cache-Control %q", h.Get("Cache-Control"))
				}
				for key, want := range map[string]string{
					"http.auth.deny.reason":            tt.denial.reason,
					"http.auth.deny.error":             tt.denial.errorCode(),
					"http.auth.deny.error_description": tt.denial.description,
					"http.auth.deny.connection_id":     tt.cid,
				} {
					if got, _ := repl.GetString(key); got != want {
						t.Errorf("{%s} = %q, want %q", key, got, want)
					}
				}

				if srv.handled {
					var he caddyhttp.HandlerError
					var d *denial
					if !errors.As(err, &he) || he.StatusCode != tt.denial.status || !errors.As(err, &d) || d != tt.denial {
						t.Fatalf("returned %#v, want a HandlerError %d wrapping the denial", err, tt.denial.status)
					}
					if rec.Body.Len() != 0 || h.Get("Content-Type") != "" {
						t.Fatalf("wrote %q (Content-Type %q); the error routes answer", rec.Body, h.Get("Content-Type"))
					}
					return
				}
				if err != nil {
					t.Fatalf("returned %v, want the gate to answer", err)
				}
				if rec.Code != tt.denial.status || h.Get("Content-Type") != "application/json" || rec.Body.String() != tt.body+"\n" {
					t.Fatalf("answered %d %q %q, want %d application/json %q", rec.Code, h.Get("Content-Type"), rec.Body, tt.denial.status, tt.body)
				}
			})
		}
	}
}

// ServeHTTP passes the refusal on to Caddy, and never calls next.
func TestServeHTTPReturnsRefusalToErrorRoutes(t *testing.T) {
	g := &Gate{Realm: "conngate", metrics: newMetrics(), logger: zap.NewNop()}
	srv := &caddyhttp.Server{Errors: &caddyhttp.HTTPErrorConfig{Routes: caddyhttp.RouteList{{}}}}
	ctx := context.WithValue(context.Background(), caddy.ReplacerCtxKey, caddy.NewReplacer())
	ctx = context.WithValue(ctx, caddyhttp.ServerCtxKey, srv)
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/data", nil)
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		t.Fatal("next handler called for a request without a token")
		return nil
	})
	err := g.ServeHTTP(httptest.NewRecorder(), req, next)
	var he caddyhttp.HandlerError
	if !errors.As(err, &he) || he.StatusCode != http.StatusUnauthorized || he.Err != error(denyNoToken) {
		t.Fatalf("ServeHTTP returned %#v, want HandlerError 401 token_missing", err)
	}
}
