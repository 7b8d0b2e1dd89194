package contracttest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
)

const conn = `{"id":"conn_1","name":"App","org_id":"org-1","user_id":"user-1","status":"disabled",` +
	`"created_at":"2026-11-29T16:26:30.26682Z","updated_at":"2026-11-29T16:27:00Z","revision":7}`

func jsonHeader(extra ...string) http.Header {
	h := http.Header{"Content-Type": {"application/json"}, "Cache-Control": {"no-store"}}
	for i := 0; i+1 < len(extra); i += 2 {
		h.Set(extra[i], extra[i+1])
	}
	return h
}

// oauthHeader is the header of an OAuth endpoint's JSON answer.
func oauthHeader(extra ...string) http.Header {
	return jsonHeader(append([]string{"Pragma", "no-cache"}, extra...)...)
}

// pageHeader is the header of an authorisation page.
func pageHeader(extra ...string) http.Header {
	h := http.Header{"Content-Type": {"text/html; charset=utf-8"}, "Cache-Control": {"no-store"},
		"Content-Security-Policy": {"default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'"},
		"X-Frame-Options":         {"DENY"}, "X-Content-Type-Options": {"nosniff"}, "Referrer-Policy": {"no-referrer"}}
	for i := 0; i+1 < len(extra); i += 2 {
		h.Set(extra[i], extra[i+1])
	}
	return h
}

// challenge is a valid PKCE code_challenge.
const challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"

// form is a form-encoded POST to an OAuth endpoint, with header pairs.
func form(target string, header ...string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, target, nil)
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	return r
}

func request(method, target, key string) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	if key != "" {
		r.Header.Set("Authorization", "Bearer "+key)
	}
	return r
}

