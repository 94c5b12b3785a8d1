package handlers_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/liveshare/liveshare/auth"
	"github.com/liveshare/liveshare/handlers"
	"github.com/liveshare/liveshare/store/storetest"
)

// call sends one request with header pairs and reads the answer whole.
func call(t testing.TB, method, url, body string, header ...string) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(data)
}

func problemCode(t testing.TB, body string) string {
	t.Helper()
	var p struct{ Code string }
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatalf("not a problem: %q", body)
	}
	return p.Code
}

func roomVersion(t testing.TB, srv *testServer, id string) int64 {
	t.Helper()
	rm, err := srv.Store.GetRoom(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return rm.Version
}

// TestCrossSitePostsRefused: what a page of another site can send without a
// preflight — a form, a no-cors fetch with text/plain, or no type at all —
// is refused with 415 and applies nothing, in open mode.
func TestCrossSitePostsRefused(t *testing.T) {
	srv := newTestServer(t, storetest.Open(t, "sqlite"), serverOptions{})
	id := srv.createRoom()
	ops := `{"ops":[{"op":"add_node","node":{"id":"evil"}}]}`
	for _, ct := range []string{"text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""} {
		for _, path := range []string{"/rooms/" + id + "/ops", "/rooms/" + id + "/snapshots", "/rooms"} {
			h := []string{}
			if ct != "" {
				h = []string{"Content-Type", ct}
			}
			resp, body := call(t, "POST", srv.URL+path, ops, h...)
			if resp.StatusCode != http.StatusUnsupportedMediaType || problemCode(t, body) != "unsupported_media_type" ||
				resp.Header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("POST %s as %q: %d %s", path, ct, resp.StatusCode, body)
			}
		}
	}
	if v := roomVersion(t, srv, id); v != 0 {
		t.Errorf("room at version %d after refused posts, want 0", v)
	}
	if rooms, _, _ := srv.Store.ListRooms(context.Background(), 10, ""); len(rooms) != 1 {
		t.Errorf("%d rooms after refused creates, want 1", len(rooms))
	}
	if snaps, _ := srv.Store.ListSnapshots(context.Background(), id); len(snaps) != 0 {
		t.Errorf("%d snapshots after refused creates", len(snaps))
	}
	// JSON with a charset is JSON.
	if resp, body := call(t, "POST", srv.URL+"/rooms/"+id+"/ops", ops, "Content-Type", "application/json; charset=utf-8"); resp.StatusCode != 200 {
		t.Errorf("application/json; charset=utf-8: %d %s", resp.StatusCode, body)
	}
}

// TestHostCheck: in open mode only the server's own names are answered, so a
// DNS-rebinding page gets 421 and changes nothing.
func TestHostCheck(t *testing.T) {
	srv := newTestServer(t, storetest.Open(t, "sqlite"), serverOptions{auth: handlers.AuthConfig{Hosts: []string{"localhost", "127.0.0.1", "::1"}}})
	id := srv.createRoom()
	for _, host := range []string{"attacker.example", "localhost.attacker.example", "10.0.0.1"} {
		req, _ := http.NewRequest("POST", srv.URL+"/rooms/"+id+"/ops", strings.NewReader(`{"ops":[{"op":"add_node","node":{"id":"x"}}]}`))
		req.Host = host
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusMisdirectedRequest || problemCode(t, string(body)) != "misdirected_request" {
			t.Errorf("Host %s: %d %s", host, resp.StatusCode, body)
		}
	}
	if v := roomVersion(t, srv, id); v != 0 {
		t.Errorf("version %d after misdirected posts", v)
	}
	u, _ := url.Parse(srv.URL)
	for _, host := range []string{"localhost:" + u.Port(), "127.0.0.1:" + u.Port(), "[::1]:" + u.Port(), "LOCALHOST"} {
		req, _ := http.NewRequest("GET", srv.URL+"/rooms/"+id, nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("Host %s: %d", host, resp.StatusCode)
		}
	}
}

