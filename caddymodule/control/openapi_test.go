package control

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/conngate/conngate/caddymodule/controlapi"
)

// The OpenAPI document and the routes describe the same API: a route the
// document lacks, or a documented route that does not exist, fails.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi %q, want 3.1.0", doc.OpenAPI)
	}
	var documented, served []string
	// A path item holds its operations beside fields such as parameters.
	methods := []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}
	for path, item := range doc.Paths {
		for field := range item {
			if slices.Contains(methods, field) {
				documented = append(documented, strings.ToUpper(field)+" "+path)
			}
		}
	}
	for pattern, ops := range (&Control{}).routeTable() {
		for method := range ops {
			served = append(served, method+" "+pattern)
		}
	}
	// The OAuth endpoints check their methods themselves; each must reach
	// its own handler, not the catch-all 404, with a wrong method too (which
	// it answers 405).
	mux := (&Control{}).newRoutes().(*http.ServeMux)
	for _, r := range oauthRoutes {
		method, path, _ := strings.Cut(r, " ")
		if _, pattern := mux.Handler(httptest.NewRequest(method, path, nil)); pattern == "/" {
			t.Errorf("OAuth route %s is not served", r)
		}
		if _, pattern := mux.Handler(httptest.NewRequest(http.MethodPut, path, nil)); pattern == "/" {
			t.Errorf("PUT %s reaches the catch-all 404, not the route's 405", path)
		}
		served = append(served, r)
	}
	slices.Sort(documented)
	slices.Sort(served)
	for _, r := range served {
		if !slices.Contains(documented, r) {
			t.Errorf("route %s is not in openapi.json", r)
		}
	}
	for _, r := range documented {
		if !slices.Contains(served, r) {
			t.Errorf("openapi.json documents %s, which does not exist", r)
		}
	}
}

// What the site serves beside the API (the Connections List page, its
// assets, the stylesheet of the authorisation pages) and the OAuth metadata
// answer GET and HEAD, and another method 405 in the API's format with
// Allow: GET, HEAD, not the catch-all 404.
func TestGetOnlyPathsAnswerWrongMethods405(t *testing.T) {
	routes := (&Control{logger: zap.NewNop()}).newRoutes()
	for _, path := range []string{"/", "/connections", "/assets/app.js", "/assets/app.css", "/oauth/oauth.css", controlapi.PathOAuthMetadata} {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			w := httptest.NewRecorder()
			routes.ServeHTTP(w, httptest.NewRequest(method, path, nil))
			if w.Code != http.StatusOK {
				t.Errorf("%s %s: %d", method, path, w.Code)
			}
		}
		for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
			w := httptest.NewRecorder()
			routes.ServeHTTP(w, httptest.NewRequest(method, path, nil))
			var body controlapi.Error
			json.Unmarshal(w.Body.Bytes(), &body)
			if w.Code != http.StatusMethodNotAllowed || body.Code != controlapi.CodeMethodNotAllowed || w.Header().Get("Allow") != "GET, HEAD" {
				t.Errorf("%s %s: %d %s, Allow %q; want 405 method_not_allowed, Allow \"GET, HEAD\"", method, path, w.Code, w.Body, w.Header().Get("Allow"))
			}
		}
	}
}

// oauthRoutes are the OAuth 2.0 endpoints Control.oauthRoutes registers
// (routes.go), by the methods their handlers serve.
var oauthRoutes = []string{
	http.MethodGet + " " + controlapi.PathAuthorize,
	http.MethodPost + " " + controlapi.PathAuthorize,
	http.MethodPost + " " + controlapi.PathToken,
	http.MethodPost + " " + controlapi.PathRevoke,
	http.MethodPost + " " + controlapi.PathIntrospect,
	http.MethodGet + " " + controlapi.PathOAuthMetadata,
}

// The document's ErrorCode and OAuthErrorCode enums list exactly the codes
// of controlapi, read from its source so that a new code cannot be missed.
func TestOpenAPIErrorCodes(t *testing.T) {
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Enum []string `json:"enum"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	for _, tt := range []struct{ schema, file, goType string }{
		{"ErrorCode", "../controlapi/errors.go", "Code"},
		{"OAuthErrorCode", "../controlapi/oauth.go", "OAuthErrorCode"},
	} {
		file, err := parser.ParseFile(token.NewFileSet(), tt.file, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		var codes []string
		ast.Inspect(file, func(n ast.Node) bool {
			spec, ok := n.(*ast.ValueSpec)
			if !ok || spec.Type == nil || fmt.Sprint(spec.Type) != tt.goType {
				return true
			}
			for _, v := range spec.Values {
				if lit, ok := v.(*ast.BasicLit); ok && lit.Kind == token.STRING {
					code, _ := strconv.Unquote(lit.Value)
					codes = append(codes, code)
				}
			}
			return true
		})
		documented := slices.Clone(doc.Components.Schemas[tt.schema].Enum)
		slices.Sort(codes)
		slices.Sort(documented)
		if len(codes) == 0 || !slices.Equal(codes, documented) {
			t.Errorf("%s enum %v, controlapi's %s codes %v", tt.schema, documented, tt.goType, codes)
		}
	}
}

// A key given twice in one object is legal JSON to Go's decoder (the last
// wins) but a different document to other tools: two edits that both added
// a 429 answer once left one of them silently unseen.
func TestOpenAPIHasNoDuplicateKeys(t *testing.T) {
	dec := json.NewDecoder(strings.NewReader(string(openAPI)))
	var walk func(path string) error
	walk = func(path string) error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return err
				}
				key := k.(string)
				if seen[key] {
					t.Errorf("%s: key %q given twice", path, key)
				}
				seen[key] = true
				if err := walk(path + "/" + key); err != nil {
					return err
				}
			}
			_, err = dec.Token() // }
			return err
		case json.Delim('['):
			for i := 0; dec.More(); i++ {
				if err := walk(fmt.Sprintf("%s/%d", path, i)); err != nil {
					return err
				}
			}
			_, err = dec.Token() // ]
			return err
		}
		return nil
	}
	if err := walk(""); err != nil {
		t.Fatal(err)
	}
}
