// Package web holds LiveShare's embedded browser pages: the live graph
// editor served at / and the API docs.
package web

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed app
var appFiles embed.FS

// appCSP keeps the editor page from reaching anything but the service: no
// inline script, no other origin for scripts, styles, images, fonts or
// connections.
const appCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// assets are the files the page is made of.
var assets = map[string]bool{"index.html": true, "app.js": true, "app.css": true, "history.js": true, "liveshare.js": true, "cursors.js": true, "undo.js": true, "exchange.js": true, "roomadmin.js": true, "search.js": true, "help.js": true, "clipboard.js": true, "minimap.js": true, "contextmenu.js": true}

// App serves the live graph editor: GET / answers the page, and
// GET /app/<file> its script and style sheet. Files are embedded in the
// binary; nothing is built or fetched at run time. Other paths are passed to
// notFound (nil: a plain 404), so they answer as the rest of the API does.
func App(notFound http.Handler) http.Handler {
	if notFound == nil {
		notFound = http.NotFoundHandler()
	}
	sub, err := fs.Sub(appFiles, "app")
	if err != nil {
		panic(err) // cannot happen: the directory is embedded
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", appCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		// Embedded files have no modification time, so there is nothing
		// to revalidate against; a new binary may bring new files.
		h.Set("Cache-Control", "no-cache")
		name := "index.html"
		if r.URL.Path != "/" {
			name = strings.TrimPrefix(r.URL.Path, "/app/")
		}
		if !assets[name] {
			notFound.ServeHTTP(w, r)
			return
		}
		http.ServeFileFS(w, r, sub, name)
	})
}