// The checker passes what the server really answers and reports every kind
// of drift: a validator that lets a wrong answer through proves nothing.
func TestCheck(t *testing.T) {
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	const key = "some-key"
	tests := []struct {
		name   string
		ex     Exchange
		report string // "" when the exchange keeps to the document
	}{
		{"a change without wait", Exchange{Request: request("POST", "/v1/connections/conn_1/disable", key),
			Status: 200, Header: jsonHeader(), Body: []byte(`{"connection":` + conn + `}`)}, ""},
		{"a change with wait=applied", Exchange{Request: request("POST", "/v1/connections/conn_1/disable?wait=applied", key),
			Status: 200, Header: jsonHeader(), Body: []byte(`{"connection":` + conn + `,"gateways":2,"acknowledged":1,"pending":["gw-b/p1"]}`)}, ""},
		{"wait=applied, half of its fields", Exchange{Request: request("DELETE", "/v1/connections/conn_1?wait=applied", key),
			Status: 200, Header: jsonHeader(), Body: []byte(`{"connection":` + conn + `,"gateways":2}`)}, "acknowledged"},
		{"a connection without its revision", Exchange{Request: request("GET", "/v1/connections/conn_1", key),
			Status: 200, Header: jsonHeader(), Body: []byte(`{"connection":` + strings.Replace(conn, `,"revision":7`, "", 1) + `}`)}, "revision"},
		{"a property the document lacks", Exchange{Request: request("GET", "/v1/connections/conn_1", key),
			Status: 200, Header: jsonHeader(), Body: []byte(`{"connection":` + strings.Replace(conn, `"revision":7`, `"revision":7,"colour":"red"`, 1) + `}`)},
			".connection.colour"},
		{"an unknown status", Exchange{Request: request("GET", "/v1/connections/conn_1/status", key),
			Status: 200, Header: jsonHeader(), Body: []byte(`{"id":"conn_1","status":"paused","revision":3}`)}, "paused"},
		{"no Cache-Control", Exchange{Request: request("GET", "/v1/connections/conn_1", key),
			Status: 200, Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(`{"connection":` + conn + `}`)}, "Cache-Control"},
		{"a created connection", Exchange{Request: request("POST", "/v1/connections", key), RequestBody: []byte(`{"name":"App","org_id":"org-1","user_id":"user-1"}`),
			Status: 201, Header: jsonHeader("Location", "/v1/connections/conn_1"),
			Body: []byte(`{"connection":` + conn + `,"access_token":"x.y.z","token_type":"Bearer","expires_at":"2026-11-30T16:26:30Z"}`)}, ""},
		{"201 without Location", Exchange{Request: request("POST", "/v1/connections", key), RequestBody: []byte(`{"name":"App","org_id":"org-1","user_id":"user-1"}`),
			Status: 201, Header: jsonHeader(),
			Body: []byte(`{"connection":` + conn + `,"access_token":"x.y.z","token_type":"Bearer","expires_at":"2026-11-30T16:26:30Z"}`)}, "Location"},
		{"a request the document refuses, served", Exchange{Request: request("POST", "/v1/connections", key), RequestBody: []byte(`{"name":"App","org_id":"org-1"}`),
			Status: 201, Header: jsonHeader("Location", "/v1/connections/conn_1"),
			Body: []byte(`{"connection":` + conn + `,"access_token":"x.y.z","token_type":"Bearer","expires_at":"2026-11-30T16:26:30Z"}`)}, "outside the document"},
		{"a request the document refuses, refused", Exchange{Request: request("GET", "/v1/connections?limit=0", key),
			Status: 400, Header: jsonHeader(), Body: []byte(`{"error":"invalid_request","message":"limit must be a whole number from 1 to 500."}`)}, ""},
		{"empty query parameters, as absent", Exchange{Request: request("GET", "/v1/connections?org_id=&status=&limit=&cursor=&q=", key),
			Status: 200, Header: jsonHeader(), Body: []byte(`{"connections":[` + conn + `],"next_cursor":""}`)}, ""},
		{"an undocumented status", Exchange{Request: request("GET", "/v1/me", key),
			Status: 418, Header: jsonHeader(), Body: []byte(`{"error":"internal_error","message":"teapot"}`)}, "status is not supported"},
		{"the wrong code for the status", Exchange{Request: request("POST", "/v1/gateways/gw-1/ack", key), RequestBody: []byte(`{"revision":3,"stream":"k1"}`),
			Status: 404, Header: jsonHeader(), Body: []byte(`{"error":"connection_not_found","message":"No."}`)}, "gateway_not_subscribed"},
		{"a code that does not exist", Exchange{Request: request("GET", "/v1/me", key),
			Status: 401, Header: jsonHeader("WWW-Authenticate", `Bearer realm="conngate-control"`), Body: []byte(`{"error":"nope","message":"No."}`)}, "nope"},
		{"401 without a challenge", Exchange{Request: request("GET", "/v1/me", ""),
			Status: 401, Header: jsonHeader(), Body: []byte(`{"error":"unauthorized","message":"Send a key."}`)}, "WWW-Authenticate"},
		{"an acknowledgement", Exchange{Request: request("POST", "/v1/gateways/gw-1/ack", key), RequestBody: []byte(`{"revision":3,"stream":"k1"}`),
			Status: 204, Header: http.Header{}}, ""},
		{"204 with a body", Exchange{Request: request("POST", "/v1/gateways/gw-1/ack", key), RequestBody: []byte(`{"revision":3,"stream":"k1"}`),
			Status: 204, Header: jsonHeader(), Body: []byte(`{}`)}, "no body"},
		{"a gateway never acknowledged", Exchange{Request: request("GET", "/v1/gateways", key), Status: 200, Header: jsonHeader(),
			Body: []byte(`{"revision":4,"gateways":[{"id":"gw-1","instance":"p1","connected":true,"streams":1,"applied_revision":0,"lag_revisions":4,"connected_at":"2026-11-29T16:26:30Z","last_ack_at":null,"last_seen_at":"2026-11-29T16:26:31Z"}]}`)}, ""},
		{"a gateway without last_ack_at", Exchange{Request: request("GET", "/v1/gateways", key), Status: 200, Header: jsonHeader(),
			Body: []byte(`{"revision":4,"gateways":[{"id":"gw-1","instance":"p1","connected":true,"streams":1,"applied_revision":0,"lag_revisions":4,"connected_at":"2026-11-29T16:26:30Z","last_seen_at":"2026-11-29T16:26:31Z"}]}`)}, "last_ack_at"},
		{"an unknown path", Exchange{Request: request("GET", "/v2/things", key),
			Status: 404, Header: jsonHeader(), Body: []byte(`{"error":"not_found","message":"No such endpoint: GET /v2/things."}`)}, ""},
		{"an unknown path served", Exchange{Request: request("GET", "/v2/things", key),
			Status: 200, Header: jsonHeader(), Body: []byte(`{}`)}, "status is not supported"},
		{"a wrong method", Exchange{Request: request("PUT", "/v1/connections/conn_1", key),
			Status: 405, Header: jsonHeader("Allow", "DELETE, GET"), Body: []byte(`{"error":"method_not_allowed","message":"PUT is not allowed here."}`)}, ""},
		{"a wrong method, wrong Allow", Exchange{Request: request("PUT", "/v1/connections/conn_1", key),
			Status: 405, Header: jsonHeader("Allow", "GET"), Body: []byte(`{"error":"method_not_allowed","message":"PUT is not allowed here."}`)}, `"DELETE, GET"`},
		{"a wrong method, no Allow", Exchange{Request: request("GET", "/v1/gateways/gw-1/ack", key),
			Status: 405, Header: jsonHeader(), Body: []byte(`{"error":"method_not_allowed","message":"GET is not allowed here."}`)}, "Allow"},
		{"a path with a dot segment", Exchange{Request: request("GET", "/v1/connections/../me", key), Status: 307,
			Header: http.Header{"Location": {"/v1/me"}, "Content-Type": {"text/html; charset=utf-8"}}, Body: []byte(`<a href="/v1/me">Temporary Redirect</a>.`)}, ""},
		{"a path with a dot segment, not redirected", Exchange{Request: request("GET", "/v1//me", key), Status: 200,
			Header: jsonHeader(), Body: []byte(`{"id":"api_key:admin","admin":true,"gateway":false,"roles":{}}`)}, "307"},
		{"a redirect the document lacks", Exchange{Request: request("GET", "/v1/me", key), Status: 307,
			Header: http.Header{"Location": {"/elsewhere"}}}, "no 307"},
		{"HEAD as GET", Exchange{Request: request("HEAD", "/v1/me", key), Status: 200, Header: jsonHeader()}, ""},
		{"the change stream", Exchange{Request: request("GET", "/v1/events?since=3", key), Status: 200,
			Header: http.Header{"Content-Type": {"text/event-stream"}, "Cache-Control": {"no-store"}, "X-Accel-Buffering": {"no"}}}, ""},
		{"the change stream, buffered", Exchange{Request: request("GET", "/v1/events", key), Status: 200,
			Header: http.Header{"Content-Type": {"text/event-stream"}, "Cache-Control": {"no-store"}}}, "X-Accel-Buffering"},
		{"the change stream as JSON", Exchange{Request: request("GET", "/v1/events", key), Status: 200,
			Header: jsonHeader("X-Accel-Buffering", "no"), Body: []byte(`{}`)}, "Content-Type"},
		{"an OAuth error", Exchange{Request: form("/oauth/token"), RequestBody: []byte("grant_type=authorization_code&code=c&client_id=app_1"), Status: 400,
			Header: oauthHeader(), Body: []byte(`{"error":"invalid_request","error_description":"code_verifier is required."}`)}, ""},
		{"an OAuth error without Pragma", Exchange{Request: form("/oauth/token"), RequestBody: []byte("grant_type=authorization_code&code=c&client_id=app_1"), Status: 400,
			Header: jsonHeader(), Body: []byte(`{"error":"invalid_request"}`)}, "Pragma"},
		{"an OAuth error in the API's format", Exchange{Request: form("/oauth/token"), RequestBody: []byte("grant_type=x"), Status: 400,
			Header: oauthHeader(), Body: []byte(`{"error":"invalid_request","message":"No."}`)}, ".message"},
		{"an OAuth error code the endpoint does not answer", Exchange{Request: form("/oauth/revoke"), RequestBody: []byte("token=t&client_id=app_1"), Status: 400,
			Header: oauthHeader(), Body: []byte(`{"error":"invalid_grant"}`)}, "invalid_grant"},
		{"a token answer", Exchange{Request: form("/oauth/token"), RequestBody: []byte("grant_type=refresh_token&refresh_token=r&client_id=app_1"), Status: 200,
			Header: oauthHeader(), Body: []byte(`{"access_token":"x.y.z","token_type":"Bearer","expires_in":900,"refresh_token":"r2"}`)}, ""},
		{"a token answer with a property the document lacks", Exchange{Request: form("/oauth/token"), RequestBody: []byte("grant_type=refresh_token&refresh_token=r&client_id=app_1"), Status: 200,
			Header: oauthHeader(), Body: []byte(`{"access_token":"x.y.z","token_type":"Bearer","expires_in":900,"refresh_token":"r2","id_token":"i"}`)}, ".id_token"},
		{"a form field twice, served", Exchange{Request: form("/oauth/token"), RequestBody: []byte("grant_type=refresh_token&refresh_token=r&refresh_token=s&client_id=app_1"), Status: 200,
			Header: oauthHeader(), Body: []byte(`{"access_token":"x.y.z","token_type":"Bearer","expires_in":900,"refresh_token":"r2"}`)}, `"refresh_token" is given 2 times`},
		{"a code exchange without its PKCE verifier, served", Exchange{Request: form("/oauth/token"), RequestBody: []byte("grant_type=authorization_code&code=c&client_id=app_1"), Status: 200,
			Header: oauthHeader(), Body: []byte(`{"access_token":"x.y.z","token_type":"Bearer","expires_in":900,"refresh_token":"r2"}`)}, "outside the document"},
		{"a JSON token request, served", Exchange{Request: request("POST", "/oauth/token", ""), RequestBody: []byte(`{"grant_type":"refresh_token","refresh_token":"r"}`), Status: 200,
			Header: oauthHeader(), Body: []byte(`{"access_token":"x.y.z","token_type":"Bearer","expires_in":900,"refresh_token":"r2"}`)}, "Content-Type"},
		{"invalid_client", Exchange{Request: form("/oauth/token"), RequestBody: []byte("grant_type=refresh_token&refresh_token=r&client_id=app_1"), Status: 401,
			Header: oauthHeader("WWW-Authenticate", `Basic realm="conngate"`), Body: []byte(`{"error":"invalid_client"}`)}, ""},
		{"invalid_client with a Bearer challenge", Exchange{Request: form("/oauth/revoke"), RequestBody: []byte("token=t&client_id=app_1"), Status: 401,
			Header: oauthHeader("WWW-Authenticate", `Bearer realm="conngate"`), Body: []byte(`{"error":"invalid_client"}`)}, "WWW-Authenticate"},
		{"invalid_client at introspection, both challenges", Exchange{Request: form("/oauth/introspect"), RequestBody: []byte("token=t"), Status: 401,
			Header: oauthHeader("WWW-Authenticate", `Bearer realm="conngate", Basic realm="conngate"`), Body: []byte(`{"error":"invalid_client"}`)}, ""},
		{"a store outage at the token endpoint", Exchange{Request: form("/oauth/token"), RequestBody: []byte("grant_type=refresh_token&refresh_token=r&client_id=app_1"), Status: 503,
			Header: oauthHeader("Retry-After", "1"), Body: []byte(`{"error":"temporarily_unavailable","error_description":"The store cannot be reached."}`)}, ""},
		{"a store outage without Retry-After", Exchange{Request: form("/oauth/token"), RequestBody: []byte("grant_type=refresh_token&refresh_token=r&client_id=app_1"), Status: 503,
			Header: oauthHeader(), Body: []byte(`{"error":"temporarily_unavailable"}`)}, "Retry-After"},
		{"a store outage as the API answers it", Exchange{Request: form("/oauth/revoke"), RequestBody: []byte("token=t&client_id=app_1"), Status: 503,
			Header: oauthHeader("Retry-After", "1"), Body: []byte(`{"error":"store_unavailable","message":"No."}`)}, "temporarily_unavailable"},
		{"invalid_client without a challenge", Exchange{Request: form("/oauth/token"), RequestBody: []byte("grant_type=refresh_token&refresh_token=r&client_id=app_1"), Status: 401,
			Header: oauthHeader(), Body: []byte(`{"error":"invalid_client"}`)}, "WWW-Authenticate"},
		{"a revocation", Exchange{Request: form("/oauth/revoke"), RequestBody: []byte("token=t&client_id=app_1"), Status: 200, Header: http.Header{"Cache-Control": {"no-store"}}}, ""},
		{"a revocation with a body", Exchange{Request: form("/oauth/revoke"), RequestBody: []byte("token=t&client_id=app_1"), Status: 200, Header: oauthHeader(), Body: []byte(`{}`)}, "no body"},
		{"an inactive token", Exchange{Request: form("/oauth/introspect", "Authorization", "Bearer k"), RequestBody: []byte("token=t"), Status: 200,
			Header: oauthHeader(), Body: []byte(`{"active":false}`)}, ""},
		{"an inactive token with its details", Exchange{Request: form("/oauth/introspect", "Authorization", "Bearer k"), RequestBody: []byte("token=t"), Status: 200,
			Header: oauthHeader(), Body: []byte(`{"active":false,"cid":"conn_1"}`)}, "Introspection"},
		{"an active token", Exchange{Request: form("/oauth/introspect", "Authorization", "Basic YXBwXzE6cw=="), RequestBody: []byte("token=t"), Status: 200,
			Header: oauthHeader(), Body: []byte(`{"active":true,"client_id":"app_1","sub":"user-1","token_type":"refresh_token","iat":1,"cid":"conn_1"}`)}, ""},
		{"an authorisation refused back to the app", Exchange{Request: request("GET", "/oauth/authorize?client_id=app_1&response_type=token", ""), Status: 303,
			Header: http.Header{"Location": {"https://app.example/cb?error=unsupported_response_type&state=s"}, "Content-Type": {"text/html; charset=utf-8"}},
			Body:   []byte(`<a href="https://app.example/cb">See Other</a>.`)}, ""},
		{"an authorisation request outside the document, granted", Exchange{Request: request("GET", "/oauth/authorize?client_id=app_1&response_type=token", ""), Status: 303,
			Header: http.Header{"Location": {"https://app.example/cb?code=c&state=s"}}}, "outside the document"},
		{"the sign-in page", Exchange{Request: request("GET", "/oauth/authorize?client_id=app_1&response_type=code&code_challenge="+challenge+"&code_challenge_method=S256", ""),
			Status: 200, Header: pageHeader(), Body: []byte("<!doctype html>")}, ""},
		{"a page that may be framed", Exchange{Request: request("GET", "/oauth/authorize?client_id=app_1&response_type=code&code_challenge="+challenge+"&code_challenge_method=S256", ""),
			Status: 200, Header: pageHeader("X-Frame-Options", "SAMEORIGIN"), Body: []byte("<!doctype html>")}, "X-Frame-Options"},
		{"a page as JSON", Exchange{Request: request("GET", "/oauth/authorize?client_id=app_nope", ""),
			Status: 400, Header: pageHeader("Content-Type", "application/json"), Body: []byte(`{}`)}, "Content-Type"},
		{"a wrong method at the token endpoint", Exchange{Request: request("GET", "/oauth/token", ""), Status: 405,
			Header: oauthHeader("Allow", "POST"), Body: []byte(`{"error":"invalid_request","error_description":"GET is not allowed here; use POST."}`)}, ""},
		{"a wrong method at the token endpoint, in the API's format", Exchange{Request: request("GET", "/oauth/token", ""), Status: 405,
			Header: jsonHeader("Allow", "POST"), Body: []byte(`{"error":"method_not_allowed","message":"No."}`)}, "Pragma"},
		{"a wrong method at the authorisation endpoint", Exchange{Request: request("PUT", "/oauth/authorize", ""), Status: 405,
			Header: pageHeader("Allow", "GET, POST"), Body: []byte("<!doctype html>")}, ""},
		{"a wrong method at the metadata", Exchange{Request: request("POST", "/.well-known/oauth-authorization-server", ""), Status: 405,
			Header: jsonHeader("Allow", "GET, HEAD"), Body: []byte(`{"error":"method_not_allowed","message":"POST is not allowed here; use GET."}`)}, ""},
		{"a wrong method at the metadata, Allow without HEAD", Exchange{Request: request("POST", "/.well-known/oauth-authorization-server", ""), Status: 405,
			Header: jsonHeader("Allow", "GET"), Body: []byte(`{"error":"method_not_allowed","message":"POST is not allowed here; use GET."}`)}, "Allow"},
		{"a wrong method at the metadata, as an unknown path", Exchange{Request: request("POST", "/.well-known/oauth-authorization-server", ""), Status: 404,
			Header: jsonHeader(), Body: []byte(`{"error":"not_found","message":"No such endpoint: POST /.well-known/oauth-authorization-server."}`)}, "status is not supported"},
		{"the stylesheet of the pages", Exchange{Request: request("GET", "/oauth/oauth.css", ""), Status: 200,
			Header: http.Header{"Content-Type": {"text/css; charset=utf-8"}}, Body: []byte("body{}")}, ""},
		{"a wrong method at the stylesheet", Exchange{Request: request("POST", "/oauth/oauth.css", ""), Status: 405,
			Header: jsonHeader("Allow", "GET, HEAD"), Body: []byte(`{"error":"method_not_allowed","message":"POST is not allowed here; use GET."}`)}, ""},
		{"a wrong method at the stylesheet, as an unknown path", Exchange{Request: request("POST", "/oauth/oauth.css", ""), Status: 404,
			Header: jsonHeader(), Body: []byte(`{"error":"not_found","message":"No such endpoint: POST /oauth/oauth.css."}`)}, "status is not supported"},
		{"a connection made through OAuth", Exchange{Request: request("GET", "/v1/connections/conn_1", key), Status: 200, Header: jsonHeader(),
			Body: []byte(`{"connection":` + strings.Replace(conn, `"revision":7`, `"revision":7,"app_id":"app_1"`, 1) + `}`)}, ""},
		{"the page", Exchange{Request: request("GET", "/connections", ""), Status: 200,
			Header: http.Header{"Content-Type": {"text/html; charset=utf-8"}}, Body: []byte("<!doctype html>")}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := c.Check(tt.ex)
			switch {
			case tt.report == "" && err != nil:
				t.Errorf("reported %v", err)
			case tt.report != "" && err == nil:
				t.Errorf("not reported, want a report naming %q", tt.report)
			case tt.report != "" && !strings.Contains(err.Error(), tt.report):
				t.Errorf("reported %v, want it to name %q", err, tt.report)
			}
		})
	}
}

