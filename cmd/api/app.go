package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/liveshare/liveshare/audit"
	"github.com/liveshare/liveshare/cluster"
	"github.com/liveshare/liveshare/handlers"
	"github.com/liveshare/liveshare/metrics"
	"github.com/liveshare/liveshare/room"
	"github.com/liveshare/liveshare/snapshot"
	"github.com/liveshare/liveshare/store"
	"github.com/liveshare/liveshare/web"
)

// App is the LiveShare process: configuration, store, rooms and HTTP server.
type App struct {
	cfg Config
	log *slog.Logger
}

// NewApp returns an App that logs to logOut.
func NewApp(cfg Config, logOut io.Writer) *App {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	var h slog.Handler = slog.NewTextHandler(logOut, opts)
	if cfg.LogFormat == "json" {
		h = slog.NewJSONHandler(logOut, opts)
	}
	return &App{cfg: cfg, log: slog.New(h)}
}

// Run serves until ctx is done, then shuts down gracefully: it ends the event
// streams, stops accepting, lets requests finish within the shutdown timeout,
// stops the background goroutines and closes the database.
func (a *App) Run(ctx context.Context) error {
	if a.cfg.DatabaseURL == "" {
		release, err := store.LockDataDir(a.cfg.DataDir)
		if err != nil {
			return err
		}
		defer release()
	}
	st, err := store.Open(ctx, store.Config{DatabaseURL: a.cfg.DatabaseURL, DataDir: a.cfg.DataDir, Keys: a.cfg.EncryptionKeys})
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	defer func() {
		if err := st.Close(); err != nil {
			a.log.Error("close database", "err", err)
		}
	}()

	// One registry per App, never the global default: tests run several
	// Apps in one process.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mets := metrics.New(reg)

	// Rooms and snapshots log a request's lines with its context: this
	// logger adds the request id to them.
	ctxLog := slog.New(handlers.LogHandler(a.log.Handler()))
	// On PostgreSQL other instances may share the database: reads check it
	// and snapshots are taken once per version across instances.
	shared := st.Dialect() == "postgres"
	var clu *cluster.Cluster
	roomOpts := room.Options{}
	if shared {
		clu = cluster.New(st, cluster.Config{PollInterval: a.cfg.PollInterval, Logger: a.log})
		roomOpts.Events, roomOpts.Presence = clu, clu
	}
	snaps := snapshot.NewRegistry(st, snapshot.Config{
		Interval: a.cfg.SnapshotInterval, Keep: a.cfg.SnapshotKeep, MaxBytes: a.cfg.SnapshotMaxBytes, Logger: ctxLog,
		Metrics: mets, Shared: shared, Hourly: a.cfg.HistoryHourly, Daily: a.cfg.HistoryDaily,
	})
	roomOpts.IdleTimeout, roomOpts.QueueSize, roomOpts.Logger = a.cfg.RoomIdleTimeout, a.cfg.SSEQueue, ctxLog
	roomOpts.Snapshots, roomOpts.SnapshotEveryOps = snaps, a.cfg.SnapshotEveryOps
	roomOpts.StateBudget, roomOpts.Metrics, roomOpts.Shared = snapshot.StateBudget(a.cfg.SnapshotMaxBytes), mets, shared
	rooms := room.NewManager(st, roomOpts)
	mets.WatchRooms(rooms)
	streamsDone := make(chan struct{})
	authCfg, err := a.cfg.Auth.handlerConfig(a.cfg.Addr)
	if err != nil {
		return err
	}
	limits, lowered, err := a.cfg.Limits.handlerLimits(a.cfg.Auth.Mode)
	if err != nil {
		return err
	}
	if lowered {
		a.log.Warn("LIVESHARE_MAX_STREAMS lowered to what the file descriptor limit leaves", "max_streams", limits.MaxStreams, "reserved_descriptors", fdReserve)
	}
	auditLog := audit.New(st, audit.Config{Retention: a.cfg.Limits.AuditRetention, Logger: a.log})
	apiCfg := handlers.Config{
		Store: st, Rooms: rooms, Snapshots: snaps, Cluster: clu, Logger: a.log, MaxBodyBytes: a.cfg.MaxBodyBytes, Metrics: mets,
		App: web.App(http.HandlerFunc(handlers.NotFound)),
		Streams: handlers.StreamConfig{
			Heartbeat: a.cfg.SSEHeartbeat, WriteTimeout: a.cfg.SSEWriteTimeout, Done: streamsDone,
		},
		Auth: authCfg, Limits: limits, Audit: auditLog,
	}
	handlerAPI := handlers.NewAPI(apiCfg)
	api := handlerAPI.Router(apiCfg)
	if clu != nil {
		// Member changes on other instances end the streams they no
		// longer allow here.
		clu.OnMembersChanged(handlerAPI.MembersChanged)
	}
	if a.cfg.Auth.MetricsAddr != "" {
		stopMetrics, err := startMetrics(a.cfg.Auth.MetricsAddr, mets.Handler(), a.log)
		if err != nil {
			return err
		}
		defer stopMetrics()
	}

	if a.cfg.PprofAddr != "" {
		stopPprof, err := startPprof(a.cfg.PprofAddr, a.log)
		if err != nil {
			return err
		}
		defer stopPprof()
	}
	ln, err := net.Listen("tcp", a.cfg.Addr)
	if err != nil {
		return listenError("LIVESHARE_ADDR", "addr", a.cfg.Addr, err)
	}
	srv := &http.Server{
		Handler:           api,
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    64 << 10, // DESIGN 9.7: no caller needs more
		ReadTimeout:       60 * time.Second,
		IdleTimeout:       120 * time.Second,
		// No WriteTimeout: it would cut event streams; they set their own
		// deadline per write.
		ErrorLog:    slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}

	bgCtx, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	var bg sync.WaitGroup
	bg.Go(func() { rooms.Run(bgCtx) })
	bg.Go(func() { snaps.Run(bgCtx, rooms) })
	bg.Go(func() { a.pruneIdempotencyKeys(bgCtx, st) })
	if st.Dialect() == "sqlite" && a.cfg.EncryptionKeys != nil {
		bg.Go(func() { a.resealInBackground(bgCtx, st) })
	}
	// Stopped after the server: its last flush writes the rows of the
	// last requests.
	bg.Go(func() { auditLog.Run(bgCtx) })
	if clu != nil {
		if err := a.runCluster(bgCtx, clu, rooms, &bg); err != nil {
			stopBackground()
			bg.Wait()
			return err
		}
	}
	defer func() {
		stopBackground()
		bg.Wait()
	}()

	database := "sqlite " + filepath.Join(a.cfg.DataDir, "liveshare.db")
	if st.Dialect() == "postgres" {
		database = "postgres"
	}
	// Which key seals, never the key: operators check a rotation here.
	sealing := "off"
	if k := a.cfg.EncryptionKeys; k != nil {
		sealing = "key " + k.Current()
	}
	a.log.Info("listening", "addr", ln.Addr().String(), "database", database, "auth", a.cfg.Auth.Mode, "encryption", sealing,
		"max_streams", limits.MaxStreams, "max_streams_per_subject", limits.MaxStreamsPerSubject)
	// Someone who just ran `go run ./cmd/api` wants to know where to go:
	// URLs a terminal makes clickable, for the page and the API docs.
	base := browseURL(ln.Addr().String(), a.cfg.Auth.PublicURL)
	if a.cfg.Auth.Mode == handlers.ModeJWT {
		a.log.Info("open the editor", "url", base+"/", "sign_in", "add #token=<token> to the URL, or paste a token")
	} else {
		a.log.Info("open the editor", "url", base+"/")
	}
	a.log.Info("API docs", "url", base+"/docs", "spec", base+"/openapi.yaml")

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	a.log.Info("shutting down")
	// Event streams never end by themselves: end them first, or Shutdown
	// would wait for them until its deadline.
	close(streamsDone)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		a.log.Warn("shutdown did not finish in time", "err", err)
		_ = srv.Close()
	}
	// Streams that took their connection over from the server are not
	// Shutdown's: wait for them too (they ended on streamsDone).
	if err := handlerAPI.WaitStreams(shutdownCtx); err != nil {
		a.log.Warn("event streams did not end in time", "err", err)
	}
	if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	// No request runs now: stop the scheduler, then snapshot what changed
	// so the next start loads fast. The ops are durable either way.
	stopBackground()
	bg.Wait()
	// Its own deadline: Shutdown may have used all of shutdownCtx.
	finalCtx, cancelFinal := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancelFinal()
	snaps.SnapshotChanged(finalCtx, rooms, snapshot.TriggerShutdown)
	rooms.Close()
	a.log.Info("stopped")
	return nil
}

