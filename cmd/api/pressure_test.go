package main_test

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/liveshare/liveshare/store"
)

var pprofLine = regexp.MustCompile(`msg="pprof listening" addr=(\S+)`)

// heapInuse forces a garbage collection in the server (the heap profile's
// gc=1) and returns its heap in use after it, from the runtime.MemStats the
// profile's text form ends with.
func (s *server) heapInuse() int64 {
	s.t.Helper()
	m := pprofLine.FindStringSubmatch(s.logs.String())
	if m == nil {
		s.t.Fatal("the server did not log its pprof address")
	}
	var inuse int64 = -1
	// Twice: the first collection may leave finalizers' memory behind.
	for range 2 {
		resp, err := http.Get("http://" + m[1] + "/debug/pprof/heap?gc=1&debug=1")
		if err != nil {
			s.t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			s.t.Fatalf("heap profile: %d %v", resp.StatusCode, err)
		}
		v := regexp.MustCompile(`(?m)^# HeapInuse = (\d+)$`).FindSubmatch(body)
		if v == nil {
			s.t.Fatal("the heap profile has no HeapInuse")
		}
		inuse, _ = strconv.ParseInt(string(v[1]), 10, 64)
	}
	return inuse
}

// TestSnapshotsOfEvictedRoomsAreNotKept: 8 rooms with ten snapshots of about
// 2 MB each, evicted from memory; one GET …/snapshots/latest per room must
// not leave their snapshots in the server's memory: the heap in use after
// a forced collection grows by less than 40 MiB (keeping every snapshot of
// the rooms would take 160 MB; keeping the one served of each, 16 MB).
//
// Not in parallel with the other tests: its rooms must stay in memory
// between a post and the snapshot after it while their idle timeout is 1 s,
// which a machine busy with the other tests' servers does not promise.
func TestSnapshotsOfEvictedRoomsAreNotKept(t *testing.T) {
	if testing.Short() {
		t.Skip("stores 160 MB of snapshots")
	}
	const (
		rooms       = 8
		snapshots   = 10
		nodes       = 56
		nodeBytes   = 48 << 10 // base64 text: 56 of them encode to about 2 MB
		maxGrowth   = 40 << 20
		minSnapshot = 3 << 19 // 1.5 MB: the snapshots must be as large as meant
	)
	databases(t, func(t *testing.T, cfg store.Config) {
		srv := startServer(t, cfg,
			"LIVESHARE_PPROF_ADDR=127.0.0.1:0",
			"LIVESHARE_ROOM_IDLE_TIMEOUT=1s",
			"LIVESHARE_SNAPSHOT_INTERVAL=1h",
			"LIVESHARE_MAX_BODY_BYTES=8388608",
			"LIVESHARE_LOG_LEVEL=info",
		)
		ids := make([]string, rooms)
		for i := range ids {
			ids[i] = srv.createRoom(fmt.Sprintf("pressure-%d", i)).ID
			srv.snapPost(ids[i], bigNodes("n", nodes, nodeBytes))
			for k := range snapshots {
				srv.snapPost(ids[i], []map[string]any{{"op": "update_node", "id": "n-0", "patch": map[string]any{"x": k}}})
				if m := srv.snapTake(ids[i]); m.SizeBytes < minSnapshot {
					t.Fatalf("snapshot of %d bytes, want at least %d", m.SizeBytes, minSnapshot)
				}
			}
		}
		for deadline := time.Now().Add(30 * time.Second); srv.scrape().get("liveshare_room_live") != 0; time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%v rooms still in memory after 30s", srv.scrape().get("liveshare_room_live"))
			}
		}

		before := srv.heapInuse()
		for _, id := range ids {
			r := srv.must("GET", "/rooms/"+id+"/snapshots/latest", nil)
			if r.Status != http.StatusOK {
				t.Fatalf("latest snapshot: %d %s", r.Status, r.Body)
			}
			var s snapWithState
			r.decode(t, &s)
			if len(s.State.Nodes) != nodes || s.Version != nodes+snapshots {
				t.Fatalf("latest snapshot at version %d with %d nodes", s.Version, len(s.State.Nodes))
			}
		}
		after := srv.heapInuse()
		t.Logf("heap in use after GC: %.1f MB before, %.1f MB after one latest snapshot per room", float64(before)/1e6, float64(after)/1e6)
		if growth := after - before; growth >= maxGrowth {
			t.Errorf("heap in use grew by %.1f MB, want less than %d MiB", float64(growth)/1e6, maxGrowth>>20)
		}
	})
}
