package handlers_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/liveshare/liveshare/handlers"
	"github.com/liveshare/liveshare/room"
	"github.com/liveshare/liveshare/snapshot"
	"github.com/liveshare/liveshare/store/storetest"
)

// BenchmarkPostOps measures POST /rooms/{room}/ops over real HTTP into one
// room: each iteration is one acknowledged (committed) request. ops/s is the
// number of ops committed per second.
func BenchmarkPostOps(b *testing.B) {
	dialects := []string{"sqlite"}
	if os.Getenv(storetest.EnvDatabaseURL) != "" {
		dialects = append(dialects, "postgres")
	}
	for _, dialect := range dialects {
		for _, size := range []int{1, 100} {
			b.Run(fmt.Sprintf("%s/batch=%d", dialect, size), func(b *testing.B) {
				st := storetest.Open(b, dialect)
				snaps := snapshot.NewRegistry(st, snapshot.Config{Interval: time.Hour, MaxBytes: 10 << 20})
				rooms := room.NewManager(st, room.Options{Snapshots: snaps})
				srv := httptest.NewServer(handlers.New(handlers.Config{Store: st, Rooms: rooms, Snapshots: snaps}))
				defer srv.Close()
				rm, err := st.CreateRoom(context.Background(), "bench")
				if err != nil {
					b.Fatal(err)
				}
				url := srv.URL + "/rooms/" + rm.ID + "/ops"
				n := 0
				b.ResetTimer()
				for b.Loop() {
					var sb strings.Builder
					sb.WriteString(`{"ops":[`)
					for j := range size {
						if j > 0 {
							sb.WriteByte(',')
						}
						fmt.Fprintf(&sb, `{"op":"add_node","node":{"id":"n%d","kind":"table","x":%d,"y":1}}`, n, j)
						n++
					}
					sb.WriteString(`]}`)
					resp, err := http.Post(url, "application/json", bytes.NewReader([]byte(sb.String())))
					if err != nil {
						b.Fatal(err)
					}
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						b.Fatalf("status %d", resp.StatusCode)
					}
				}
				b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "ops/s")
			})
		}
	}
}
