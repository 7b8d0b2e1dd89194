// Package contracttest checks exchanges with the control API against its
// OpenAPI document (caddymodule/control/openapi.json), so that a test fails
// when the server and the document drift apart. controltest wraps every
// test server's handler with it; the end-to-end tests check the answers they
// read.
package contracttest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/conngate/conngate/caddymodule/control"
)

// Contract is a loaded OpenAPI document and a router over its operations.
// It is safe for concurrent use.
type Contract struct {
	doc    *openapi3.T
	router routers.Router
}

var (
	loadOnce sync.Once
	loaded   *Contract
	loadErr  error
)

// Load returns the control API's contract: the document the control module
// serves, parsed and validated once per process.
func Load() (*Contract, error) {
	loadOnce.Do(func() { loaded, loadErr = Parse(control.OpenAPIDocument()) })
	return loaded, loadErr
}

// Parse loads an OpenAPI document and checks that it is a valid one.
func Parse(document []byte) (*Contract, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(document)
	if err != nil {
		return nil, fmt.Errorf("loading the OpenAPI document: %w", err)
	}
	if err := doc.Validate(loader.Context, openapi3.EnableSchemaPatternValidation(), openapi3.EnableExamplesValidation()); err != nil {
		return nil, fmt.Errorf("the OpenAPI document is invalid: %w", err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("routing the OpenAPI document: %w", err)
	}
	return &Contract{doc: doc, router: router}, nil
}

// Exchange is one request and the answer to it.
type Exchange struct {
	// Request as sent: its method, URL and header. Its body is not read.
	Request     *http.Request
	RequestBody []byte
	Status      int
	Header      http.Header
	// Body of the answer; not looked at for a text/event-stream answer,
	// whose body is the stream.
	Body []byte
}

// pages are the Connections List page, its assets and the stylesheet of
// the authorisation pages, which the control handler serves beside the API;
// they are not part of it. Another method than GET or HEAD there gets the
// document's GetOnlyMethodNotAllowed.
var pages = map[string]bool{"/": true, "/connections": true, "/assets/app.js": true, "/assets/app.css": true, "/oauth/oauth.css": true}

// outsideAPI reports whether r is for what the control handler serves beside
// the API.
func outsideAPI(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) && pages[r.URL.Path]
}

// Check reports how the exchange leaves the document, or nil. The request
// is checked too: a request the document refuses must be refused with a
// documented error answer, not served.
func (c *Contract) Check(ex Exchange) error {
	_, err := c.checkOperation(ex)
	return err
}

// checkOperation is Check that also says which operation the exchange was
// checked against: its operationId, or "" when it was checked against none
// (a page beside the API, an unknown path, a wrong method).
func (c *Contract) checkOperation(ex Exchange) (operationID string, err error) {
	defer func() {
		if p := recover(); p != nil { // a checker bug must not cost the server its answer
			operationID, err = "", fmt.Errorf("%s %s answered %d: the check failed: %v", ex.Request.Method, ex.Request.URL.RequestURI(), ex.Status, p)
		}
	}()
	operationID, err = c.check(ex)
	if err != nil {
		return "", fmt.Errorf("%s %s answered %d: %w", ex.Request.Method, ex.Request.URL.RequestURI(), ex.Status, err)
	}
	return operationID, nil
}

func (c *Contract) check(ex Exchange) (operationID string, err error) {
	req := ex.Request
	if outsideAPI(req) {
		return "", nil
	}
	if pages[req.URL.Path] {
		return "", c.checkOutside(ex, probeRequest(ex), "GetOnlyMethodNotAllowed", http.StatusMethodNotAllowed)
	}
	if unclean(req.URL.EscapedPath()) {
		if ex.Status != http.StatusTemporaryRedirect || ex.Header.Get("Location") == "" {
			return "", errors.New("a path with empty or dot segments is answered 307 with the clean path in Location, the document says")
		}
		return "", nil
	}
	probe := probeRequest(ex)
	route, params, err := c.router.FindRoute(probe)
	switch {
	case errors.Is(err, routers.ErrPathNotFound):
		return "", c.checkOutside(ex, probe, "UnknownPath", http.StatusNotFound)
	case errors.Is(err, routers.ErrMethodNotAllowed):
		name, status, err := c.wrongMethod(probe)
		if err != nil {
			return "", err
		}
		if err := c.checkOutside(ex, probe, name, status); err != nil {
			return "", err
		}
		// An answer that fixes its Allow (a path that lists HEAD too) was
		// checked against it; else Allow lists the path's methods.
		if got, want := ex.Header.Get("Allow"), c.allowed(probe); status == http.StatusMethodNotAllowed && !c.declaresAllow(name) && got != want {
			return "", fmt.Errorf("Allow: %q, but the document has %q for this path", got, want)
		}
		return "", nil
	case err != nil:
		return "", fmt.Errorf("finding the operation: %w", err)
	}

	in := &openapi3filter.RequestValidationInput{
		Request: probe, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: credentialsPresent, SkipSettingDefaults: true},
	}
	requestErr := openapi3filter.ValidateRequest(context.Background(), in)
	if requestErr == nil {
		requestErr = repeatedFormField(probe, ex.RequestBody)
	}
	if err := c.checkAnswer(ex, in); err != nil {
		return "", err
	}
	if requestErr != nil && !refused(ex) {
		return "", fmt.Errorf("the request is outside the document, yet it was served: %w", requestErr)
	}
	return route.Operation.OperationID, nil
}

