package handlers_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/liveshare/liveshare/auth"
	"github.com/liveshare/liveshare/handlers"
	"github.com/liveshare/liveshare/room"
	"github.com/liveshare/liveshare/snapshot"
	"github.com/liveshare/liveshare/store/storetest"
)

// BenchmarkAuthorization measures what authorization adds to a request that
// does little else (GET /rooms/{room}/graph of a loaded, empty room), in
// process: open mode; jwt mode with the role in the token (no members
// read); and jwt mode with the role from the room's creator, through the
// members cache.
func BenchmarkAuthorization(b *testing.B) {
	for _, mode := range []string{"open", "jwt-token", "jwt-owner"} {
		b.Run(mode, func(b *testing.B) {
			st := storetest.Open(b, "sqlite")
			snaps := snapshot.NewRegistry(st, snapshot.Config{Interval: time.Hour, MaxBytes: 10 << 20})
			rooms := room.NewManager(st, room.Options{Snapshots: snaps})
			cfg := handlers.AuthConfig{}
			token := ""
			if mode != "open" {
				cfg = jwtConfig(b)
				token = mint(b, "bench", time.Hour, func(c *auth.Claims) {
					if mode == "jwt-token" {
						c.Rooms = map[string]string{"*": "editor"}
					}
				})
			}
			h := handlers.New(handlers.Config{Store: st, Rooms: rooms, Snapshots: snaps, Auth: cfg})
			rm, err := st.CreateRoomBy(context.Background(), "bench", "bench")
			if err != nil {
				b.Fatal(err)
			}
			req := httptest.NewRequest("GET", "/rooms/"+rm.ID+"/graph", nil)
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
				_, _ = io.Copy(io.Discard, w.Body)
			}
		})
	}
}
