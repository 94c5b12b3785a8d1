package web

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestAppServesItsFiles(t *testing.T) {
	h := App(nil)
	for _, tc := range []struct {
		path, contentType, contains string
		status                      int
	}{
		{"/", "text/html", `<script type="module" src="/app/app.js"`, http.StatusOK},
		{"/app/app.js", "text/javascript", "new EventSource(", http.StatusOK},
		{"/app/app.css", "text/css", ".node", http.StatusOK},
		{"/app/liveshare.js", "text/javascript", "export class Room", http.StatusOK},
		{"/app/missing.js", "", "", http.StatusNotFound},
		{"/app/", "", "", http.StatusNotFound},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", tc.path, nil))
		if rec.Code != tc.status {
			t.Errorf("GET %s: status %d, want %d", tc.path, rec.Code, tc.status)
			continue
		}
		if !strings.Contains(rec.Header().Get("Content-Security-Policy"), "connect-src 'self'") {
			t.Errorf("GET %s: no CSP keeping the page on the service", tc.path)
		}
		if tc.status != http.StatusOK {
			continue
		}
		if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, tc.contentType) {
			t.Errorf("GET %s: Content-Type %q, want %s", tc.path, ct, tc.contentType)
		}
		if !strings.Contains(rec.Body.String(), tc.contains) {
			t.Errorf("GET %s: body lacks %q", tc.path, tc.contains)
		}
	}
}

// TestAppRefersOnlyToItself guards the no-internet rule: the page's files
// name no other origin.
func TestAppRefersOnlyToItself(t *testing.T) {
	for _, name := range []string{"index.html", "app.js", "app.css", "liveshare.js", "cursors.js", "undo.js", "exchange.js", "roomadmin.js", "search.js", "help.js", "clipboard.js", "minimap.js", "contextmenu.js"} {
		b, err := appFiles.ReadFile("app/" + name)
		if err != nil {
			t.Fatal(err)
		}
		s := strings.ReplaceAll(string(b), "http://www.w3.org/2000/svg", "")
		for _, scheme := range []string{"http://", "https://", "//cdn", "@import"} {
			if strings.Contains(s, scheme) {
				t.Errorf("%s mentions %q", name, scheme)
			}
		}
	}
}

func TestAppPassesUnknownFilesToNotFound(t *testing.T) {
	h := App(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusNotFound)
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/app/missing.js", nil))
	if rec.Code != http.StatusNotFound || rec.Header().Get("Content-Type") != "application/problem+json" {
		t.Fatalf("unknown file: %d %q, want the not-found handler's answer", rec.Code, rec.Header().Get("Content-Type"))
	}
}
