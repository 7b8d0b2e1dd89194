package control

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
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
