package server

import (
	_ "embed"
	"net/http"

	"github.com/tokenmanager/tokenmanager/gateway/openapi"
)

// docsPage renders /openapi.json in the browser. It is self-contained (no
// CDN), so the docs work on machines without internet access.
//
//go:embed docs.html
var docsPage []byte

func serveDocs(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline' 'self'; style-src 'unsafe-inline'")
	_, _ = w.Write(docsPage)
}

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openapi.Document)
}

// serveRoot is GET /, as v2.7 answered it.
func serveRoot(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"message":"Token Manager API","docs":"/docs","health":"/health"}`))
}
