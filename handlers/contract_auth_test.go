package handlers_test

// Contract tests, part 3: the answers of authentication and authorization
// (DESIGN.md 9.1–9.3) on every operation of the spec, validated like the
// others.

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/liveshare/liveshare/auth"
	"github.com/liveshare/liveshare/handlers"
	"github.com/liveshare/liveshare/store/storetest"
)

var testSecret = []byte("contract-secret-contract-secret-32bytes")

// mint signs a token for sub with the test secret, valid for ttl.
func mint(t testing.TB, sub string, ttl time.Duration, edit func(*auth.Claims)) string {
	t.Helper()
	c := auth.Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: sub, ExpiresAt: jwt.NewNumericDate(time.Now().Add(ttl))}}
	if edit != nil {
		edit(&c)
	}
	tok, err := auth.Mint(testSecret, c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func jwtConfig(t testing.TB) handlers.AuthConfig {
	t.Helper()
	v, err := auth.NewVerifier(auth.Config{Secret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	return handlers.AuthConfig{Mode: handlers.ModeJWT, Verifier: v}
}

// specOperations lists the spec's operations as method and path template.
func specOperations(c *contract) [][2]string {
	var ops [][2]string
	for path, item := range c.spec.model.Paths.PathItems.FromOldest() {
		for method := range item.GetOperations().FromOldest() {
			ops = append(ops, [2]string{strings.ToUpper(method), path})
		}
	}
	return ops
}

func contractAuth(t *testing.T, c *contract) {
	schemas := c.sseEventSchemas()
	open := newContractServer(t, storetest.Open(t, "sqlite"), contractLimits{auth: handlers.AuthConfig{Hosts: []string{"localhost", "127.0.0.1"}}})
	js := newContractServer(t, storetest.Open(t, "sqlite"), contractLimits{auth: jwtConfig(t)})
	owner := mint(t, "olga", time.Hour, func(c *auth.Claims) { c.CreateRooms = true })
	bearer := func(tok string) []string { return []string{"Authorization", "Bearer " + tok} }
	with := func(h []string, more ...string) []string { return append(append([]string{}, h...), more...) }

	id := c.do(js.URL, "POST", "/rooms", `{"name":"team"}`, bearer(owner)...).expect(t, 201, "").str(t, "id")
	snap := c.do(js.URL, "POST", "/rooms/"+id+"/snapshots", "", bearer(owner)...).expect(t, 201, "").str(t, "id")
	viewer := mint(t, "vera", time.Hour, func(c *auth.Claims) { c.Rooms = map[string]string{id: "viewer"} })
	stranger := mint(t, "sam", time.Hour, nil)
	public := map[string]bool{"/healthz": true, "/readyz": true, "/": true, "/app/{file}": true, "/openapi.yaml": true, "/docs": true, "/docs/{file}": true}
	fill := func(path string) string {
		return strings.NewReplacer("{room}", id, "{snapshot}", snap, "{subject}", "bob", "{file}", "app.js", "{presence_id}", "tab-1").Replace(path)
	}
	body := func(method, path string) string {
		if method == "PUT" {
			return `{"role":"viewer"}`
		}
		if method == "PATCH" && path == "/rooms/{room}/presence/{presence_id}" {
			return `{"status":"here"}`
		}
		if method == "PATCH" {
			return `{"name":"renamed"}`
		}
		return ""
	}
	for _, op := range specOperations(c) {
		method, tmpl := op[0], op[1]
		path := fill(tmpl)
		// Another host name, in open mode: every operation.
		c.do(open.URL, method, path, body(method, tmpl), "Host", "attacker.example").expect(t, 421, "misdirected_request")
		if public[tmpl] || (method == "DELETE" && tmpl == "/session") {
			continue
		}
		// No token, or a bad one.
		a := c.do(js.URL, method, path, body(method, tmpl)).expect(t, 401, "unauthenticated")
		if !strings.HasPrefix(a.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s %s: 401 without WWW-Authenticate: Bearer", method, tmpl)
		}
		if method == "POST" || method == "PUT" || method == "PATCH" {
			c.do(js.URL, method, path, body(method, tmpl), with(bearer(owner), "Content-Type", "text/plain")...).expect(t, 415, "unsupported_media_type")
		}
		switch {
		case tmpl == "/metrics" || tmpl == "/snapshots/stats" || tmpl == "/rooms" || tmpl == "/audit":
			if method == "GET" && tmpl == "/rooms" {
				continue
			}
			c.do(js.URL, method, path, body(method, tmpl), bearer(viewer)...).expect(t, 403, "forbidden")
		case strings.HasPrefix(tmpl, "/rooms/{room}"):
			c.do(js.URL, method, path, body(method, tmpl), bearer(stranger)...).expect(t, 404, "room_not_found")
			if tmpl == "/rooms/{room}/presence/{presence_id}" {
				// Viewers are present too: they may set their own state,
				// and only their own (here they have no stream).
				c.do(js.URL, method, path, body(method, tmpl), bearer(viewer)...).expect(t, 404, "presence_not_found")
				continue
			}
			if method != "GET" || strings.HasPrefix(tmpl, "/rooms/{room}/members") || tmpl == "/rooms/{room}/audit" {
				c.do(js.URL, method, path, body(method, tmpl), bearer(viewer)...).expect(t, 403, "forbidden")
			}
		}
	}

	// The session: a bearer token becomes the cookie; the cookie works for
	// reads and, from the page's own origin, for writes; from another
	// origin it changes nothing.
	a := c.do(js.URL, "POST", "/session", "", bearer(owner)...).expect(t, 204, "")
	var cookie string
	for _, ck := range (&http.Response{Header: a.Header}).Cookies() {
		if ck.Name == handlers.SessionCookie {
			cookie = ck.Name + "=" + ck.Value
			if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/" {
				t.Errorf("session cookie %+v, want HttpOnly, SameSite=Strict, Path=/", ck)
			}
		}
	}
	if cookie == "" {
		t.Fatalf("POST /session set no %s cookie: %v", handlers.SessionCookie, a.Header)
	}
	if got := c.do(js.URL, "GET", "/session", "", "Cookie", cookie).expect(t, 200, "").str(t, "subject"); got != "olga" {
		t.Errorf("GET /session subject %q, want olga", got)
	}
	c.do(js.URL, "POST", "/session", "", "Cookie", cookie, "Origin", "https://evil.example").expect(t, 403, "csrf_rejected")
	c.do(js.URL, "DELETE", "/session", "", "Cookie", cookie, "Origin", "https://evil.example").expect(t, 403, "csrf_rejected")
	c.do(js.URL, "POST", "/session", "", "Cookie", cookie, "Origin", js.URL).expect(t, 401, "unauthenticated")
	c.do(js.URL, "DELETE", "/session", "", "Cookie", cookie, "Origin", js.URL).expect(t, 204, "")

	// Members.
	members := "/rooms/" + id + "/members"
	c.do(js.URL, "PUT", members+"/bob", `{"role":"editor"}`, bearer(owner)...).expect(t, 204, "")
	c.do(js.URL, "PUT", members+"/bob", `{"role":"admin"}`, bearer(owner)...).expect(t, 400, "invalid_role")
	c.do(js.URL, "PUT", members+"/bob", strings.Repeat(" ", 300<<10), bearer(owner)...).expect(t, 413, "payload_too_large")
	c.do(js.URL, "PUT", "/rooms/nope/members/bob", `{"role":"editor"}`, bearer(owner)...).expect(t, 400, "invalid_room_id")
	c.do(js.URL, "GET", "/rooms/nope/members", "", bearer(owner)...).expect(t, 400, "invalid_room_id")
	c.do(js.URL, "DELETE", "/rooms/nope/members/bob", "", bearer(owner)...).expect(t, 400, "invalid_room_id")
	c.do(js.URL, "DELETE", members+"/"+strings.Repeat("x", 257), "", bearer(owner)...).expect(t, 400, "invalid_subject")
	if got := c.do(js.URL, "GET", members, "", bearer(owner)...).expect(t, 200, "").Body; !strings.Contains(string(got), `"subject":"bob","role":"editor"`) {
		t.Errorf("members: %s", got)
	}
	c.do(js.URL, "DELETE", members+"/bob", "", bearer(owner)...).expect(t, 204, "")
	c.do(js.URL, "DELETE", members+"/bob", "", bearer(owner)...).expect(t, 404, "member_not_found")

	// A stream whose token expires ends with auth_expired.
	short := mint(t, "vera", 1500*time.Millisecond, func(c *auth.Claims) { c.Rooms = map[string]string{id: "viewer"} })
	cl := subscribeWith(t, js.URL+"/rooms/"+id+"/events", http.Header{"Authorization": {"Bearer " + short}})
	c.expectEvent(cl, schemas, "auth_expired")
	if _, ok := <-cl.events; ok {
		// Drain: the stream must end right after.
		for range cl.events {
		}
	}
}
