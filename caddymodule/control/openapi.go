package control

import (
	"bytes"
	_ "embed"
	"net/http"
)

// openAPI is the OpenAPI 3.1 document of the control API, kept beside the
// routes it describes.
//
//go:embed openapi.json
var openAPI []byte

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(openAPI)
}

// OpenAPIDocument returns the OpenAPI document served at /v1/openapi.json,
// for tests that check the API's answers against it.
func OpenAPIDocument() []byte { return bytes.Clone(openAPI) }
