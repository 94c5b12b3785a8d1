package main_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/liveshare/liveshare/store"
)

// TestBadInputChangesNothing proves DESIGN.md section 1 item 7 against the
// built binary: every kind of bad input gets a 4xx problem+json answer with a
// stable code, and the room's version and graph do not move.
func TestBadInputChangesNothing(t *testing.T) {
	t.Parallel()
	databases(t, func(t *testing.T, cfg store.Config) {
		srv := startServer(t, cfg, "LIVESHARE_MAX_BODY_BYTES=262144")
		rm := srv.createRoom("bad input")
		seed := `{"ops":[
			{"op":"add_node","node":{"id":"users","kind":"table","label":"users","x":1,"y":2,"data":{"columns":[{"name":"id","type":"uuid"}]}}},
			{"op":"add_node","node":{"id":"orders","kind":"table","label":"orders"}},
			{"op":"add_edge","edge":{"id":"orders_user_fk","kind":"relation","source":"orders","target":"users","label":"user_id"}}]}`
		if r := srv.must("POST", "/rooms/"+rm.ID+"/ops", seed); r.Status != http.StatusOK {
			t.Fatalf("seed: %d %s", r.Status, r.Body)
		}
		graphBefore := srv.must("GET", "/rooms/"+rm.ID+"/graph", nil).Body
		ops := "/rooms/" + rm.ID + "/ops"
		members := "/rooms/" + rm.ID + "/members"
		one := func(op string) string { return `{"ops":[` + op + `]}` }
		manyOps := func(n int) string {
			parts := make([]string, n)
			for i := range parts {
				parts[i] = fmt.Sprintf(`{"op":"add_node","node":{"id":"n%d"}}`, i)
			}
			return `{"ops":[` + strings.Join(parts, ",") + `]}`
		}
		bigData := `{"op":"add_node","node":{"id":"big","data":{"blob":"` + strings.Repeat("x", 64*1024) + `"}}}`

		cases := []struct {
			name, method, path, body string
			header                   []string
			status                   int
			code                     string
			opIndex                  int // -1: no op_index expected
		}{
			{"malformed JSON", "POST", ops, `{"ops":[`, nil, 400, "invalid_json", -1},
			{"not an object", "POST", ops, `[1,2]`, nil, 400, "invalid_json", -1},
			{"empty body", "POST", ops, ``, nil, 400, "invalid_json", -1},
			{"trailing data", "POST", ops, one(`{"op":"remove_node","id":"users"}`) + `{}`, nil, 400, "invalid_json", -1},
			{"unknown top-level field", "POST", ops, `{"ops":[{"op":"remove_node","id":"users"}],"extra":1}`, nil, 400, "invalid_json", -1},
			{"no ops", "POST", ops, `{"ops":[]}`, nil, 400, "invalid_request", -1},
			{"more than 1000 ops", "POST", ops, manyOps(1001), nil, 400, "too_many_ops", -1},
			{"unknown op", "POST", ops, one(`{"op":"explode_node","id":"users"}`), nil, 422, "invalid_op", 0},
			{"unknown field in op", "POST", ops, one(`{"op":"remove_node","id":"users","force":true}`), nil, 422, "invalid_op", 0},
			{"unknown field in node", "POST", ops, one(`{"op":"add_node","node":{"id":"x","colour":"red"}}`), nil, 422, "invalid_op", 0},
			{"missing node id", "POST", ops, one(`{"op":"add_node","node":{"kind":"table"}}`), nil, 422, "invalid_op", 0},
			{"invalid node id", "POST", ops, one(`{"op":"add_node","node":{"id":"has space"}}`), nil, 422, "invalid_op", 0},
			{"id too long", "POST", ops, one(`{"op":"add_node","node":{"id":"` + strings.Repeat("a", 129) + `"}}`), nil, 422, "invalid_op", 0},
			{"duplicate node id", "POST", ops, one(`{"op":"add_node","node":{"id":"users"}}`), nil, 422, "invalid_op", 0},
			{"node id taken by an edge", "POST", ops, one(`{"op":"add_node","node":{"id":"orders_user_fk"}}`), nil, 422, "invalid_op", 0},
			{"duplicate within batch, second op", "POST", ops, `{"ops":[{"op":"add_node","node":{"id":"fresh"}},{"op":"add_node","node":{"id":"fresh"}}]}`, nil, 422, "invalid_op", 1},
			{"edge to missing node", "POST", ops, one(`{"op":"add_edge","edge":{"id":"e1","source":"users","target":"ghost"}}`), nil, 422, "invalid_op", 0},
			{"update missing node", "POST", ops, one(`{"op":"update_node","id":"ghost","patch":{"x":1}}`), nil, 422, "invalid_op", 0},
			{"remove missing node", "POST", ops, one(`{"op":"remove_node","id":"ghost"}`), nil, 422, "invalid_op", 0},
			{"update missing edge", "POST", ops, one(`{"op":"update_edge","id":"ghost","patch":{"label":"x"}}`), nil, 422, "invalid_op", 0},
			{"remove missing edge", "POST", ops, one(`{"op":"remove_edge","id":"ghost"}`), nil, 422, "invalid_op", 0},
			{"patch changes id", "POST", ops, one(`{"op":"update_node","id":"users","patch":{"id":"people"}}`), nil, 422, "invalid_op", 0},
			{"non-finite coordinate", "POST", ops, one(`{"op":"add_node","node":{"id":"inf","x":1e400}}`), nil, 422, "invalid_op", 0},
			{"coordinate not a number", "POST", ops, one(`{"op":"add_node","node":{"id":"nan","x":"NaN"}}`), nil, 422, "invalid_op", 0},
			{"oversized data", "POST", ops, one(bigData), nil, 422, "invalid_op", 0},
			{"data not an object", "POST", ops, one(`{"op":"add_node","node":{"id":"d","data":[1]}}`), nil, 422, "invalid_op", 0},
			{"reset cannot be posted", "POST", ops, one(`{"op":"reset","state":{"nodes":[],"edges":[]}}`), nil, 422, "invalid_op", 0},
			{"later op fails, earlier not applied", "POST", ops, `{"ops":[{"op":"remove_node","id":"orders"},{"op":"remove_edge","id":"orders_user_fk"}]}`, nil, 422, "invalid_op", 1},
			{"wrong base_version", "POST", ops, `{"ops":[{"op":"remove_node","id":"users"}],"base_version":1}`, nil, 409, "conflict", -1},
			{"negative base_version", "POST", ops, `{"ops":[{"op":"remove_node","id":"users"}],"base_version":-1}`, nil, 400, "invalid_request", -1},
			{"client_id too long", "POST", ops, `{"ops":[{"op":"remove_node","id":"users"}],"client_id":"` + strings.Repeat("c", 129) + `"}`, nil, 400, "invalid_request", -1},
			{"idempotency key too long", "POST", ops, one(`{"op":"remove_node","id":"users"}`), []string{"Idempotency-Key", strings.Repeat("k", 129)}, 400, "invalid_request", -1},
			{"body over the limit", "POST", ops, `{"ops":[{"op":"add_node","node":{"id":"huge","label":"` + strings.Repeat("y", 270000) + `"}}]}`, nil, 413, "payload_too_large", -1},
			{"unknown room", "POST", "/rooms/00000000-0000-4000-8000-000000000000/ops", one(`{"op":"remove_node","id":"users"}`), nil, 404, "room_not_found", -1},
			{"invalid room id", "POST", "/rooms/not-a-uuid/ops", one(`{"op":"remove_node","id":"users"}`), nil, 400, "invalid_room_id", -1},
			{"invalid room id on graph", "GET", "/rooms/not-a-uuid/graph", "", nil, 400, "invalid_room_id", -1},
			{"unknown room graph", "GET", "/rooms/00000000-0000-4000-8000-000000000000/graph", "", nil, 404, "room_not_found", -1},
			{"bad since", "GET", ops + "?since=-1", "", nil, 400, "invalid_parameter", -1},
			{"bad limit", "GET", "/rooms?limit=1000", "", nil, 400, "invalid_parameter", -1},
			{"bad cursor", "GET", "/rooms?cursor=%21%21", "", nil, 400, "invalid_cursor", -1},
			{"room name too long", "POST", "/rooms", `{"name":"` + strings.Repeat("n", 257) + `"}`, nil, 400, "invalid_request", -1},
			{"room unknown field", "POST", "/rooms", `{"name":"x","owner":"me"}`, nil, 400, "invalid_json", -1},
			{"method not allowed", "PUT", ops, "", nil, 405, "method_not_allowed", -1},
			{"ops as text/plain (a no-cors fetch)", "POST", ops, one(`{"op":"remove_node","id":"users"}`), []string{"Content-Type", "text/plain;charset=UTF-8"}, 415, "unsupported_media_type", -1},
			{"ops as a form", "POST", ops, "ops=1", []string{"Content-Type", "application/x-www-form-urlencoded"}, 415, "unsupported_media_type", -1},
			{"snapshot as a form", "POST", "/rooms/" + rm.ID + "/snapshots", "", []string{"Content-Type", "multipart/form-data; boundary=x"}, 415, "unsupported_media_type", -1},
			{"member role unknown", "PUT", members + "/bob", `{"role":"admin"}`, nil, 400, "invalid_role", -1},
			{"member role missing", "PUT", members + "/bob", `{}`, nil, 400, "invalid_role", -1},
			{"member unknown field", "PUT", members + "/bob", `{"role":"viewer","until":"never"}`, nil, 400, "invalid_json", -1},
			{"member empty body", "PUT", members + "/bob", ``, nil, 400, "invalid_json", -1},
			{"member subject too long", "PUT", members + "/" + strings.Repeat("s", 257), `{"role":"viewer"}`, nil, 400, "invalid_subject", -1},
			{"member subject with a control character", "PUT", members + "/a%0Ab", `{"role":"viewer"}`, nil, 400, "invalid_subject", -1},
			{"remove a non-member", "DELETE", members + "/nobody", "", nil, 404, "member_not_found", -1},
			{"members of an unknown room", "PUT", "/rooms/00000000-0000-4000-8000-000000000000/members/bob", `{"role":"viewer"}`, nil, 404, "room_not_found", -1},
			// I-JSON (RFC 7493), the same on both databases.
			{"invalid UTF-8 in a label", "POST", ops, one(`{"op":"add_node","node":{"id":"u8","label":"a\xffb"}}`), nil, 400, "invalid_json", -1},
			{"lone surrogate in a label", "POST", ops, one(`{"op":"add_node","node":{"id":"sur","label":"a\ud800b"}}`), nil, 400, "invalid_json", -1},
			{"lone surrogate in data", "POST", ops, one(`{"op":"add_node","node":{"id":"sur","data":{"k":"\udc00"}}}`), nil, 400, "invalid_json", -1},
			{"NUL in client_id", "POST", ops, `{"ops":[{"op":"remove_node","id":"users"}],"client_id":"a\u0000b"}`, nil, 400, "invalid_json", -1},
			{"NUL in data", "POST", ops, one(`{"op":"add_node","node":{"id":"nul","data":{"k":"\u0000"}}}`), nil, 400, "invalid_json", -1},
			{"duplicate top-level ops", "POST", ops, `{"ops":[{"op":"add_node","node":{"id":"d1"}}],"ops":[{"op":"remove_node","id":"users"}]}`, nil, 400, "invalid_json", -1},
			{"duplicate key in a node", "POST", ops, one(`{"op":"add_node","node":{"id":"d2","id":"d3"}}`), nil, 400, "invalid_json", -1},
			{"data nested 65 deep", "POST", ops, one(`{"op":"add_node","node":{"id":"deep","data":` + strings.Repeat(`{"a":`, 64) + `{}` + strings.Repeat(`}`, 64) + `}}`), nil, 422, "invalid_op", 0},
			{"data nested 9000 deep", "POST", ops, one(`{"op":"add_node","node":{"id":"deeper","data":{"a":` + strings.Repeat(`[`, 9000) + strings.Repeat(`]`, 9000) + `}}}`), nil, 422, "invalid_op", 0},
			{"NUL in a room name", "POST", "/rooms", `{"name":"a\u0000b"}`, nil, 400, "invalid_json", -1},
			{"invalid UTF-8 in a room name", "POST", "/rooms", "{\"name\":\"a\xc3\"}", nil, 400, "invalid_json", -1},
			{"idempotency key not ASCII", "POST", ops, one(`{"op":"remove_node","id":"users"}`), []string{"Idempotency-Key", "cl\xc3\xa9"}, 400, "invalid_request", -1},
			{"signed Last-Event-ID", "GET", "/rooms/" + rm.ID + "/events", "", []string{"Last-Event-ID", "+3"}, 400, "invalid_last_event_id", -1},
		}
		roomsBefore := srv.must("GET", "/rooms?limit=100", nil).Body
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				var body any
				if c.body != "" {
					body = c.body
				}
				r := srv.must(c.method, c.path, body, c.header...)
				if r.Status != c.status {
					t.Fatalf("status %d, want %d: %s", r.Status, c.status, r.Body)
				}
				if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
					t.Errorf("Content-Type %q, want application/problem+json", ct)
				}
				var p problem
				r.decode(t, &p)
				if p.Code != c.code || p.Status != c.status || p.Detail == "" || p.Title == "" || p.Type == "" {
					t.Errorf("problem %+v, want code %q status %d with type, title and detail", p, c.code, c.status)
				}
				switch {
				case c.opIndex >= 0 && (p.OpIndex == nil || *p.OpIndex != c.opIndex):
					t.Errorf("op_index %v, want %d (detail %q)", p.OpIndex, c.opIndex, p.Detail)
				case c.opIndex < 0 && p.OpIndex != nil:
					t.Errorf("op_index %d, want none", *p.OpIndex)
				}
				if c.code == "conflict" && (p.Current == nil || *p.Current != 3) {
					t.Errorf("conflict names version %v, want 3", p.Current)
				}
				if v := srv.roomVersion(rm.ID); v != 3 {
					t.Errorf("room version %d after a rejected request, want 3", v)
				}
			})
		}
		if r := srv.must("GET", members, nil); r.Status != 200 || strings.TrimSpace(string(r.Body)) != `{"members":[]}` {
			t.Errorf("members after rejected changes: %d %s", r.Status, r.Body)
		}
		if after := srv.must("GET", "/rooms?limit=100", nil).Body; string(after) != string(roomsBefore) {
			t.Errorf("rooms changed by rejected requests:\nbefore %s\nafter  %s", roomsBefore, after)
		}
		if after := srv.must("GET", "/rooms/"+rm.ID+"/graph", nil).Body; string(after) != string(graphBefore) {
			t.Errorf("graph changed by rejected requests:\nbefore %s\nafter  %s", graphBefore, after)
		}
		// The log holds only the seed: nothing rejected reached it, even after a restart.
		srv = srv.restart()
		if version, logged := srv.allOps(rm.ID); version != 3 || len(logged) != 3 {
			t.Errorf("after restart: version %d with %d ops, want 3 and 3", version, len(logged))
		}
	})
}