func TestSecurityHeaders(t *testing.T) {
	srv := newTestServer(t, storetest.Open(t, "sqlite"), serverOptions{auth: jwtConfig(t)})
	tok := mint(t, "alice", time.Hour, func(c *auth.Claims) { c.CreateRooms = true })
	resp, body := call(t, "POST", srv.URL+"/rooms", `{}`, "Authorization", "Bearer "+tok, "Content-Type", "application/json")
	if resp.StatusCode != 201 {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	var rm struct{ ID string }
	_ = json.Unmarshal([]byte(body), &rm)
	for _, path := range []string{"/rooms", "/rooms/" + rm.ID, "/rooms/" + rm.ID + "/graph", "/session"} {
		resp, _ := call(t, "GET", srv.URL+path, "", "Authorization", "Bearer "+tok)
		if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: %d, Cache-Control %q, X-Content-Type-Options %q", path, resp.StatusCode, resp.Header.Get("Cache-Control"), resp.Header.Get("X-Content-Type-Options"))
		}
	}
	for _, path := range []string{"/healthz", "/rooms"} {
		resp, _ := call(t, "GET", srv.URL+path, "")
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s without a token: no nosniff", path)
		}
	}
}

// TestCSRF: a request authenticated by the session cookie changes something
// only from the service's own origin (or a CORS origin).
func TestCSRF(t *testing.T) {
	srv := newTestServer(t, storetest.Open(t, "sqlite"), serverOptions{auth: func() handlers.AuthConfig {
		c := jwtConfig(t)
		c.CORSOrigins = []string{"https://app.example"}
		return c
	}()})
	tok := mint(t, "alice", time.Hour, func(c *auth.Claims) { c.CreateRooms = true })
	resp, body := call(t, "POST", srv.URL+"/rooms", `{}`, "Authorization", "Bearer "+tok, "Content-Type", "application/json")
	var rm struct{ ID string }
	_ = json.Unmarshal([]byte(body), &rm)
	resp, _ = call(t, "POST", srv.URL+"/session", "", "Authorization", "Bearer "+tok, "Content-Type", "application/json")
	cookie := ""
	for _, ck := range resp.Cookies() {
		if ck.Name == handlers.SessionCookie {
			cookie = ck.Name + "=" + ck.Value
		}
	}
	if cookie == "" {
		t.Fatal("no session cookie")
	}
	ops := "/rooms/" + rm.ID + "/ops"
	add := func(id string) string { return `{"ops":[{"op":"add_node","node":{"id":"` + id + `"}}]}` }
	cases := []struct {
		name   string
		header []string
		want   int
	}{
		{"foreign origin", []string{"Origin", "https://evil.example"}, 403},
		{"no origin, foreign referer", []string{"Referer", "https://evil.example/page"}, 403},
		{"neither", nil, 403},
		{"null origin", []string{"Origin", "null"}, 403},
		{"own origin", []string{"Origin", srv.URL}, 200},
		{"own referer", []string{"Referer", srv.URL + "/?room=x"}, 200},
		{"CORS origin", []string{"Origin", "https://app.example"}, 200},
	}
	applied := int64(0)
	for i, c := range cases {
		h := append([]string{"Cookie", cookie, "Content-Type", "application/json"}, c.header...)
		resp, body := call(t, "POST", srv.URL+ops, add(string(rune('a'+i))), h...)
		if resp.StatusCode != c.want {
			t.Errorf("%s: %d %s, want %d", c.name, resp.StatusCode, body, c.want)
			continue
		}
		if c.want == 403 && problemCode(t, body) != "csrf_rejected" {
			t.Errorf("%s: code %s, want csrf_rejected", c.name, problemCode(t, body))
		}
		if c.want == 200 {
			applied++
		}
		if v := roomVersion(t, srv, rm.ID); v != applied {
			t.Errorf("%s: version %d, want %d", c.name, v, applied)
		}
	}
	// Reads with the cookie need no origin; a bearer token needs none
	// either (no browser attaches it by itself).
	if resp, body := call(t, "GET", srv.URL+"/rooms/"+rm.ID, "", "Cookie", cookie); resp.StatusCode != 200 {
		t.Errorf("read with the cookie: %d %s", resp.StatusCode, body)
	}
	if resp, body := call(t, "POST", srv.URL+ops, add("z"), "Authorization", "Bearer "+tok, "Content-Type", "application/json", "Origin", "https://evil.example"); resp.StatusCode != 200 {
		t.Errorf("bearer from any origin: %d %s", resp.StatusCode, body)
	}
	// Signing out clears the cookie.
	resp, _ = call(t, "DELETE", srv.URL+"/session", "", "Cookie", cookie, "Origin", srv.URL)
	if resp.StatusCode != 204 || len(resp.Cookies()) != 1 || resp.Cookies()[0].MaxAge >= 0 {
		t.Errorf("sign out: %d %v", resp.StatusCode, resp.Cookies())
	}
}