// refused reports whether the answer turns the request down: an error
// status, or an OAuth 2.0 authorisation error sent back to the app's
// redirect URI (RFC 6749 section 4.1.2.1), a redirect with an error
// parameter.
func refused(ex Exchange) bool {
	if ex.Status >= 400 {
		return true
	}
	if ex.Status < 300 || ex.Status >= 400 {
		return false
	}
	u, err := url.Parse(ex.Header.Get("Location"))
	return err == nil && u.Query().Has("error")
}

// repeatedFormField refuses a form-encoded body that gives a field more than
// once: OAuth 2.0 forbids it (RFC 6749 section 3.2), and kin-openapi would
// validate only one of the values (the first non-empty one).
func repeatedFormField(r *http.Request, body []byte) error {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
		return nil
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return fmt.Errorf("the form-encoded body cannot be parsed: %w", err)
	}
	for _, name := range slices.Sorted(maps.Keys(form)) {
		if len(form[name]) > 1 {
			return fmt.Errorf("form field %q is given %d times", name, len(form[name]))
		}
	}
	return nil
}

// wrongMethod names the shared answer, in components/responses, to a method
// the document does not have for a path it lists, and its status: the path
// item's x-wrong-method ({"status": 405, "response": "#/components/responses/Name"})
// where the path answers it in its own format, else MethodNotAllowed.
func (c *Contract) wrongMethod(r *http.Request) (name string, status int, err error) {
	item := c.pathItem(r)
	if item == nil || item.Extensions["x-wrong-method"] == nil {
		return "MethodNotAllowed", http.StatusMethodNotAllowed, nil
	}
	ext, _ := item.Extensions["x-wrong-method"].(map[string]any)
	code, _ := ext["status"].(float64)
	ref, _ := ext["response"].(string)
	name, found := strings.CutPrefix(ref, "#/components/responses/")
	if !found || code < 100 || code > 599 {
		return "", 0, fmt.Errorf("x-wrong-method of %s is not {\"status\": <status>, \"response\": \"#/components/responses/<name>\"}", r.URL.Path)
	}
	return name, int(code), nil
}

// declaresAllow reports whether the shared answer name fixes the Allow
// header it carries (a const).
func (c *Contract) declaresAllow(name string) bool {
	answer := c.doc.Components.Responses[name]
	if answer == nil || answer.Value == nil {
		return false
	}
	allow := answer.Value.Headers["Allow"]
	return allow != nil && allow.Value != nil && allow.Value.Schema != nil && allow.Value.Schema.Value != nil && allow.Value.Schema.Value.Const != nil
}

// pathItem is the path item of the document that holds r's path, found
// through a method it has.
func (c *Contract) pathItem(r *http.Request) *openapi3.PathItem {
	for _, m := range methods {
		probe := r.Clone(context.Background())
		probe.Method = m
		if route, _, err := c.router.FindRoute(probe); err == nil {
			return route.PathItem
		}
	}
	return nil
}

// methods are those a path item may have operations for.
var methods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions, http.MethodTrace}

// probeRequest is the request as the document sees it: with its body, HEAD
// as GET (which the server answers it as), and a body without Content-Type
// as JSON (which the server reads it as, and the document says so).
func probeRequest(ex Exchange) *http.Request {
	probe := ex.Request.Clone(context.Background())
	body := ex.RequestBody
	probe.Body = io.NopCloser(bytes.NewReader(body))
	probe.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	probe.ContentLength = int64(len(body))
	if probe.Method == http.MethodHead {
		probe.Method = http.MethodGet
	}
	if len(body) > 0 && probe.Header.Get("Content-Type") == "" {
		probe.Header.Set("Content-Type", "application/json")
	}
	return probe
}

// checkAnswer validates the answer against the operation of in.Route. Only
// a JSON body is looked into: a stream's body is the stream, an HTML page is
// for people, and a redirect's body (net/http writes a link on GET) is a
// courtesy the document leaves out.
func (c *Contract) checkAnswer(ex Exchange, in *openapi3filter.RequestValidationInput) error {
	stream := mediaType(ex.Header) == "text/event-stream"
	head := ex.Request.Method == http.MethodHead
	redirect := ex.Status >= 300 && ex.Status < 400
	opaque := stream || head || redirect || !isJSON(mediaType(ex.Header))
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 ex.Status,
		Header:                 ex.Header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, ExcludeResponseBody: opaque},
	}
	out.SetBodyBytes(ex.Body)
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		return err
	}
	// ValidateResponse lets redirects through whatever the document says.
	ref := in.Route.Operation.Responses.Status(ex.Status)
	if ref == nil || ref.Value == nil {
		return fmt.Errorf("the document has no %d answer here", ex.Status)
	}
	documented := ref.Value
	if len(documented.Content) == 0 {
		if len(ex.Body) > 0 && !redirect {
			return fmt.Errorf("the document has no body for %d, the answer has %d bytes", ex.Status, len(ex.Body))
		}
		return nil
	}
	media := documented.Content.Get(ex.Header.Get("Content-Type"))
	if media == nil {
		return fmt.Errorf("Content-Type %q is not one the document has for %d", ex.Header.Get("Content-Type"), ex.Status)
	}
	if opaque || media.Schema == nil {
		return nil
	}
	var body any
	if err := json.Unmarshal(ex.Body, &body); err != nil {
		return fmt.Errorf("the body is not JSON: %w", err)
	}
	if extra := undocumented("", body, media.Schema.Value); len(extra) > 0 {
		return fmt.Errorf("the body has properties the document does not declare: %s", strings.Join(extra, ", "))
	}
	return nil
}

