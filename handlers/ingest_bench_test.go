package handlers_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/liveshare/liveshare/handlers"
	"github.com/liveshare/liveshare/metrics"
	"github.com/liveshare/liveshare/room"
	"github.com/liveshare/liveshare/snapshot"
	"github.com/liveshare/liveshare/store/storetest"
)

// discardWriter is a ResponseWriter that keeps only the status, so that a
// benchmark of the router measures the server's side of an exchange.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(status int)      { w.status = status }

// BenchmarkIngestRouter measures the per-request work of POST
// /rooms/{room}/ops through the router as cmd/api builds it (access log at
// warn, metrics, the Host check), without the network: many goroutines post
// 1-op update_node requests into one room, so the room commits them in
// groups. Run with -cpuprofile/-memprofile to see where a request's CPU and
// allocations go; allocs/op is per request.
func BenchmarkIngestRouter(b *testing.B) {
	dialects := []string{"sqlite"}
	if os.Getenv(storetest.EnvDatabaseURL) != "" {
		dialects = append(dialects, "postgres")
	}
	for _, dialect := range dialects {
		b.Run(dialect, func(b *testing.B) {
			st := storetest.Open(b, dialect)
			snaps := snapshot.NewRegistry(st, snapshot.Config{Interval: time.Hour, MaxBytes: 10 << 20})
			mets := metrics.New(prometheus.NewRegistry())
			rooms := room.NewManager(st, room.Options{Snapshots: snaps, Metrics: mets, Shared: dialect == "postgres"})
			log := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}))
			h := handlers.New(handlers.Config{Store: st, Rooms: rooms, Snapshots: snaps, Logger: log, Metrics: mets,
				Auth: handlers.AuthConfig{Hosts: []string{"localhost"}, AnyIPHost: true}})
			rm, err := st.CreateRoom(context.Background(), "bench")
			if err != nil {
				b.Fatal(err)
			}
			path := "/rooms/" + rm.ID + "/ops"
			post := func(body string) int {
				req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:8080"+path, strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.RemoteAddr = "127.0.0.1:40000"
				w := &discardWriter{h: http.Header{}}
				h.ServeHTTP(w, req)
				return w.status
			}
			if s := post(`{"ops":[{"op":"add_node","node":{"id":"n1","kind":"t","label":"n1","x":0,"y":0}}]}`); s != http.StatusOK {
				b.Fatalf("add_node: status %d", s)
			}
			var n atomic.Int64
			b.SetParallelism(16) // 32 writers on 2 cores, as ingest-vs-pgbench
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					x := n.Add(1)
					if s := post(`{"ops":[{"op":"update_node","id":"n1","patch":{"x":` + strconv.FormatInt(x, 10) + `}}]}`); s != http.StatusOK {
						b.Errorf("update_node: status %d", s)
						return
					}
				}
			})
			b.ReportMetric(float64(n.Load())/b.Elapsed().Seconds(), "ops/s")
		})
	}
}
