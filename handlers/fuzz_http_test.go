package handlers_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/liveshare/liveshare/graph"
	"github.com/liveshare/liveshare/handlers"
	"github.com/liveshare/liveshare/room"
	"github.com/liveshare/liveshare/snapshot"
	"github.com/liveshare/liveshare/store"
	"github.com/liveshare/liveshare/web"
)

var fuzzMethods = []string{"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}

// FuzzHTTP sends whole requests — method, path, one header, body — to the
// real router over an SQLite store: no answer is a 5xx or a panic, and a
// refused request changes nothing. "{room}" and "{snap}" in the path stand
// for a live room and one of its snapshots.
func FuzzHTTP(f *testing.F) {
	seeds := []struct {
		method     byte
		path       string
		hkey, hval string
		body       string
	}{
		{1, "/rooms/{room}/ops", "Idempotency-Key", "k1", `{"ops":[{"op":"add_node","node":{"id":"a"}}]}`},
		{1, "/rooms/{room}/ops", "", "", `{"ops":[{"op":"update_node","id":"n","patch":{"x":1,"data":{"a":[1,{"b":null}]}}}],"base_version":1}`},
		{1, "/rooms/{room}/ops", "", "", `{"ops":[{"op":"add_edge","edge":{"id":"e","source":"n","target":"n"}}],"client_id":"c"}`},
		{1, "/rooms", "", "", `{"name":"r"}`},
		{0, "/rooms?limit=2&cursor=abc", "", "", ""},
		{0, "/rooms/{room}/ops?since=0&limit=5", "", "", ""},
		{0, "/rooms/{room}/graph", "If-None-Match", `"1"`, ""},
		{1, "/rooms/{room}/snapshots", "", "", ""},
		{1, "/rooms/{room}/snapshots/{snap}/restore", "Idempotency-Key", "r1", ""},
		{0, "/rooms/{room}/snapshots/{snap}", "Accept", "application/octet-stream", ""},
		{4, "/rooms/{room}/snapshots", "", "", ""},
		{0, "/rooms/{room}/events", "Last-Event-ID", "1", ""},
		{5, "/healthz", "", "", ""},
		{0, "/docs/x", "", "", ""},
		{1, "/rooms/{room}/ops", "", "", "{\"ops\":[{\"op\":\"add_node\",\"node\":{\"id\":\"\xff\"}}]}"},
		{1, "/rooms/{room}/ops", "", "", `{"ops":[],"ops":[]}`},
	}
	for _, s := range seeds {
		f.Add(s.method, s.path, s.hkey, s.hval, []byte(s.body))
	}

	st, rooms, snaps, h := fuzzRouter(f, handlers.AuthConfig{})

	ctx := context.Background()
	var roomID, snapID string
	ensureRoom := func(t *testing.T) {
		if roomID != "" {
			if _, err := st.GetRoom(ctx, roomID); err == nil {
				return
			}
		}
		rm, err := st.CreateRoom(ctx, "fuzz")
		if err != nil {
			t.Fatal(err)
		}
		roomID = rm.ID
		r, err := rooms.Apply(ctx, roomID, room.Write{Ops: mustOps(t, `{"op":"add_node","node":{"id":"n"}}`)})
		if err != nil || r.Version != 1 {
			t.Fatalf("seed the room: %v", err)
		}
		live, err := rooms.Get(ctx, roomID)
		if err != nil {
			t.Fatal(err)
		}
		meta, err := snaps.Take(ctx, live, snapshot.TriggerManual)
		if err != nil {
			t.Fatal(err)
		}
		snapID = meta.ID
	}
	f.Fuzz(func(t *testing.T, method byte, path, hkey, hval string, body []byte) {
		ensureRoom(t)
		path = strings.NewReplacer("{room}", roomID, "{snap}", snapID).Replace(path)
		req, cancel := fuzzRequest(ctx, method, path, hkey, hval, body)
		if req == nil {
			return // not a request a client could send
		}
		defer cancel()
		m := req.Method
		before := storeState(t, st)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %q (%s: %q) %q → %d %s", m, path, hkey, hval, body, rec.Code, rec.Body.String())
		}
		if rec.Code >= 400 {
			if after := storeState(t, st); after != before {
				t.Fatalf("%s %q %q was refused with %d but changed the state:\nbefore %s\nafter  %s", m, path, body, rec.Code, before, after)
			}
		}
	})
}

// fuzzRouter is the real router over a fresh SQLite store, with auth.
func fuzzRouter(f *testing.F, ac handlers.AuthConfig) (*store.Store, *room.Manager, *snapshot.Registry, http.Handler) {
	st, err := store.Open(context.Background(), store.Config{DataDir: f.TempDir()})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	snaps := snapshot.NewRegistry(st, snapshot.Config{Interval: time.Hour, Keep: 3, MaxBytes: 1 << 20})
	rooms := room.NewManager(st, room.Options{Snapshots: snaps, StateBudget: snapshot.StateBudget(1 << 20)})
	f.Cleanup(rooms.Close)
	done := make(chan struct{})
	f.Cleanup(func() { close(done) })
	h := handlers.New(handlers.Config{Store: st, Rooms: rooms, Snapshots: snaps, MaxBodyBytes: 64 << 10,
		App: web.App(http.HandlerFunc(handlers.NotFound)), Streams: handlers.StreamConfig{Done: done}, Auth: ac})
	return st, rooms, snaps, h
}

// fuzzRequest builds a JSON request from fuzzed parts, with a deadline
// that ends an event stream; nil when no client could send it. A header
// named hkey is set unless its name is not sendable.
func fuzzRequest(ctx context.Context, method byte, path, hkey, hval string, body []byte) (*http.Request, context.CancelFunc) {
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	m := fuzzMethods[int(method)%len(fuzzMethods)]
	rctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	req, err := http.NewRequestWithContext(rctx, m, "http://liveshare.test"+path, bytes.NewReader(body))
	if err != nil {
		cancel()
		return nil, nil
	}
	req.Header.Set("Content-Type", "application/json")
	if hkey != "" {
		func() {
			defer func() { _ = recover() }() // an invalid header name
			req.Header.Set(hkey, hval)
		}()
	}
	return req, cancel
}

// storeState is what a refused request must leave as it was: the rooms,
// their names, versions and members, and the number of snapshots.
func storeState(t *testing.T, st *store.Store) string {
	ctx := context.Background()
	list, _, err := st.ListRooms(ctx, 100, "")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, r := range list {
		v, _, err := st.RoomVersion(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		ms, err := st.Members(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s=%s@%d members=%v ", r.ID, r.Name, v, ms)
	}
	tot, err := st.SnapshotTotals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&b, "snapshots=%d", tot.Snapshots)
	return b.String()
}

func mustOps(t *testing.T, ops ...string) []graph.Op {
	t.Helper()
	out := make([]graph.Op, len(ops))
	for i, s := range ops {
		op, err := graph.ParseOp([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		out[i] = op
	}
	return out
}
