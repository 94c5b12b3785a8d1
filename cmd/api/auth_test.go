package main_test

// The authorization matrix: every route the router serves and every
// operation openapi.yaml describes, called as each kind of caller against
// the built binary in jwt mode, on each database. A route without a rule
// here fails the test, so a new route cannot ship without one.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/golang-jwt/jwt/v5"
	"go.yaml.in/yaml/v3"

	"github.com/liveshare/liveshare"
	"github.com/liveshare/liveshare/auth"
	"github.com/liveshare/liveshare/handlers"
	"github.com/liveshare/liveshare/room"
	"github.com/liveshare/liveshare/snapshot"
	"github.com/liveshare/liveshare/store"
	"github.com/liveshare/liveshare/store/storetest"
	"github.com/liveshare/liveshare/web"
)

const matrixSecret = "matrix-secret-matrix-secret-matrix-32"

// access is who may call a route.
type access int

const (
	public      access = iota // anyone, without a token
	anyCaller                 // any valid token
	adminOnly                 // a token with admin
	createRooms               // a token with create_rooms (or admin)
	viewerRole                // a role in the room, at least…
	editorRole
	ownerRole
)

// rule is a route's access and how to call it successfully.
type rule struct {
	access access
	path   string // with {room}, {snapshot}, {subject} to fill
	body   string
	status int // the answer when allowed
}

// matrixRules holds a rule for every route, by routeKey. The roles are
// DESIGN.md 9.3's table.
var matrixRules = map[string]rule{
	"GET /healthz":         {public, "/healthz", "", 200},
	"GET /readyz":          {public, "/readyz", "", 200},
	"GET /":                {public, "/", "", 200},
	"GET /app/{}":          {public, "/app/app.js", "", 200},
	"GET /openapi.yaml":    {public, "/openapi.yaml", "", 200},
	"GET /docs":            {public, "/docs", "", 200},
	"GET /docs/{}":         {public, "/docs/swagger-ui.css", "", 200},
	"DELETE /session":      {public, "/session", "", 204},
	"POST /session":        {anyCaller, "/session", "", 204},
	"GET /session":         {anyCaller, "/session", "", 200},
	"GET /rooms":           {anyCaller, "/rooms", "", 200},
	"POST /rooms":          {createRooms, "/rooms", `{"name":"new"}`, 201},
	"GET /metrics":         {adminOnly, "/metrics", "", 200},
	"GET /snapshots/stats": {adminOnly, "/snapshots/stats", "", 200},

	"GET /rooms/{}":          {viewerRole, "/rooms/{room}", "", 200},
	"GET /rooms/{}/graph":    {viewerRole, "/rooms/{room}/graph", "", 200},
	"GET /rooms/{}/ops":      {viewerRole, "/rooms/{room}/ops?since=1", "", 200},
	"GET /rooms/{}/diff":     {viewerRole, "/rooms/{room}/diff?from=0", "", 200},
	"POST /rooms/{}/restore": {ownerRole, "/rooms/{room}/restore", `{"version":0}`, 200},
	"GET /rooms/{}/events":   {viewerRole, "/rooms/{room}/events", "", 200},
	"GET /rooms/{}/presence": {viewerRole, "/rooms/{room}/presence", "", 200},
	// A caller with a role may set the state of its own streams; the
	// matrix's caller has none open, hence the 404 presence_not_found.
	"PATCH /rooms/{}/presence/{}":         {viewerRole, "/rooms/{room}/presence/tab-1", `{"status":"here"}`, 404},
	"GET /rooms/{}/snapshots":             {viewerRole, "/rooms/{room}/snapshots", "", 200},
	"GET /rooms/{}/snapshots/latest":      {viewerRole, "/rooms/{room}/snapshots/latest", "", 200},
	"GET /rooms/{}/snapshots/stats":       {viewerRole, "/rooms/{room}/snapshots/stats", "", 200},
	"GET /rooms/{}/snapshots/{}":          {viewerRole, "/rooms/{room}/snapshots/{snapshot}", "", 200},
	"POST /rooms/{}/ops":                  {editorRole, "/rooms/{room}/ops", `{"ops":[{"op":"add_node","node":{"id":"m"}}]}`, 200},
	"POST /rooms/{}/snapshots":            {editorRole, "/rooms/{room}/snapshots", "", 201},
	"DELETE /rooms/{}":                    {ownerRole, "/rooms/{room}", "", 204},
	"DELETE /rooms/{}/snapshots":          {ownerRole, "/rooms/{room}/snapshots", "", 204},
	"POST /rooms/{}/snapshots/{}/restore": {ownerRole, "/rooms/{room}/snapshots/{snapshot}/restore", "", 200},
	"GET /rooms/{}/members":               {ownerRole, "/rooms/{room}/members", "", 200},
	"PUT /rooms/{}/members/{}":            {ownerRole, "/rooms/{room}/members/newcomer", `{"role":"viewer"}`, 204},
	"DELETE /rooms/{}/members/{}":         {ownerRole, "/rooms/{room}/members/{subject}", "", 204},
	"PATCH /rooms/{}":                     {ownerRole, "/rooms/{room}", `{"name":"renamed"}`, 200},
	"GET /rooms/{}/audit":                 {ownerRole, "/rooms/{room}/audit", "", 200},
	"GET /audit":                          {adminOnly, "/audit", "", 200},
}

