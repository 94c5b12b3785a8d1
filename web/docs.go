package web

import (
	"net/http"

	"github.com/swaggest/swgui"
	"github.com/swaggest/swgui/v5emb"
)

// docsCSP lets the docs page load nothing but this service: Swagger UI needs
// its inline bootstrap script, inline styles and data: images, and nothing
// from any other origin.
const docsCSP = "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; " +
	"img-src 'self' data:; connect-src 'self'; font-src 'self' data:; object-src 'none'; base-uri 'none'; " +
	"form-action 'none'; frame-ancestors 'none'"

// Docs serves the API docs: Swagger UI rendering specURL at basePath (for
// example "/docs") and its assets at basePath/<file>. The assets are
// embedded in the binary (github.com/swaggest/swgui/v5emb), so the page works
// with no internet access.
func Docs(title, specURL, basePath string) http.Handler {
	ui := v5emb.NewHandlerWithConfig(swgui.Config{
		Title:       title,
		SwaggerJSON: specURL,
		BasePath:    basePath,
		HideCurl:    false,
		SettingsUI: map[string]string{
			// Show the schemas section too: it is where the event data lives.
			"defaultModelsExpandDepth": "1",
		},
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", docsCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		ui.ServeHTTP(w, r)
	})
}