// checkOutside validates an answer given outside every operation (an
// unknown path, a method a path does not have) against the shared answer
// the document keeps for it in components/responses.
func (c *Contract) checkOutside(ex Exchange, probe *http.Request, name string, status int) error {
	answer := c.doc.Components.Responses[name]
	if answer == nil {
		return fmt.Errorf("the document has no components/responses/%s", name)
	}
	route := &routers.Route{
		Spec: c.doc, Path: probe.URL.Path, Method: probe.Method,
		Operation: &openapi3.Operation{Responses: openapi3.NewResponses(openapi3.WithStatus(status, answer))},
	}
	in := &openapi3filter.RequestValidationInput{Request: probe, Route: route}
	return c.checkAnswer(ex, in)
}

// allowed lists the methods the document has for the path of r, as the
// server's Allow header does.
func (c *Contract) allowed(r *http.Request) string {
	var have []string
	for _, m := range methods {
		probe := r.Clone(context.Background())
		probe.Method = m
		if _, _, err := c.router.FindRoute(probe); err == nil {
			have = append(have, m)
		}
	}
	slices.Sort(have)
	return strings.Join(have, ", ")
}

// credentialsPresent stands in for the server's checks of keys and client
// credentials: the document can only say that credentials of the scheme's
// kind are sent (Authorization: Bearer <key>, or Basic with a user), not
// whether they are right ones (wrong ones get the documented 401).
func credentialsPresent(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	r := in.RequestValidationInput.Request
	switch s := in.SecurityScheme; {
	case s.Type == "http" && strings.EqualFold(s.Scheme, "basic"):
		if user, _, ok := r.BasicAuth(); !ok || user == "" {
			return errors.New("no Authorization: Basic <client credentials>")
		}
		return nil
	case s.Type == "http" && strings.EqualFold(s.Scheme, "bearer"):
		scheme, key, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || key == "" {
			return errors.New("no Authorization: Bearer <key>")
		}
		return nil
	}
	return fmt.Errorf("security scheme %q is not one contracttest knows", in.SecuritySchemeName)
}

// unclean reports whether p has empty or dot segments, which the server's
// router (net/http's ServeMux) redirects to the clean path.
func unclean(p string) bool {
	clean := path.Clean(p)
	if strings.HasSuffix(p, "/") && clean != "/" {
		clean += "/"
	}
	return clean != p
}

func mediaType(h http.Header) string {
	mt, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	return mt
}

func isJSON(mediaType string) bool {
	return mediaType == "application/json" || strings.HasSuffix(mediaType, "+json")
}

// undocumented lists the properties of v that schema s does not declare,
// as JSON paths. The document leaves objects open, so that clients accept
// properties added later; an answer that carries one the document does not
// declare yet is a drift all the same.
func undocumented(at string, v any, s *openapi3.Schema) []string {
	if s == nil {
		return nil
	}
	var out []string
	switch v := v.(type) {
	case map[string]any:
		props, open := declared(s)
		if open {
			return nil
		}
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			p, ok := props[k]
			if !ok {
				out = append(out, at+"."+k)
				continue
			}
			out = append(out, undocumented(at+"."+k, v[k], p)...)
		}
	case []any:
		if s.Items != nil {
			for i, item := range v {
				out = append(out, undocumented(fmt.Sprintf("%s[%d]", at, i), item, s.Items.Value)...)
			}
		}
	}
	return out
}

// declared collects the properties s declares, itself and through allOf,
// oneOf and anyOf. open is true when s allows any property: it declares
// none, or allows additional ones.
func declared(s *openapi3.Schema) (props map[string]*openapi3.Schema, open bool) {
	props = map[string]*openapi3.Schema{}
	var walk func(s *openapi3.Schema)
	walk = func(s *openapi3.Schema) {
		if s == nil {
			return
		}
		if ap := s.AdditionalProperties; ap.Schema != nil || ap.Has != nil && *ap.Has {
			open = true
		}
		for name, p := range s.Properties {
			if _, seen := props[name]; !seen && p != nil {
				props[name] = p.Value
			}
		}
		for _, group := range []openapi3.SchemaRefs{s.AllOf, s.OneOf, s.AnyOf} {
			for _, member := range group {
				if member != nil {
					walk(member.Value)
				}
			}
		}
	}
	walk(s)
	return props, open || len(props) == 0
}
