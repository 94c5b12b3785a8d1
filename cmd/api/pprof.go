package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// startPprof serves the runtime profiles (net/http/pprof) on their own
// listener at addr, apart from the API so that they are never exposed with
// it. It returns a function that stops the listener.
func startPprof(addr string, log *slog.Logger) (stop func(), err error) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	// No WriteTimeout: a CPU profile or trace streams for as long as asked.
	return serveSide("pprof", addr, &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, log)
}

// sideSettings name the setting of each listener beside the API, for the
// error that says which one to change.
var sideSettings = map[string]struct{ env, flag string }{
	"metrics": {"LIVESHARE_METRICS_ADDR", "metrics-addr"},
	"pprof":   {"LIVESHARE_PPROF_ADDR", "pprof-addr"},
}

// serveSide serves srv on its own listener at addr, beside the API (what
// names it in errors and logs), and returns a function that stops it.
func serveSide(what, addr string, srv *http.Server, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if s, ok := sideSettings[what]; ok {
			return nil, fmt.Errorf("%s: %w", what, listenError(s.env, s.flag, addr, err))
		}
		return nil, fmt.Errorf("listen for %s on %s: %w", what, addr, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error(what+" server", "err", err)
		}
	}()
	log.Info(what+" listening", "addr", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			_ = srv.Close()
		}
		<-done
	}, nil
}
