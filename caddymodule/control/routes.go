package control

import (
	"context"
	"net/http"
	"sort"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/conngate/conngate/caddymodule/controlapi"
	"github.com/conngate/conngate/store"
)

// actorKey carries the store.Actor of an authenticated request.
type actorKey struct{}

// actorOf returns who made the request, as recorded in the audit log.
func actorOf(r *http.Request) store.Actor {
	a, _ := r.Context().Value(actorKey{}).(store.Actor)
	return a
}

// requestID is the client's X-Request-Id when it is a usable id, else the
// id Caddy gives the request ({http.request.uuid}).
func requestID(r *http.Request) string {
	if id := r.Header.Get("X-Request-Id"); id != "" && store.ValidateID("request id", id) == nil {
		return id
	}
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		if id, ok := repl.GetString("http.request.uuid"); ok {
			return id
		}
	}
	return ""
}

// operation is one method on one route. Every operation but a public one
// needs a known key; what the key's principal may do is decided by
// authorize, called by the operation with what the request is about. An
// operation writes its success answer itself and returns any failure, which
// the endpoint writes, once.
type operation struct {
	public bool
	serve  func(http.ResponseWriter, *http.Request) error
}

// endpoint dispatches on the method, so that a wrong method gets a JSON 405
// with an Allow header rather than net/http's plain-text one.
type endpoint struct {
	c   *Control
	ops map[string]operation
}

// routeTable is every route of the control API: pattern, then method. The
// OpenAPI document must describe exactly these (openapi_test.go checks).
func (c *Control) routeTable() map[string]map[string]operation {
	return map[string]map[string]operation{
		controlapi.PathJWKS:            {http.MethodGet: {true, c.serveJWKS}},
		controlapi.PathOpenAPI:         {http.MethodGet: {true, cannotFail(serveOpenAPI)}},
		controlapi.PathConnections:     {http.MethodGet: {false, c.listConnections}, http.MethodPost: {false, c.createConnection}},
		"/v1/connections/{id}":         {http.MethodGet: {false, c.getConnection}, http.MethodDelete: {false, c.deleteConnection}},
		"/v1/connections/{id}/status":  {http.MethodGet: {false, c.getStatus}},
		"/v1/connections/{id}/disable": {http.MethodPost: {false, c.disableConnection}},
		"/v1/connections/{id}/enable":  {http.MethodPost: {false, c.enableConnection}},
		controlapi.PathEvents:          {http.MethodGet: {false, c.streamEvents}},
		controlapi.PathAudit:           {http.MethodGet: {false, c.listAudit}},
		controlapi.PathGateways:        {http.MethodGet: {false, c.listGateways}},
		"/v1/gateways/{id}/ack":        {http.MethodPost: {false, c.ackGateway}},
		"/v1/gateways/{id}/leave":      {http.MethodPost: {false, c.leaveGateway}},
		controlapi.PathMe:              {http.MethodGet: {false, c.getMe}},
		controlapi.PathApps:            {http.MethodGet: {false, c.listApps}, http.MethodPost: {false, c.createApp}},
		"/v1/apps/{id}":                {http.MethodGet: {false, c.getApp}, http.MethodDelete: {false, c.deleteApp}},
		"/v1/apps/{id}/secret":         {http.MethodPost: {false, c.rotateAppSecret}},
	}
}

// cannotFail adapts a handler that has no failure to answer.
func cannotFail(h http.HandlerFunc) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		h(w, r)
		return nil
	}
}

func (c *Control) newRoutes() http.Handler {
	mux := http.NewServeMux()
	for pattern, ops := range c.routeTable() {
		mux.Handle(pattern, endpoint{c: c, ops: ops})
	}
	// The Connections List page; not part of the API.
	page := c.getOnly(serveWeb("index.html", "text/html; charset=utf-8"))
	mux.Handle("/{$}", page)
	mux.Handle("/connections", page)
	mux.Handle("/assets/app.js", c.getOnly(serveWeb("app.js", "text/javascript; charset=utf-8")))
	mux.Handle("/assets/app.css", c.getOnly(serveWeb("app.css", "text/css; charset=utf-8")))
	c.oauthRoutes(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		c.writeError(w, r, controlapi.Errorf(http.StatusNotFound, controlapi.CodeNotFound, "No such endpoint: %s %s.", r.Method, r.URL.Path))
	})
	return mux
}

// oauthRoutes are the OAuth 2.0 endpoints: the RFCs' formats and errors,
// not the API's.
func (c *Control) oauthRoutes(mux *http.ServeMux) {
	mux.HandleFunc(controlapi.PathAuthorize, c.serveAuthorize)
	mux.Handle("/oauth/oauth.css", c.getOnly(serveWeb("oauth.css", "text/css; charset=utf-8")))
	// The token and revocation endpoints take client credentials (Basic, or
	// in the body); introspection a gateway's or an admin's key as well.
	basic, bearerOrBasic := []string{"Basic"}, []string{"Bearer", "Basic"}
	mux.Handle(controlapi.PathToken, c.oauthEndpoint(http.MethodPost, basic, c.serveToken))
	mux.Handle(controlapi.PathRevoke, c.oauthEndpoint(http.MethodPost, basic, c.serveRevoke))
	mux.Handle(controlapi.PathIntrospect, c.oauthEndpoint(http.MethodPost, bearerOrBasic, c.serveIntrospect))
	mux.Handle(controlapi.PathOAuthMetadata, c.getOnly(http.HandlerFunc(c.serveOAuthMetadata)))
}

// getOnly serves h to GET and HEAD and answers another method 405 in the
// API's format. A method pattern ("GET /path") would leave it to the
// catch-all, a 404.
func (c *Control) getOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			h.ServeHTTP(w, r)
			return
		}
		err := controlapi.Errorf(http.StatusMethodNotAllowed, controlapi.CodeMethodNotAllowed, "%s is not allowed here; use GET.", r.Method)
		err.Header = map[string]string{"Allow": "GET, HEAD"}
		c.writeError(w, r, err)
	})
}

func (e endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := e.serve(w, r); err != nil {
		e.c.writeError(w, r, err)
	}
}

func (e endpoint) serve(w http.ResponseWriter, r *http.Request) error {
	op, ok := e.ops[r.Method]
	if !ok && r.Method == http.MethodHead {
		op, ok = e.ops[http.MethodGet]
	}
	if !ok {
		allowed := make([]string, 0, len(e.ops))
		for m := range e.ops {
			allowed = append(allowed, m)
		}
		sort.Strings(allowed)
		err := controlapi.Errorf(http.StatusMethodNotAllowed, controlapi.CodeMethodNotAllowed, "%s is not allowed here; use %s.", r.Method, strings.Join(allowed, " or "))
		err.Header = map[string]string{"Allow": strings.Join(allowed, ", ")}
		return err
	}
	if !op.public {
		who, wait := e.c.keys.principalOf(r)
		if wait > 0 {
			return tooManyAttempts(wait)
		}
		if who == nil {
			err := controlapi.Errorf(http.StatusUnauthorized, controlapi.CodeUnauthorized, "Send a valid API key as 'Authorization: Bearer <key>'.")
			err.Header = map[string]string{"WWW-Authenticate": `Bearer realm="conngate-control"`}
			return err
		}
		r = withPrincipal(r, who)
		r = r.WithContext(context.WithValue(r.Context(), actorKey{}, store.Actor{ID: who.id, RequestID: requestID(r)}))
	}
	return op.serve(w, r)
}