func TestCORS(t *testing.T) {
	for _, c := range []struct {
		name    string
		origins []string
		origin  string
		allowed bool
	}{
		{"off", nil, "https://app.example", false},
		{"listed", []string{"https://app.example"}, "https://app.example", true},
		{"not listed", []string{"https://app.example"}, "https://evil.example", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := jwtConfig(t)
			cfg.CORSOrigins = c.origins
			srv := newTestServer(t, storetest.Open(t, "sqlite"), serverOptions{auth: cfg})
			resp, _ := call(t, "OPTIONS", srv.URL+"/rooms/00000000-0000-4000-8000-000000000000/ops", "",
				"Origin", c.origin, "Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization, content-type, idempotency-key")
			got := resp.Header.Get("Access-Control-Allow-Origin")
			if c.allowed {
				if got != c.origin || resp.Header.Get("Access-Control-Allow-Credentials") != "true" || resp.StatusCode >= 300 {
					t.Errorf("preflight: %d, allow-origin %q, credentials %q", resp.StatusCode, got, resp.Header.Get("Access-Control-Allow-Credentials"))
				}
				hdrs := strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers"))
				for _, h := range []string{"authorization", "content-type", "idempotency-key"} {
					if !strings.Contains(hdrs, h) {
						t.Errorf("preflight allows headers %q, not %s", hdrs, h)
					}
				}
				resp, _ = call(t, "OPTIONS", srv.URL+"/rooms/x/events", "", "Origin", c.origin, "Access-Control-Request-Method", "GET", "Access-Control-Request-Headers", "last-event-id")
				if !strings.Contains(strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers")), "last-event-id") {
					t.Errorf("preflight for events does not allow Last-Event-ID: %v", resp.Header)
				}
			} else if got != "" {
				t.Errorf("origin %s got Access-Control-Allow-Origin %q", c.origin, got)
			}
			resp, _ = call(t, "GET", srv.URL+"/healthz", "", "Origin", c.origin)
			if g := resp.Header.Get("Access-Control-Allow-Origin"); (g != "") != c.allowed {
				t.Errorf("GET from %s: Access-Control-Allow-Origin %q", c.origin, g)
			}
		})
	}
}