// The handler wrapper reports what the handler beneath answers, with the
// method, path and status, and lets the answer through unchanged.
func TestHandlerReports(t *testing.T) {
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var reports []string
	srv := httptest.NewServer(c.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/me": // a body of the wrong shape
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			io.WriteString(w, `{"id":"api_key:admin","admin":"yes","gateway":false,"roles":{}}`)
		case "/v1/events": // a stream without its headers, checked before it ends
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(http.StatusOK)
			http.NewResponseController(w).Flush()
			<-r.Context().Done()
		default: // nothing written: an implicit 200
		}
	}), func(err error) {
		mu.Lock()
		reports = append(reports, err.Error())
		mu.Unlock()
	}))
	defer srv.Close()

	get := func(path string) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer some-key")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := get("/v1/me")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"admin":"yes"`) {
		t.Errorf("the answer was changed on its way: %s", body)
	}
	stream := get("/v1/events")
	mu.Lock()
	streamReported := len(reports) == 2
	mu.Unlock()
	stream.Body.Close()
	get("/v1/nothing").Body.Close()

	mu.Lock()
	defer mu.Unlock()
	if !streamReported {
		t.Errorf("the stream was not reported while open: %q", reports)
	}
	want := []string{"GET /v1/me answered 200: ", "GET /v1/events answered 200: ", "GET /v1/nothing answered 200: "}
	if len(reports) != len(want) {
		t.Fatalf("reports %q, want %d", reports, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(reports[i], w) {
			t.Errorf("report %q, want it to start with %q", reports[i], w)
		}
	}
}