// callers are the kinds of caller of the matrix.
var callers = []string{"no token", "bad token", "no role", "viewer", "editor", "owner", "admin"}

// expected is the status a caller gets on a route.
func expected(r rule, who string) (int, string) {
	if r.access == public {
		return r.status, ""
	}
	if who == "no token" || who == "bad token" {
		return http.StatusUnauthorized, "unauthenticated"
	}
	switch r.access {
	case anyCaller:
		return r.status, ""
	case adminOnly:
		if who == "admin" {
			return r.status, ""
		}
		return http.StatusForbidden, "forbidden"
	case createRooms:
		if who == "owner" || who == "admin" { // the owner's token may create rooms
			return r.status, ""
		}
		return http.StatusForbidden, "forbidden"
	}
	rank := map[string]access{"viewer": viewerRole, "editor": editorRole, "owner": ownerRole, "admin": ownerRole}
	have, ok := rank[who]
	switch {
	case !ok:
		return http.StatusNotFound, "room_not_found"
	case have < r.access:
		return http.StatusForbidden, "forbidden"
	}
	return r.status, ""
}

func matrixRouteKey(method, path string) string {
	path = strings.NewReplacer("{roomID}", "{}", "{room}", "{}", "{snapshotID}", "{}", "{snapshot}", "{}", "{subject}", "{}", "{file}", "{}", "{presenceID}", "{}", "{presence_id}", "{}", "*", "{}").Replace(path)
	if len(path) > 1 {
		path = strings.TrimSuffix(path, "/")
	}
	return method + " " + path
}