// TestRoomsListedByRole: GET /rooms lists only the caller's rooms; a room
// the caller has no role in answers 404 as one that does not exist.
func TestRoomsListedByRole(t *testing.T) {
	srv := newTestServer(t, storetest.Open(t, "sqlite"), serverOptions{auth: jwtConfig(t)})
	alice := mint(t, "alice", time.Hour, func(c *auth.Claims) { c.CreateRooms = true })
	bob := mint(t, "bob", time.Hour, func(c *auth.Claims) { c.CreateRooms = true })
	create := func(tok, name string) string {
		resp, body := call(t, "POST", srv.URL+"/rooms", `{"name":"`+name+`"}`, "Authorization", "Bearer "+tok, "Content-Type", "application/json")
		if resp.StatusCode != 201 {
			t.Fatalf("create: %d %s", resp.StatusCode, body)
		}
		var rm struct{ ID, Role string }
		_ = json.Unmarshal([]byte(body), &rm)
		if rm.Role != "owner" {
			t.Errorf("creator's role %q, want owner", rm.Role)
		}
		return rm.ID
	}
	a1, b1 := create(alice, "a1"), create(bob, "b1")
	carol := mint(t, "carol", time.Hour, func(c *auth.Claims) { c.Rooms = map[string]string{b1: "viewer"} })
	admin := mint(t, "root", time.Hour, func(c *auth.Claims) { c.Admin = true })
	names := func(tok string) string {
		_, body := call(t, "GET", srv.URL+"/rooms", "", "Authorization", "Bearer "+tok)
		var list struct{ Rooms []struct{ Name string } }
		_ = json.Unmarshal([]byte(body), &list)
		var out []string
		for _, r := range list.Rooms {
			out = append(out, r.Name)
		}
		return strings.Join(out, ",")
	}
	if got := names(alice); got != "a1" {
		t.Errorf("alice lists %q, want a1", got)
	}
	if got := names(carol); got != "b1" {
		t.Errorf("carol lists %q, want b1", got)
	}
	if got := names(admin); got != "b1,a1" {
		t.Errorf("admin lists %q, want b1,a1", got)
	}
	// Bob makes alice an editor of b1: she sees it, with her role.
	resp, body := call(t, "PUT", srv.URL+"/rooms/"+b1+"/members/alice", `{"role":"editor"}`, "Authorization", "Bearer "+bob, "Content-Type", "application/json")
	if resp.StatusCode != 204 {
		t.Fatalf("put member: %d %s", resp.StatusCode, body)
	}
	if got := names(alice); got != "b1,a1" {
		t.Errorf("alice lists %q after being made an editor, want b1,a1", got)
	}
	_, body = call(t, "GET", srv.URL+"/rooms/"+b1, "", "Authorization", "Bearer "+alice)
	if !strings.Contains(body, `"role":"editor"`) {
		t.Errorf("alice's view of b1: %s", body)
	}
	resp, body = call(t, "GET", srv.URL+"/rooms/"+a1, "", "Authorization", "Bearer "+bob)
	if resp.StatusCode != 404 || problemCode(t, body) != "room_not_found" {
		t.Errorf("bob reads alice's room: %d %s", resp.StatusCode, body)
	}
}

