package handlers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"runtime/debug"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/liveshare/liveshare/metrics"
)

type ctxKey int

const (
	requestIDKey ctxKey = iota
	loggerKey
)

// validRequestID accepts ids from a proxy that are safe to echo and log.
var validRequestID = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,128}$`)

func requestIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// loggerFrom returns the request's logger, which carries its request id.
func loggerFrom(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(loggerKey).(*slog.Logger); ok {
		return l
	}
	return slog.New(slog.DiscardHandler)
}

// requestContext gives every request an id (the caller's X-Request-Id when
// it is sane, a new one otherwise), echoes it, and puts a logger carrying it
// into the context so every log line of the request names it.
func requestContext(base *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id := r.Header.Get("X-Request-Id")
			if !validRequestID.MatchString(id) {
				var b [8]byte
				_, _ = rand.Read(b[:])
				id = hex.EncodeToString(b[:])
			}
			w.Header().Set("X-Request-Id", id)
			ctx := context.WithValue(r.Context(), requestIDKey, id)
			ctx = context.WithValue(ctx, loggerKey, base.With("request_id", id))
			next.ServeHTTP(w, r.WithContext(ctx))
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
// matched are recorded as "unmatched". One wrapper serves both.
func accessLog(m *metrics.Metrics) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
			next.ServeHTTP(ww, r)
			took := time.Since(start)
			status := ww.Status()
			if status == 0 {
				status = http.StatusOK
			}
			route := ""
			if rc := chi.RouteContext(r.Context()); rc != nil {
				route = rc.RoutePattern()
			}
			loggerFrom(r.Context()).Info("request",
				"method", r.Method, "path", r.URL.Path, "route", route,
				"status", status, "bytes", ww.BytesWritten(), "duration", took)
			if m != nil {
				if route == "" {
					route = "unmatched"
				}
				m.Request(route, r.Method, status, took)
			}
		})
	}
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