// allRoutes lists the routes of the router (configured as the binary
// configures it) and the operations of openapi.yaml.
func allRoutes(t *testing.T) []string {
	t.Helper()
	st := storetest.Open(t, "sqlite")
	snaps := snapshot.NewRegistry(st, snapshot.Config{Interval: time.Hour, Keep: 2, MaxBytes: 10 << 20})
	h := handlers.New(handlers.Config{Store: st, Rooms: room.NewManager(st, room.Options{Snapshots: snaps}), Snapshots: snaps,
		App: web.App(http.HandlerFunc(handlers.NotFound))})
	var out []string
	err := chi.Walk(h.(chi.Routes), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		out = append(out, matrixRouteKey(method, route))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(liveshare.OpenAPI, &spec); err != nil {
		t.Fatal(err)
	}
	for path, item := range spec.Paths {
		for method := range item {
			switch method {
			case "get", "put", "post", "delete", "patch":
				out = append(out, matrixRouteKey(strings.ToUpper(method), path))
			}
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// TestEveryRouteHasARule fails for a route with no rule in the matrix, and
// for a rule of a route that no longer exists.
func TestEveryRouteHasARule(t *testing.T) {
	t.Parallel()
	routes := allRoutes(t)
	for _, r := range routes {
		if _, ok := matrixRules[r]; !ok {
			t.Errorf("route %s has no rule in the authorization matrix (cmd/api/auth_test.go): say who may call it", r)
		}
	}
	for k := range matrixRules {
		if !slices.Contains(routes, k) {
			t.Errorf("the matrix has a rule for %s, which is neither routed nor described", k)
		}
	}
	if len(routes) < 30 {
		t.Errorf("only %d routes found: %v", len(routes), routes)
	}
}

func mintToken(t testing.TB, secret, sub string, ttl time.Duration, edit func(*auth.Claims)) string {
	t.Helper()
	c := auth.Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: sub, ExpiresAt: jwt.NewNumericDate(time.Now().Add(ttl))}}
	if edit != nil {
		edit(&c)
	}
	tok, err := auth.Mint([]byte(secret), c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// matrixRoom is a fresh room for one cell: made by the owner, with an
// editor member, ops, a snapshot and one op after it.
type matrixRoom struct{ id, snapshot string }

func newMatrixRoom(t *testing.T, srv *server, owner string) matrixRoom {
	t.Helper()
	bearer := []string{"Authorization", "Bearer " + owner}
	r := srv.must("POST", "/rooms", `{"name":"matrix"}`, bearer...)
	if r.Status != 201 {
		t.Fatalf("create room: %d %s", r.Status, r.Body)
	}
	var rm roomJSON
	r.decode(t, &rm)
	if r := srv.must("PUT", "/rooms/"+rm.ID+"/members/erin", `{"role":"editor"}`, bearer...); r.Status != 204 {
		t.Fatalf("add editor: %d %s", r.Status, r.Body)
	}
	if r := srv.must("POST", "/rooms/"+rm.ID+"/ops", `{"ops":[{"op":"add_node","node":{"id":"a"}}]}`, bearer...); r.Status != 200 {
		t.Fatalf("post ops: %d %s", r.Status, r.Body)
	}
	r = srv.must("POST", "/rooms/"+rm.ID+"/snapshots", nil, bearer...)
	if r.Status != 201 {
		t.Fatalf("snapshot: %d %s", r.Status, r.Body)
	}
	var snap struct{ ID string }
	r.decode(t, &snap)
	if r := srv.must("POST", "/rooms/"+rm.ID+"/ops", `{"ops":[{"op":"add_node","node":{"id":"b"}}]}`, bearer...); r.Status != 200 {
		t.Fatalf("post ops: %d %s", r.Status, r.Body)
	}
	return matrixRoom{id: rm.ID, snapshot: snap.ID}
}

// TestAuthorizationMatrix calls every route as every kind of caller.
func TestAuthorizationMatrix(t *testing.T) {
	t.Parallel()
	routes := allRoutes(t)
	databases(t, func(t *testing.T, cfg store.Config) {
		// The matrix is about who may call, not how often: its owner
		// creates a room per cell, past the jwt default of 60 an hour.
		srv := startServer(t, cfg, "LIVESHARE_JWT_SECRET="+matrixSecret, "LIVESHARE_RATE_ROOMS=0", "LIVESHARE_RATE_OPS=0",
			"LIVESHARE_RATE_SNAPSHOT_READS=0", "LIVESHARE_RATE_SNAPSHOT_CREATES=0", "LIVESHARE_RATE_CONNECTS=0")
		owner := mintToken(t, matrixSecret, "olga", time.Hour, func(c *auth.Claims) { c.CreateRooms = true })
		admin := mintToken(t, matrixSecret, "root", time.Hour, func(c *auth.Claims) { c.Admin = true })
		stranger := mintToken(t, matrixSecret, "sam", time.Hour, nil)
		editor := mintToken(t, matrixSecret, "erin", time.Hour, nil) // a member of each room
		bad := mintToken(t, "another-secret-another-secret-32b", "olga", time.Hour, func(c *auth.Claims) { c.Admin = true })
		cells := 0
		for _, key := range routes {
			rl, ok := matrixRules[key]
			if !ok {
				continue // TestEveryRouteHasARule names it
			}
			method, _, _ := strings.Cut(key, " ")
			for _, who := range callers {
				rm := newMatrixRoom(t, srv, owner)
				token := map[string]string{
					"bad token": bad, "no role": stranger, "editor": editor, "owner": owner, "admin": admin,
					"viewer": mintToken(t, matrixSecret, "vera", time.Hour, func(c *auth.Claims) { c.Rooms = map[string]string{rm.id: "viewer"} }),
				}[who]
				path := strings.NewReplacer("{room}", rm.id, "{snapshot}", rm.snapshot, "{subject}", "erin").Replace(rl.path)
				var header []string
				if token != "" {
					header = []string{"Authorization", "Bearer " + token}
				}
				status, body, hdr := matrixCall(t, srv, method, path, rl.body, header)
				want, code := expected(rl, who)
				cells++
				if status != want {
					t.Errorf("%s as %s: %d, want %d: %s", key, who, status, want, body)
					continue
				}
				if code != "" {
					var p struct{ Code string }
					if err := json.Unmarshal([]byte(body), &p); err != nil || p.Code != code || hdr.Get("Content-Type") != "application/problem+json" {
						t.Errorf("%s as %s: %d %q, want problem code %s", key, who, status, body, code)
					}
				}
				if status == 401 && !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("%s as %s: 401 without WWW-Authenticate: Bearer", key, who)
				}
			}
		}
		if want := len(matrixRules) * len(callers); cells != want {
			t.Errorf("%d cells called, want %d", cells, want)
		}
	})
}

// matrixCall sends one request; an event stream is read only up to its
// headers.
func matrixCall(t *testing.T, srv *server, method, path, body string, header []string) (int, string, http.Header) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if method != "GET" && method != "DELETE" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") == "text/event-stream" {
		return resp.StatusCode, "(stream)", resp.Header
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp.StatusCode, fmt.Sprintf("%.300s", data), resp.Header
}