// TestStreamsEndWhenAccessEnds: a stream ends with auth_expired when its
// token expires, and at once when a member change takes its role away; a
// change that leaves a role keeps it; no goroutine is left.
func TestStreamsEndWhenAccessEnds(t *testing.T) {
	st := storetest.Open(t, "sqlite") // its pool's goroutine outlives the check
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	srv := newTestServer(t, st, serverOptions{auth: jwtConfig(t)})
	defer srv.Close()
	owner := mint(t, "olga", time.Hour, func(c *auth.Claims) { c.CreateRooms = true })
	resp, body := call(t, "POST", srv.URL+"/rooms", `{}`, "Authorization", "Bearer "+owner, "Content-Type", "application/json")
	var rm struct{ ID string }
	if err := json.Unmarshal([]byte(body), &rm); err != nil || resp.StatusCode != 201 {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	events := srv.URL + "/rooms/" + rm.ID + "/events?name=impostor"
	member := func(sub, method, role string) {
		t.Helper()
		b := ""
		if role != "" {
			b = `{"role":"` + role + `"}`
		}
		resp, body := call(t, method, srv.URL+"/rooms/"+rm.ID+"/members/"+sub, b, "Authorization", "Bearer "+owner, "Content-Type", "application/json")
		if resp.StatusCode != 204 {
			t.Fatalf("%s member %s: %d %s", method, sub, resp.StatusCode, body)
		}
	}
	ended := func(cl *sseClient, within time.Duration) {
		t.Helper()
		deadline := time.After(within)
		for {
			select {
			case ev, ok := <-cl.events:
				if !ok {
					t.Fatal("the stream ended without auth_expired")
				}
				if ev.Name != handlers.EventAuthExpired {
					continue
				}
				if ev.Data != "{}" {
					t.Errorf("auth_expired data %q, want {}", ev.Data)
				}
				select {
				case _, ok := <-cl.events:
					if ok {
						t.Error("an event after auth_expired")
					}
				case <-time.After(5 * time.Second):
					t.Error("the stream did not end after auth_expired")
				}
				return
			case <-deadline:
				t.Fatalf("no auth_expired within %s", within)
			}
		}
	}

	// Expiry.
	short := mint(t, "eve", 1200*time.Millisecond, func(c *auth.Claims) { c.Rooms = map[string]string{rm.ID: "viewer"} })
	cl := subscribeWith(t, events, http.Header{"Authorization": {"Bearer " + short}})
	ended(cl, 5*time.Second)

	// Member removal: bob's stream ends at once; a lower role keeps it.
	member("bob", "PUT", "editor")
	bob := mint(t, "bob", time.Hour, func(c *auth.Claims) { c.Name = "Bob" })
	cl = subscribeWith(t, events, http.Header{"Authorization": {"Bearer " + bob}})
	ev := cl.nextNamed(t, "presence", 5*time.Second)
	if !strings.Contains(ev.Data, `"name":"Bob"`) || strings.Contains(ev.Data, "impostor") {
		t.Errorf("presence name is not the token's: %s", ev.Data)
	}
	member("bob", "PUT", "viewer")
	if _, err := srv.post(rm.ID, addNodes("n1")); err == nil {
		t.Error("an unauthenticated post was accepted")
	}
	resp, _ = call(t, "POST", srv.URL+"/rooms/"+rm.ID+"/ops", addNodes("n1"), "Authorization", "Bearer "+owner, "Content-Type", "application/json")
	if resp.StatusCode != 200 {
		t.Fatalf("owner post: %d", resp.StatusCode)
	}
	cl.nextNamed(t, "ops", 5*time.Second) // still streaming as a viewer
	start := time.Now()
	member("bob", "DELETE", "")
	ended(cl, 5*time.Second)
	t.Logf("the stream ended %s after the member was removed", time.Since(start))
	if resp, _ := call(t, "GET", srv.URL+"/rooms/"+rm.ID, "", "Authorization", "Bearer "+bob); resp.StatusCode != 404 {
		t.Errorf("bob reads the room after removal: %d", resp.StatusCode)
	}
	cl.Close()
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	srv.Close()
}

// TestMemberSubjectsAreUnescaped: a subject is any string a token's sub may
// hold, "/" and "|" included, and comes back as it was given.
func TestMemberSubjectsAreUnescaped(t *testing.T) {
	srv := newTestServer(t, storetest.Open(t, "sqlite"), serverOptions{})
	id := srv.createRoom()
	for _, sub := range []string{"org/alice", "auth0|123", "bob@example.com", "zoë"} {
		resp, body := call(t, "PUT", srv.URL+"/rooms/"+id+"/members/"+url.PathEscape(sub), `{"role":"viewer"}`, "Content-Type", "application/json")
		if resp.StatusCode != 204 {
			t.Fatalf("put %q: %d %s", sub, resp.StatusCode, body)
		}
	}
	_, body := call(t, "GET", srv.URL+"/rooms/"+id+"/members", "")
	var list struct{ Members []struct{ Subject string } }
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range list.Members {
		got = append(got, m.Subject)
	}
	if want := "auth0|123,bob@example.com,org/alice,zoë"; strings.Join(got, ",") != want {
		t.Errorf("members %q, want %q", strings.Join(got, ","), want)
	}
	resp, _ := call(t, "DELETE", srv.URL+"/rooms/"+id+"/members/org%2Falice", "")
	if resp.StatusCode != 204 {
		t.Errorf("delete org/alice: %d", resp.StatusCode)
	}
}
