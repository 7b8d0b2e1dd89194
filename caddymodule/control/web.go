package control

import (
	"embed"
	"net/http"
)

// The Connections List page: plain HTML, CSS and JavaScript, embedded so that
// it works with no internet and no build step.
//
//go:embed web
var webFiles embed.FS

// pageCSP allows only the page's own assets and its own API.
const pageCSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

func serveWeb(name, contentType string) http.HandlerFunc {
	body, err := webFiles.ReadFile("web/" + name)
	if err != nil {
		panic("missing embedded web/" + name) // a build without the page is a broken build
	}
	return func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h.Set("Content-Type", contentType)
		h.Set("Content-Security-Policy", pageCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		_, _ = w.Write(body)
	}
}
