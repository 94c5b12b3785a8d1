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
//
// A path under basePath that names no asset is passed to notFound (nil: a
// plain 404), so it answers as the rest of the API does.
func Docs(title, specURL, basePath string, notFound http.Handler) http.Handler {
	if notFound == nil {
		notFound = http.NotFoundHandler()
	}
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
		cw := &catch404{w: w, header: http.Header{}}
		ui.ServeHTTP(cw, r)
		if cw.missing {
			notFound.ServeHTTP(w, r)
		}
	})
}

// catch404 passes a response on to w unless its status is 404, which it
// swallows (headers and body) so that the caller can answer instead.
type catch404 struct {
	w       http.ResponseWriter
	header  http.Header
	wrote   bool
	missing bool
}

func (c *catch404) Header() http.Header { return c.header }

func (c *catch404) WriteHeader(code int) {
	if c.wrote {
		return
	}
	c.wrote = true
	if code == http.StatusNotFound {
		c.missing = true
		return
	}
	for k, v := range c.header {
		c.w.Header()[k] = v
	}
	c.w.WriteHeader(code)
}

func (c *catch404) Write(b []byte) (int, error) {
	if !c.wrote {
		c.WriteHeader(http.StatusOK)
	}
	if c.missing {
		return len(b), nil
	}
	return c.w.Write(b)
}
