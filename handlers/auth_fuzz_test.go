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

	"github.com/liveshare/liveshare/auth"
	"github.com/liveshare/liveshare/graph"
	"github.com/liveshare/liveshare/handlers"
	"github.com/liveshare/liveshare/room"
	"github.com/liveshare/liveshare/snapshot"
	"github.com/liveshare/liveshare/store"
	"github.com/liveshare/liveshare/web"
)

// FuzzHTTPAsOutsider sends whole requests to the router in jwt mode as a
// caller who may change nothing in the room — no token, a bad one, a token
// for another room, a viewer, or the owner's session cookie from another
// origin — and checks that no answer is a 5xx and that nothing changes:
// not the rooms, their versions, names, snapshots or members.
func FuzzHTTPAsOutsider(f *testing.F) {
	seeds := []struct {
		caller     byte
		method     byte
		path       string
		hkey, hval string
		body       string
	}{
		{0, 1, "/rooms/{room}/ops", "", "", `{"ops":[{"op":"add_node","node":{"id":"a"}}]}`},
		{1, 1, "/rooms/{room}/ops", "", "", `{"ops":[{"op":"add_node","node":{"id":"a"}}]}`},
		{2, 4, "/rooms/{room}", "", "", ""},
		{3, 2, "/rooms/{room}/members/me", "", "", `{"role":"owner"}`},
		{3, 1, "/rooms/{room}/snapshots/{snap}/restore", "", "", ""},
		{4, 1, "/rooms/{room}/ops", "Origin", "https://evil.example", `{"ops":[{"op":"remove_node","id":"n"}]}`},
		{4, 4, "/rooms/{room}/members/vera", "Referer", "https://evil.example/x", ""},
		{3, 1, "/rooms", "", "", `{"name":"mine"}`},
		{2, 0, "/rooms", "", "", ""},
		{3, 1, "/session", "", "", ""},
		{0, 4, "/session", "", "", ""},
	}
	for _, s := range seeds {
		f.Add(s.caller, s.method, s.path, s.hkey, s.hval, []byte(s.body))
	}

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
		App: web.App(http.HandlerFunc(handlers.NotFound)), Streams: handlers.StreamConfig{Done: done}, Auth: jwtConfig(f)})

	ctx := context.Background()
	rm, err := st.CreateRoomBy(ctx, "guarded", "olga")
	if err != nil {
		f.Fatal(err)
	}
	if _, err := st.SetMember(ctx, rm.ID, "vera", "viewer"); err != nil {
		f.Fatal(err)
	}
	op, err := graph.ParseOp([]byte(`{"op":"add_node","node":{"id":"n"}}`))
	if err != nil {
		f.Fatal(err)
	}
	if _, err := rooms.Apply(ctx, rm.ID, room.Write{Ops: []graph.Op{op}}); err != nil {
		f.Fatal(err)
	}
	live, err := rooms.Get(ctx, rm.ID)
	if err != nil {
		f.Fatal(err)
	}
	meta, err := snaps.Take(ctx, live, snapshot.TriggerManual)
	if err != nil {
		f.Fatal(err)
	}
	other := mint(f, "sam", time.Hour, func(c *auth.Claims) { c.Rooms = map[string]string{"00000000-0000-4000-8000-000000000000": "owner"} })
	bad := mint(f, "olga", -time.Hour, func(c *auth.Claims) { c.Admin = true }) // expired
	viewer := mint(f, "vera", time.Hour, nil)
	owner := mint(f, "olga", time.Hour, func(c *auth.Claims) { c.CreateRooms = true })
	callers := []func(*http.Request){
		func(*http.Request) {},
		func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+bad) },
		func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+other) },
		func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+viewer) },
		// The owner's cookie, sent by the browser for a page of another
		// site: refused unless the request is a read.
		func(r *http.Request) {
			r.AddCookie(&http.Cookie{Name: handlers.SessionCookie, Value: owner})
			if r.Header.Get("Origin") == "" && r.Header.Get("Referer") == "" {
				r.Header.Set("Origin", "https://evil.example")
			}
		},
	}
	state := func(t *testing.T) string {
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
	before := ""

	f.Fuzz(func(t *testing.T, caller, method byte, path, hkey, hval string, body []byte) {
		if before == "" {
			before = state(t)
		}
		path = strings.NewReplacer("{room}", rm.ID, "{snap}", meta.ID).Replace(path)
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		m := fuzzMethods[int(method)%len(fuzzMethods)]
		rctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		req, err := http.NewRequestWithContext(rctx, m, "http://liveshare.test"+path, bytes.NewReader(body))
		if err != nil {
			return
		}
		req.Header.Set("Content-Type", "application/json")
		if hkey != "" && !strings.EqualFold(hkey, "Authorization") && !strings.EqualFold(hkey, "Cookie") {
			func() {
				defer func() { _ = recover() }()
				req.Header.Set(hkey, hval)
			}()
		}
		who := int(caller) % len(callers)
		callers[who](req)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("caller %d: %s %q → %d %s", who, m, path, rec.Code, rec.Body.String())
		}
		if after := state(t); after != before {
			t.Fatalf("caller %d changed the state with %s %q %q (answered %d %s):\nbefore %s\nafter  %s",
				who, m, path, body, rec.Code, rec.Body.String(), before, after)
		}
	})
}
