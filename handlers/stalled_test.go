package handlers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/liveshare/liveshare/handlers"
	"github.com/liveshare/liveshare/metrics"
	"github.com/liveshare/liveshare/room"
	"github.com/liveshare/liveshare/snapshot"
	"github.com/liveshare/liveshare/store"
	"github.com/liveshare/liveshare/store/storetest"
)

// stallingLoads is a store whose op log reads of one room hang until their
// context ends, as a call on a stuck database connection does: the room's
// load hangs, nothing else.
type stallingLoads struct {
	*store.Store
	roomID string
}

func (s stallingLoads) OpsSince(ctx context.Context, roomID string, since int64, limit int) ([]store.OpRecord, error) {
	if roomID == s.roomID {
		<-ctx.Done()
		return nil, fmt.Errorf("read ops of room %s: %w", roomID, ctx.Err())
	}
	return s.Store.OpsSince(ctx, roomID, since, limit)
}

// timedAnswer is an HTTP answer and how long it took.
type timedAnswer struct {
	status int
	header http.Header
	body   []byte
	took   time.Duration
}

func timedRequest(t *testing.T, method, url, body string) timedAnswer {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	// The client's own bound: an answer that never comes fails the test.
	client := &http.Client{Timeout: 15 * time.Second}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return timedAnswer{status: resp.StatusCode, header: resp.Header, body: data, took: time.Since(start)}
}

// wantUnavailable checks a 503 unavailable problem with Retry-After, sent
// at the request's deadline, not before it and not long after.
func wantUnavailable(t *testing.T, what string, a timedAnswer, deadline time.Duration) {
	t.Helper()
	var p struct {
		Code   string `json:"code"`
		Status int    `json:"status"`
	}
	_ = json.Unmarshal(a.body, &p)
	if a.status != http.StatusServiceUnavailable || p.Code != "unavailable" || p.Status != http.StatusServiceUnavailable {
		t.Errorf("%s: %d %s, want 503 unavailable", what, a.status, a.body)
	}
	if a.header.Get("Retry-After") == "" {
		t.Errorf("%s: no Retry-After", what)
	}
	if a.took < deadline || a.took > deadline+5*time.Second {
		t.Errorf("%s: answered after %s, want at the request deadline of %s", what, a.took, deadline)
	}
}

// TestStalledDatabaseThroughHTTP: with one room's commits locked out in the
// database (a real lock, held by a session of the test's own) and another
// room's load hanging, the API answers every request in time: writes to
// the stalled room and reads of the hung room get 503 unavailable with
// Retry-After at the request deadline, /metrics answers, another room
// takes writes where the database allows, and DELETE of the room whose
// load hangs returns.
func TestStalledDatabaseThroughHTTP(t *testing.T) {
	storetest.Dialects(t, func(t *testing.T, cfg store.Config) {
		ctx := context.Background()
		st, err := store.Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		rowLocks := cfg.DatabaseURL != "" // SQLite's write lock is every room's
		var ids [3]string
		for i := range ids {
			rm, err := st.CreateRoom(ctx, "stalled")
			if err != nil {
				t.Fatal(err)
			}
			ids[i] = rm.ID
		}
		stalled, other, hung := ids[0], ids[1], ids[2]

		const deadline = 500 * time.Millisecond
		const loadTimeout = 10 * deadline
		mets := metrics.New(prometheus.NewRegistry())
		snaps := snapshot.NewRegistry(st, snapshot.Config{Interval: time.Hour, Keep: 3, MaxBytes: 1 << 20, Shared: rowLocks})
		rooms := room.NewManager(stallingLoads{Store: st, roomID: hung},
			room.Options{Snapshots: snaps, Shared: rowLocks, Metrics: mets, LoadTimeout: loadTimeout})
		mets.WatchRooms(rooms)
		done := make(chan struct{})
		srv := httptest.NewServer(handlers.New(handlers.Config{
			Store: st, Rooms: rooms, Snapshots: snaps, Metrics: mets, RequestTimeout: deadline,
			Streams: handlers.StreamConfig{Done: done},
		}))
		// Cleanups run last first: the lock goes (registered below), then
		// the server, then the rooms' work is waited for.
		t.Cleanup(rooms.Close)
		t.Cleanup(func() { close(done); srv.Close() })

		for _, id := range []string{stalled, other} {
			if a := timedRequest(t, "POST", srv.URL+"/rooms/"+id+"/ops", addNodes("before")); a.status != http.StatusOK {
				t.Fatalf("write before the lock: %d %s", a.status, a.body)
			}
		}
		release := storetest.HoldCommitLock(t, cfg, stalled)

		wantUnavailable(t, "a write to the stalled room",
			timedRequest(t, "POST", srv.URL+"/rooms/"+stalled+"/ops", addNodes("during")), deadline)
		if a := timedRequest(t, "GET", srv.URL+"/metrics", ""); a.status != http.StatusOK || !strings.Contains(string(a.body), "liveshare_room_live") {
			t.Errorf("GET /metrics while a commit is stalled: %d", a.status)
		}
		if rowLocks {
			if a := timedRequest(t, "POST", srv.URL+"/rooms/"+other+"/ops", addNodes("during")); a.status != http.StatusOK {
				t.Errorf("a write to another room: %d %s", a.status, a.body)
			}
		}
		if a := timedRequest(t, "GET", srv.URL+"/rooms/"+other+"/graph", ""); a.status != http.StatusOK {
			t.Errorf("reading another room: %d %s", a.status, a.body)
		}

		if rowLocks {
			// Deleting the row waits for the lock: the database call is cut
			// short by the request's deadline.
			wantUnavailable(t, "DELETE of the stalled room",
				timedRequest(t, "DELETE", srv.URL+"/rooms/"+stalled, ""), deadline)
		}
		release() // SQLite: DELETE needs the write lock

		wantUnavailable(t, "reading the room whose load hangs",
			timedRequest(t, "GET", srv.URL+"/rooms/"+hung+"/graph", ""), deadline)
		// Well before the load's own deadline: DELETE must not wait for it.
		if a := timedRequest(t, "DELETE", srv.URL+"/rooms/"+hung, ""); a.status != http.StatusNoContent || a.took > loadTimeout/2 {
			t.Errorf("DELETE of the room whose load hangs: %d after %s %s", a.status, a.took, a.body)
		}
		if a := timedRequest(t, "GET", srv.URL+"/rooms/"+hung, ""); a.status != http.StatusNotFound {
			t.Errorf("the deleted room: %d %s", a.status, a.body)
		}
	})
}
