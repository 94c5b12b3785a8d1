package handlers

import (
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/liveshare/liveshare"
	"github.com/liveshare/liveshare/web"
)

// routeDocs adds GET /openapi.yaml (the embedded spec) and GET /docs with
// its assets at GET /docs/* (Swagger UI, embedded too).
func routeDocs(r chi.Router) {
	r.Get("/openapi.yaml", serveOpenAPI)
	docs := web.Docs("LiveShare API", "/openapi.yaml", "/docs", http.HandlerFunc(NotFound))
	r.Get("/docs", docs.ServeHTTP)
	r.Get("/docs/*", docs.ServeHTTP)
}

func serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/yaml")
	h.Set("Cache-Control", "no-cache")
	_, _ = w.Write(liveshare.OpenAPI)
}
