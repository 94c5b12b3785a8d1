package handlers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/liveshare/liveshare/metrics"
)

// requestInfo is what the middleware learns about a request: its id, the
// client's address, the caller and the room it names. It is one context
// value, filled in place as the request passes the middleware (each field
// is set once, before any handler runs, by the goroutine serving the
// request), so that a request costs one context and one copy of the
// *http.Request for all of them rather than one per fact.
type requestInfo struct {
	id     string
	base   *slog.Logger
	addr   string
	caller caller
	roomID string
	// handoff is set when the request's event stream took its connection
	// over: the stream goes on after the handlers return.
	handoff *handoff
}

type requestInfoKey struct{}

func infoFrom(ctx context.Context) *requestInfo {
	info, _ := ctx.Value(requestInfoKey{}).(*requestInfo)
	return info
}

func requestIDFrom(ctx context.Context) string {
	if info := infoFrom(ctx); info != nil {
		return info.id
	}
	return ""
}

// loggerFrom returns the request's logger, which carries its request id.
// It is made when asked for: most requests log nothing at the configured
// level, and slog's With formats its attributes up front.
func loggerFrom(ctx context.Context) *slog.Logger {
	if info := infoFrom(ctx); info != nil && info.base != nil {
		return info.base.With("request_id", info.id)
	}
	return slog.New(slog.DiscardHandler)
}

// validRequestID accepts ids from a proxy that are safe to echo and log:
// 1 to 128 of A-Z, a-z, 0-9, '_', '.', ':' and '-'.
func validRequestID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := range len(id) {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '.', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// requestContext gives every request an id (the caller's X-Request-Id when
// it is sane, a new one otherwise), echoes it, and puts the request's
// requestInfo into the context, with base, the logger whose lines name the
// id (loggerFrom). When the request's event stream took its connection
// over, it starts the rest of the stream once every handler and middleware
// returned (handoff).
func requestContext(base *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id := r.Header.Get("X-Request-Id")
			if !validRequestID(id) {
				var b [8]byte
				_, _ = rand.Read(b[:])
				id = hex.EncodeToString(b[:])
			}
			w.Header()["X-Request-Id"] = []string{id}
			info := &requestInfo{id: id, base: base}
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestInfoKey{}, info)))
			if info.handoff != nil {
				go info.handoff.run()
			}
		})
	}
}

// LogHandler wraps h so that a line logged with a request's context (the
// *Context methods of slog) names the request's id, as the handlers' own
// lines do. Packages below handlers (room, snapshot) log through it, so the
// lines a request causes there (a room load, a manual snapshot) carry the id
// too.
func LogHandler(h slog.Handler) slog.Handler { return requestIDHandler{h} }

type requestIDHandler struct{ slog.Handler }

func (h requestIDHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := requestIDFrom(ctx); id != "" {
		r = r.Clone()
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

func (h requestIDHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return requestIDHandler{h.Handler.WithAttrs(attrs)}
}

func (h requestIDHandler) WithGroup(name string) slog.Handler {
	return requestIDHandler{h.Handler.WithGroup(name)}
}

// accessLog writes one line per request, naming the route pattern, and
// records the request in m (nil: no metrics) by that pattern — never the
// raw path, whose ids would make a series per room; requests no route
// matched are recorded as "unmatched". One wrapper serves both. The line is
// only built when its level is enabled. An event stream that took its
// connection over is logged and recorded when it ends, with its real
// duration.
func accessLog(m *metrics.Metrics) func(http.Handler) http.Handler {
	var patterns routePatterns
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
			next.ServeHTTP(ww, r)
			// Now: chi reuses its route context once the request returns.
			route := patterns.of(chi.RouteContext(r.Context()))
			if h := takenOver(r.Context()); h != nil {
				h.ends = append(h.ends, func() { logRequest(m, r, route, http.StatusOK, h.bytes, time.Since(start)) })
				return
			}
			status := ww.Status()
			if status == 0 {
				status = http.StatusOK
			}
			logRequest(m, r, route, status, int64(ww.BytesWritten()), time.Since(start))
		})
	}
}

// logRequest writes a request's access line and records it in m.
func logRequest(m *metrics.Metrics, r *http.Request, route string, status int, bytes int64, took time.Duration) {
	ctx := r.Context()
	if info := infoFrom(ctx); info != nil && info.base != nil && info.base.Enabled(ctx, slog.LevelInfo) {
		loggerFrom(ctx).Info("request",
			"method", r.Method, "path", r.URL.Path, "route", route,
			"status", status, "bytes", bytes, "duration", took)
	}
	if m != nil {
		if route == "" {
			route = "unmatched"
		}
		m.Request(route, r.Method, status, took)
	}
}

// routePatterns remembers the pattern of each chain of routes matched:
// chi joins a request's route patterns anew on every call, and the access
// log wants one for every request.
type routePatterns struct{ m sync.Map }

// maxPatternParts is the longest chain of patterns remembered; the router
// nests one subrouter, so its chains have two.
const maxPatternParts = 3

type patternKey [maxPatternParts]string

// of returns rc's route pattern, as rc.RoutePattern does ("" for nil).
func (p *routePatterns) of(rc *chi.Context) string {
	if rc == nil {
		return ""
	}
	if len(rc.RoutePatterns) > maxPatternParts {
		return rc.RoutePattern()
	}
	var k patternKey
	copy(k[:], rc.RoutePatterns)
	if v, ok := p.m.Load(k); ok {
		return v.(string)
	}
	// Chains are the router's own patterns, never a request's path: the
	// map holds at most one entry per route.
	pattern := strings.Clone(rc.RoutePattern())
	p.m.Store(k, pattern)
	return pattern
}

// recoverer turns a panic in a handler into a logged 500 problem.
func recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			rec := recover()
			if rec == nil {
				return
			}
			if rec == http.ErrAbortHandler {
				panic(rec)
			}
			loggerFrom(r.Context()).Error("panic in handler", "panic", fmt.Sprint(rec), "stack", string(debug.Stack()))
			writeProblem(w, r, newProblem(http.StatusInternalServerError, "internal", "internal error"))
		}()
		next.ServeHTTP(w, r)
	})
}
