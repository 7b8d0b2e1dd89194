package contracttest

import (
	"io"
	"net/http"
	"net/http/httptest"
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
		{"an OAuth endpoint", Exchange{Request: request("POST", "/oauth/token", ""), Status: 400,
			Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(`{"error":"invalid_grant"}`)}, ""},
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
