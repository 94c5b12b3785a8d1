package handlers_test

import (
	"context"
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

	st, rooms, snaps, h := fuzzRouter(f, jwtConfig(f))

	ctx := context.Background()
	rm, err := st.CreateRoomBy(ctx, "guarded", "olga")
	if err != nil {
		f.Fatal(err)
	}
	if _, err := st.SetMember(ctx, rm.ID, "vera", "viewer", nil); err != nil {
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
	before := ""

	f.Fuzz(func(t *testing.T, caller, method byte, path, hkey, hval string, body []byte) {
		if before == "" {
			before = storeState(t, st)
		}
		path = strings.NewReplacer("{room}", rm.ID, "{snap}", meta.ID).Replace(path)
		if strings.EqualFold(hkey, "Authorization") || strings.EqualFold(hkey, "Cookie") {
			hkey = "" // who calls is the caller's part
		}
		req, cancel := fuzzRequest(ctx, method, path, hkey, hval, body)
		if req == nil {
			return
		}
		defer cancel()
		m := req.Method
		who := int(caller) % len(callers)
		callers[who](req)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("caller %d: %s %q → %d %s", who, m, path, rec.Code, rec.Body.String())
		}
		if after := storeState(t, st); after != before {
			t.Fatalf("caller %d changed the state with %s %q %q (answered %d %s):\nbefore %s\nafter  %s",
				who, m, path, body, rec.Code, rec.Body.String(), before, after)
		}
	})
}
