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
	"mime"
	"net/http"
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

// pages are the Connections List page and its assets, which the control
// handler serves beside the API; they are not part of it.
var pages = map[string]bool{"/": true, "/connections": true, "/assets/app.js": true, "/assets/app.css": true}

// outsideAPI reports whether r is for what the control handler serves beside
// the API: the page, and the OAuth 2.0 endpoints, which speak the RFCs'
// formats (controlapi/oauth.go) rather than this document's.
func outsideAPI(r *http.Request) bool {
	p := r.URL.Path
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) && pages[p] ||
		strings.HasPrefix(p, "/oauth/") || p == "/.well-known/oauth-authorization-server"
}

// Check reports how the exchange leaves the document, or nil. The request
// is checked too: a request the document refuses must be refused with a
// documented error answer, not served.
func (c *Contract) Check(ex Exchange) (err error) {
	defer func() {
		if p := recover(); p != nil { // a checker bug must not cost the server its answer
			err = fmt.Errorf("%s %s answered %d: the check failed: %v", ex.Request.Method, ex.Request.URL.RequestURI(), ex.Status, p)
		}
	}()
	if err := c.check(ex); err != nil {
		return fmt.Errorf("%s %s answered %d: %w", ex.Request.Method, ex.Request.URL.RequestURI(), ex.Status, err)
	}
	return nil
}

func (c *Contract) check(ex Exchange) error {
	req := ex.Request
	if outsideAPI(req) {
		return nil
	}
	if unclean(req.URL.EscapedPath()) {
		if ex.Status != http.StatusTemporaryRedirect || ex.Header.Get("Location") == "" {
			return errors.New("a path with empty or dot segments is answered 307 with the clean path in Location, the document says")
		}
		return nil
	}
	probe := probeRequest(ex)
	route, params, err := c.router.FindRoute(probe)
	switch {
	case errors.Is(err, routers.ErrPathNotFound):
		return c.checkOutside(ex, probe, "UnknownPath", http.StatusNotFound)
	case errors.Is(err, routers.ErrMethodNotAllowed):
		if err := c.checkOutside(ex, probe, "MethodNotAllowed", http.StatusMethodNotAllowed); err != nil {
			return err
		}
		if got, want := ex.Header.Get("Allow"), c.allowed(probe); got != want {
			return fmt.Errorf("Allow: %q, but the document has %q for this path", got, want)
		}
		return nil
	case err != nil:
		return fmt.Errorf("finding the operation: %w", err)
	}

	in := &openapi3filter.RequestValidationInput{
		Request: probe, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: bearerPresent, SkipSettingDefaults: true},
	}
	requestErr := openapi3filter.ValidateRequest(context.Background(), in)
	if err := c.checkAnswer(ex, in); err != nil {
		return err
	}
	if requestErr != nil && ex.Status < 400 {
		return fmt.Errorf("the request is outside the document, yet it was served: %w", requestErr)
	}
	return nil
}

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

// checkAnswer validates the answer against the operation of in.Route.
func (c *Contract) checkAnswer(ex Exchange, in *openapi3filter.RequestValidationInput) error {
	stream := mediaType(ex.Header) == "text/event-stream"
	head := ex.Request.Method == http.MethodHead
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 ex.Status,
		Header:                 ex.Header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, ExcludeResponseBody: stream || head},
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
		if len(ex.Body) > 0 {
			return fmt.Errorf("the document has no body for %d, the answer has %d bytes", ex.Status, len(ex.Body))
		}
		return nil
	}
	media := documented.Content.Get(ex.Header.Get("Content-Type"))
	if media == nil {
		return fmt.Errorf("Content-Type %q is not one the document has for %d", ex.Header.Get("Content-Type"), ex.Status)
	}
	if stream || head || media.Schema == nil {
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
	var methods []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions, http.MethodTrace} {
		probe := r.Clone(context.Background())
		probe.Method = m
		if _, _, err := c.router.FindRoute(probe); err == nil {
			methods = append(methods, m)
		}
	}
	slices.Sort(methods)
	return strings.Join(methods, ", ")
}

// bearerPresent stands in for the server's key check: the document can only
// say that a Bearer key is sent, not whether it is a known one (an unknown
// key gets the documented 401).
func bearerPresent(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	scheme, key, ok := strings.Cut(in.RequestValidationInput.Request.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || key == "" {
		return errors.New("no Authorization: Bearer <key>")
	}
	return nil
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