// browseURL is the base URL to open the service at: LIVESHARE_PUBLIC_URL
// when it is set (behind a proxy the listen address is not what users
// reach), otherwise the bound address, with localhost for an address that
// listens on every interface (0.0.0.0 is not a place a browser can go).
func browseURL(bound string, public *url.URL) string {
	if public != nil {
		return strings.TrimSuffix(public.Scheme+"://"+public.Host+public.Path, "/")
	}
	host, port, err := net.SplitHostPort(bound)
	if err != nil {
		return "http://" + bound
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// listenError explains a failed listen on addr, the value of the setting
// env (flag -flag). A port in use is the common case on a laptop (a second
// LiveShare, another dev server): the answer names the setting to change,
// not only the system's "address already in use".
func listenError(env, flag, addr string, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		// The system's error repeats the address twice; its cause is
		// what matters (and stays testable with errors.Is).
		return fmt.Errorf("listen on %s: %w: another process holds the port; choose another with -%s or %s (port 0 picks a free one)", addr, syscall.EADDRINUSE, flag, env)
	}
	return fmt.Errorf("listen on %s (%s, -%s): %w", addr, env, flag, err)
}

// runCluster starts this instance's part in the cluster on bg; it fails
// when the instance cannot register or listen.
func (a *App) runCluster(ctx context.Context, clu *cluster.Cluster, rooms *room.Manager, bg *sync.WaitGroup) error {
	started := make(chan error, 1)
	bg.Go(func() {
		err := clu.Run(ctx, rooms, func() { started <- nil })
		if err != nil {
			started <- err
		}
	})
	return <-started
}

// resealInBackground re-seals, while the server serves, every row of the
// embedded database that is not under the current key: rows stored before
// keys were set, or under a key now listed after the current one. The
// embedded database belongs to this process, so `rekey` cannot run beside
// it; restarting with the new key first does the same here. Rekey commits
// batch by batch beside the room's writers, so a stop (kill -9 included)
// loses nothing and the next start resumes.
func (a *App) resealInBackground(ctx context.Context, st *store.Store) {
	res, err := st.Rekey(ctx, rekeyBatch, nil)
	switch {
	case err != nil && ctx.Err() != nil:
		a.log.Info("re-sealing stopped with the server; the next start resumes it", "ops", res.Ops, "snapshots", res.Snapshots)
	case err != nil:
		a.log.Error("re-sealing under the current key failed; the next start tries again", "err", err, "ops", res.Ops, "snapshots", res.Snapshots)
	case res.Ops+res.Snapshots > 0 || len(res.Retired) > 0:
		a.log.Info("re-sealed under the current key", "key", a.cfg.EncryptionKeys.Current(),
			"ops", res.Ops, "snapshots", res.Snapshots, "unopenable", res.Unopenable,
			"remaining", res.Remaining, "retired_keys", strings.Join(res.Retired, ","))
	}
}

// rekeyBatch is how many op rows the server re-seals per transaction:
// small, so that a room's writers wait for no long write lock.
const rekeyBatch = 200

// pruneIdempotencyKeys deletes expired idempotency keys every hour until ctx
// is done; without it the table keeps a row per keyed request forever.
func (a *App) pruneIdempotencyKeys(ctx context.Context, st *store.Store) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n, err := st.PruneIdempotencyKeys(ctx)
			if err != nil {
				a.log.Warn("prune idempotency keys", "err", err)
				continue
			}
			a.log.Debug("pruned idempotency keys", "count", n)
		}
	}
}
