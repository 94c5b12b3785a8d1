// Package handlers is LiveShare's HTTP API: the chi router, middleware,
// problem+json errors and the REST handlers of DESIGN.md section 4.
package handlers

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/liveshare/liveshare/auth"
	"github.com/liveshare/liveshare/cluster"
	"github.com/liveshare/liveshare/history"
	"github.com/liveshare/liveshare/metrics"
	"github.com/liveshare/liveshare/room"
	"github.com/liveshare/liveshare/snapshot"
	"github.com/liveshare/liveshare/store"
)

// Config is what the API needs.
type Config struct {
	Store     *store.Store
	Rooms     *room.Manager
	Snapshots *snapshot.Registry
	// Cluster is this instance's part in several on one PostgreSQL
	// database; nil on the embedded database.
	Cluster *cluster.Cluster
	Logger  *slog.Logger
	// MaxBodyBytes limits every request body; larger ones get 413.
	MaxBodyBytes int64
	// RequestTimeout bounds REST requests (never the event streams).
	RequestTimeout time.Duration
	// BodyTimeout bounds the arrival of a request's body (408 past it);
	// zero means 10 s.
	BodyTimeout time.Duration
	// Streams tunes the event streams.
	Streams StreamConfig
	// Metrics records requests and streams and serves GET /metrics; nil
	// records nothing (and /metrics is empty).
	Metrics *metrics.Metrics
	// App serves the browser page at GET / and its files at GET /app/*;
	// nil leaves both unrouted.
	App http.Handler
	// Auth is who may call, and from where; the zero value is open mode
	// without a Host check.
	Auth AuthConfig
	// Limits are the rate limits and stream caps; the zero value limits
	// nothing.
	Limits Limits
	// Audit batches the audit rows that are not written with a change;
	// nil writes each at once (tests).
	Audit AuditLog
}

// API serves LiveShare's HTTP endpoints.
type API struct {
	store       *store.Store
	rooms       *room.Manager
	snapshots   *snapshot.Registry
	cluster     *cluster.Cluster
	maxBody     int64
	bodyTimeout time.Duration
	streams     *streams
	auth        AuthConfig
	anonymous   *auth.Principal
	members     *memberCache
	watchers    watchers
	limits      Limits
	slots       *streamSlots
	audit       AuditLog
	history     *history.Reader
}

// New returns the router with every endpoint and middleware.
func New(cfg Config) http.Handler {
	a := NewAPI(cfg)
	return a.Router(cfg)
}

// NewAPI returns the API of cfg; Router routes it. cmd/api keeps the API to
// tell it of member changes made on other instances (MembersChanged).
func NewAPI(cfg Config) *API {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.BodyTimeout <= 0 {
		cfg.BodyTimeout = 10 * time.Second
	}
	cfg.Streams.Metrics = cfg.Metrics
	if cfg.Auth.Mode == "" {
		cfg.Auth.Mode = ModeOpen
	}
	return &API{store: cfg.Store, rooms: cfg.Rooms, snapshots: cfg.Snapshots, cluster: cfg.Cluster, maxBody: cfg.MaxBodyBytes, bodyTimeout: cfg.BodyTimeout,
		streams: newStreams(cfg.Streams, cfg.Rooms, cfg.Store, cfg.Snapshots),
		auth:    cfg.Auth, anonymous: auth.AnonymousPrincipal(), members: newMemberCache(cfg.Store, cfg.Auth.MembersTTL),
		limits: cfg.Limits, slots: newStreamSlots(cfg.Limits.MaxStreamsPerSubject, cfg.Limits.MaxStreams), audit: cfg.Audit,
		history: history.NewReader(cfg.Store, cfg.Snapshots.Get)}
}