// The served document is a valid OpenAPI document (kin-openapi's
// validation, examples and patterns included), and a broken one is refused.
func TestParse(t *testing.T) {
	if _, err := Load(); err != nil {
		t.Fatal(err)
	}
	broken := `{"openapi":"3.1.0","info":{"title":"t","version":"1"},"paths":{"/x":{"get":{"responses":{"200":{"description":"d",
		"content":{"application/json":{"schema":{"$ref":"#/components/schemas/Missing"}}}}}}}}}`
	if _, err := Parse([]byte(broken)); err == nil {
		t.Error("a document with a dangling $ref was accepted")
	}
}

// The transport reports what the server answers, lets the answer through
// unchanged, and counts as covered only the documented answers that were
// checked and kept to the document.
func TestTransport(t *testing.T) {
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		switch r.URL.Path {
		case "/oauth/token": // a token answer without Pragma
			io.WriteString(w, `{"access_token":"x.y.z","token_type":"Bearer","expires_in":900,"refresh_token":"r2"}`)
		case "/oauth/revoke":
			w.Header().Del("Content-Type")
		default: // a page beside the API, not checked against an operation
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
		}
	}))
	defer srv.Close()
	var reports []string
	tr := &Transport{Contract: c, Report: func(err error) { reports = append(reports, err.Error()) }}
	client := &http.Client{Transport: tr}
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"r"}, "token": {"t"}, "client_id": {"app_1"}}
	for _, path := range []string{"/oauth/token", "/oauth/revoke", "/connections"} {
		var resp *http.Response
		var err error
		if path == "/connections" {
			resp, err = client.Get(srv.URL + path)
		} else {
			resp, err = client.PostForm(srv.URL+path, form)
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if path == "/oauth/token" && !strings.Contains(string(body), `"refresh_token":"r2"`) {
			t.Errorf("the answer was changed on its way: %s", body)
		}
	}
	if len(reports) != 1 || !strings.Contains(reports[0], "POST /oauth/token answered 200") || !strings.Contains(reports[0], "Pragma") {
		t.Errorf("reports %q, want one of the token answer's missing Pragma", reports)
	}
	if got := tr.Covered(); !slices.Equal(got, []string{"revoke 200"}) {
		t.Errorf("covered %q, want [revoke 200]", got)
	}
}