// Router returns the router with every endpoint and middleware. Every
// route has one access rule (public, caller, admin, createRooms or a role
// in the room); cmd/api's authorization matrix test fails for a route
// without one.
func (a *API) Router(cfg Config) http.Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 30 * time.Second
	}
	r := chi.NewRouter()
	// HEAD of every GET route: the GET's status and headers, no body
	// (net/http drops what a handler writes to a HEAD response).
	r.Use(requestContext(cfg.Logger), clientAddress(a.limits.TrustedProxies), accessLog(cfg.Metrics), recoverer, securityHeaders, middleware.GetHead)
	if !a.auth.jwt() && len(a.auth.Hosts) > 0 {
		r.Use(hostCheck(a.auth.Hosts, a.auth.AnyIPHost))
	}
	if len(a.auth.CORSOrigins) > 0 {
		r.Use(corsHandler(a.auth.CORSOrigins))
	}
	r.Use(requireJSON, a.authenticate, a.csrfCheck)
	viewer, editor, owner := a.needRole(auth.Viewer), a.needRole(auth.Editor), a.needRole(auth.Owner)
	r.NotFound(NotFound)
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, r, problemf(http.StatusMethodNotAllowed, "method_not_allowed", "%s is not allowed here", r.Method))
	})

	r.Get("/healthz", a.healthz)
	if cfg.App != nil {
		r.Get("/", cfg.App.ServeHTTP)
		r.Get("/app/*", cfg.App.ServeHTTP)
	}
	r.Get("/readyz", a.readyz)
	routeDocs(r) // GET /openapi.yaml, GET /docs and /docs/*
	if !a.auth.MetricsElsewhere {
		r.With(a.needAdmin).Method(http.MethodGet, "/metrics", cfg.Metrics.Handler())
	}

	// REST requests get a deadline; event streams must not.
	rest := withTimeout(cfg.RequestTimeout)
	// Each audited route names its action before its access rule and rate
	// limit, which mark the refusals they answer (DESIGN.md 9.5); each
	// limited route has its limit after its access rule, so that refused
	// requests count against nothing (9.4).
	audit := a.audited
	lim := a.limits
	snapshotReads := a.rateLimit(lim.SnapshotReads, false, "snapshot reads")
	r.With(rest, audit(store.AuditSessionCreate), a.needCaller).Post("/session", a.createSession)
	r.With(rest, a.needCaller).Get("/session", a.getSession)
	r.With(rest).Delete("/session", a.deleteSession)
	r.With(rest, audit(store.AuditRoomCreate), a.needCreateRooms, a.rateLimit(lim.Rooms, false, "rooms created")).Post("/rooms", a.createRoom)
	r.With(rest, a.needCaller).Get("/rooms", a.listRooms)
	r.Route("/rooms/{roomID}", func(r chi.Router) {
		// Again here: the top-level GetHead takes this subrouter's mount
		// for a HEAD route and passes GET /rooms/{id}'s HEAD on as HEAD.
		r.Use(roomIDParam, middleware.GetHead)
		r.With(viewer, a.rateLimit(lim.Connects, false, "stream connects"), a.limitStreams, presenceParam).Get("/events", a.serveEvents)
		r.Group(func(r chi.Router) {
			r.Use(rest)
			r.With(viewer).Get("/", a.getRoom)
			r.With(audit(store.AuditRoomRename), owner).Patch("/", a.renameRoom)
			r.With(audit(store.AuditRoomDelete), owner).Delete("/", a.deleteRoom)
			r.With(viewer).Get("/graph", a.getGraph)
			r.With(viewer).Get("/diff", a.getDiff)
			r.With(audit(store.AuditSnapshotRestore), owner).Post("/restore", a.restoreVersion)
			r.With(editor, a.rateLimit(lim.Ops, false, "op posts")).Post("/ops", a.postOps)
			r.With(viewer).Get("/ops", a.listOps)
			r.With(viewer).Get("/presence", a.getPresence)
			r.With(viewer).Patch("/presence/{presenceID}", a.patchPresence)
			r.With(audit(store.AuditSnapshotList), viewer, snapshotReads).Get("/snapshots", a.listSnapshots)
			r.With(audit(store.AuditSnapshotCreate), editor, a.rateLimit(lim.SnapshotCreates, true, "manual snapshots of this room")).Post("/snapshots", a.createSnapshot)
			r.With(audit(store.AuditSnapshotsClear), owner).Delete("/snapshots", a.clearSnapshots)
			r.With(audit(store.AuditSnapshotLatest), viewer, snapshotReads).Get("/snapshots/latest", a.latestSnapshot)
			r.With(viewer).Get("/snapshots/stats", a.roomSnapshotStats)
			r.With(audit(store.AuditSnapshotRead), viewer, snapshotIDParam, snapshotReads).Get("/snapshots/{snapshotID}", a.getSnapshot)
			r.With(audit(store.AuditSnapshotRestore), owner, snapshotIDParam).Post("/snapshots/{snapshotID}/restore", a.restoreSnapshot)
			r.With(owner).Get("/members", a.listMembers)
			r.With(audit(store.AuditMemberSet), owner).Put("/members/{subject}", a.putMember)
			r.With(audit(store.AuditMemberRemove), owner).Delete("/members/{subject}", a.deleteMember)
			r.With(owner).Get("/audit", a.roomAudit)
		})
	})
	r.With(rest, a.needAdmin).Get("/snapshots/stats", a.globalSnapshotStats)
	r.With(rest, a.needAdmin).Get("/audit", a.globalAudit)
	return r
}

func withTimeout(d time.Duration) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), d)
			defer cancel()
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}

func (a *API) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, r, http.StatusOK, map[string]string{"status": "ok"})
}

func (a *API) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := a.store.Ready(ctx); err != nil {
		loggerFrom(ctx).Warn("not ready", "err", err)
		writeProblem(w, r, newProblem(http.StatusServiceUnavailable, "not_ready", "the database is not reachable, not migrated, or cannot take writes"))
		return
	}
	writeJSON(w, r, http.StatusOK, map[string]string{"status": "ok"})
}

// NotFound answers 404 not_found as problem+json; the browser page's
// handler uses it for files it does not have.
func NotFound(w http.ResponseWriter, r *http.Request) {
	writeProblem(w, r, newProblem(http.StatusNotFound, "not_found", "no such endpoint"))
}
