package main_test

import (
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/liveshare/liveshare/store"
)

// historyDiff is GET /rooms/{id}/diff, with the elements decoded
// generically.
type historyDiff struct {
	From  int64 `json:"from"`
	To    int64 `json:"to"`
	Nodes struct {
		Added   []map[string]any `json:"added"`
		Removed []map[string]any `json:"removed"`
		Changed []map[string]any `json:"changed"`
	} `json:"nodes"`
	Edges struct {
		Added   []map[string]any `json:"added"`
		Removed []map[string]any `json:"removed"`
		Changed []map[string]any `json:"changed"`
	} `json:"edges"`
}

func ids(list []map[string]any) []string {
	out := []string{}
	for _, m := range list {
		out = append(out, fmt.Sprint(m["id"]))
	}
	return out
}

// snapNow asks for a snapshot now: 201, or 200 when the scheduler stored
// one at this version first.
func (s *server) snapNow(roomID string) {
	s.t.Helper()
	if r := s.must("POST", "/rooms/"+roomID+"/snapshots", nil); r.Status != http.StatusCreated && r.Status != http.StatusOK {
		s.t.Fatalf("take snapshot: %d %s", r.Status, r.Body)
	}
}

// graphAt is GET /rooms/{id}/graph?version=N, which must answer 200.
func (s *server) graphAt(roomID string, version int64) snapGraph {
	s.t.Helper()
	r := s.must("GET", fmt.Sprintf("/rooms/%s/graph?version=%d", roomID, version), nil)
	if r.Status != http.StatusOK {
		s.t.Fatalf("graph at version %d: %d %s", version, r.Status, r.Body)
	}
	var g snapGraph
	r.decode(s.t, &g)
	return g
}

// TestHistoryEndToEnd drives section 11 on the built binary, on both
// databases: with one snapshot kept, the room's first automatic snapshot
// becomes a checkpoint and keeps its version and every later one
// reachable; graph?version, diff and restore answer from it, and every bad
// request is a problem naming what is wrong that changes nothing. Without
// history the same room loses those versions.
func TestHistoryEndToEnd(t *testing.T) {
	databases(t, func(t *testing.T, cfg store.Config) {
		srv := startServer(t, cfg, "LIVESHARE_SNAPSHOT_INTERVAL=200ms", "LIVESHARE_SNAPSHOT_KEEP=1")
		rm := srv.createRoom("history")
		base := "/rooms/" + rm.ID
		// One request: the room goes from 0 to 3 at once, so the
		// checkpoint is at 3 and versions 1 and 2 are never kept.
		v3 := srv.snapPost(rm.ID, []map[string]any{
			{"op": "add_node", "node": map[string]any{"id": "users", "kind": "table", "label": "users", "data": map[string]any{"columns": []any{map[string]any{"name": "id"}}}}},
			{"op": "add_node", "node": map[string]any{"id": "orders", "kind": "table", "label": "orders"}},
			{"op": "add_edge", "edge": map[string]any{"id": "fk", "kind": "relation", "source": "orders", "target": "users"}},
		})
		if v3 != 3 {
			t.Fatalf("room at version %d after three ops, want 3", v3)
		}
		at3 := srv.snapGraph(rm.ID)
		srv.snapWait(rm.ID, 30*time.Second, "checkpoint", func(l []snapMeta) bool { return len(l) > 0 && l[0].Trigger == "checkpoint" })

		srv.snapPost(rm.ID, []map[string]any{{"op": "update_node", "id": "users", "patch": map[string]any{"label": "people", "data": map[string]any{"columns": nil}}}})
		at4 := srv.snapGraph(rm.ID)
		srv.snapNow(rm.ID)
		v5 := srv.snapPost(rm.ID, []map[string]any{{"op": "remove_node", "id": "orders"}})
		srv.snapNow(rm.ID) // keep 1: the one at 4 goes, the checkpoint stays

		// Kept: the newest snapshot and the checkpoints (one, unless the
		// clock passed an hour meanwhile and the scheduler took another).
		list := srv.snapList(rm.ID)
		var checkpoints int64
		at3Kept := false
		for i, m := range list {
			switch {
			case m.Trigger == "checkpoint":
				checkpoints++
				at3Kept = at3Kept || m.Version == 3
			case i != 0:
				t.Errorf("snapshot %+v kept beside the newest, and no checkpoint", m)
			}
		}
		if !at3Kept || list[0].Version != v5 {
			t.Fatalf("snapshots %+v, want the checkpoint at 3 and the newest at %d", list, v5)
		}
		var stats struct {
			Count       int64 `json:"count"`
			Checkpoints int64 `json:"checkpoints"`
		}
		srv.must("GET", base+"/snapshots/stats", nil).decode(t, &stats)
		if stats.Count != int64(len(list)) || stats.Checkpoints != checkpoints {
			t.Errorf("snapshot stats %+v, want count %d with %d checkpoints", stats, len(list), checkpoints)
		}

		if g := srv.graphAt(rm.ID, 3); !reflect.DeepEqual(g, at3) {
			t.Errorf("graph at 3 = %+v\nwant what GET /graph answered at 3: %+v", g, at3)
		}
		if g := srv.graphAt(rm.ID, 4); !reflect.DeepEqual(g, at4) {
			t.Errorf("graph at 4 = %+v\nwant what GET /graph answered at 4: %+v", g, at4)
		}
		if g, now := srv.graphAt(rm.ID, v5), srv.snapGraph(rm.ID); !reflect.DeepEqual(g, now) {
			t.Errorf("graph at the current version = %+v, want the live graph %+v", g, now)
		}
		if empty := srv.graphAt(rm.ID, 0); len(empty.Nodes)+len(empty.Edges) != 0 {
			t.Errorf("graph at 0 = %+v, want the empty room", empty)
		}

		var d historyDiff
		r := srv.must("GET", base+"/diff?from=3", nil)
		if r.Status != http.StatusOK {
			t.Fatalf("diff from 3: %d %s", r.Status, r.Body)
		}
		r.decode(t, &d)
		if d.From != 3 || d.To != v5 || len(d.Nodes.Added) != 0 ||
			!reflect.DeepEqual(ids(d.Nodes.Removed), []string{"orders"}) || !reflect.DeepEqual(ids(d.Edges.Removed), []string{"fk"}) ||
			!reflect.DeepEqual(ids(d.Nodes.Changed), []string{"users"}) {
			t.Errorf("diff from 3 = %+v; want orders and fk (with its node) removed, users changed, to %d", d, v5)
		} else if fields := fmt.Sprint(d.Nodes.Changed[0]["fields"]); fields != "[label data.columns]" {
			t.Errorf("users changed fields %s, want [label data.columns]", fields)
		}
		srv.must("GET", base+"/diff?from=4&to=3", nil).decode(t, &d)
		if d.From != 4 || d.To != 3 || !reflect.DeepEqual(ids(d.Nodes.Changed), []string{"users"}) || len(d.Nodes.Removed)+len(d.Edges.Removed) != 0 {
			t.Errorf("diff from 4 to 3 = %+v, want users changed back", d)
		}

		// Bad input: a problem naming what is wrong, and nothing changes.
		bad := []struct {
			what, method, path string
			body               any
			status             int
			code, names        string
		}{
			{"malformed version", "GET", base + "/graph?version=three", nil, 400, "invalid_version", "version"},
			{"negative version", "GET", base + "/graph?version=-2", nil, 400, "invalid_version", "version"},
			{"version past the room", "GET", base + "/graph?version=99", nil, 400, "invalid_version", "past the room's version"},
			{"version no longer kept", "GET", base + "/graph?version=2", nil, 410, "history_gone", "oldest version kept is 3"},
			{"diff without from", "GET", base + "/diff", nil, 400, "invalid_version", "from is required"},
			{"diff malformed to", "GET", base + "/diff?from=3&to=x", nil, 400, "invalid_version", "to must be"},
			{"diff past the room", "GET", base + "/diff?from=3&to=99", nil, 400, "invalid_version", "to 99"},
			{"diff from a version gone", "GET", base + "/diff?from=1", nil, 410, "history_gone", "from 1"},
			{"unknown room", "GET", "/rooms/00000000-0000-4000-8000-000000000000/graph?version=1", nil, 404, "room_not_found", ""},
			{"restore without version", "POST", base + "/restore", `{}`, 400, "invalid_version", "version is required"},
			{"restore malformed", "POST", base + "/restore", `{"version":`, 400, "invalid_json", ""},
			{"restore unknown field", "POST", base + "/restore", `{"version":3,"snapshot":"x"}`, 400, "invalid_json", "snapshot"},
			{"restore string version", "POST", base + "/restore", `{"version":"3"}`, 400, "invalid_json", "version"},
			{"restore negative", "POST", base + "/restore", `{"version":-1}`, 400, "invalid_version", "-1"},
			{"restore past the room", "POST", base + "/restore", `{"version":99}`, 400, "invalid_version", "past the room's version"},
			{"restore gone", "POST", base + "/restore", `{"version":1}`, 410, "history_gone", "version 1"},
			{"restore not JSON", "POST", base + "/restore", nil, 415, "unsupported_media_type", ""},
		}
		for _, b := range bad {
			var header []string
			if b.status == 415 {
				header = []string{"Content-Type", "text/plain"}
				b.body = `{"version":3}`
			}
			r := srv.must(b.method, b.path, b.body, header...)
			snapProblem(t, b.what, r, b.status, b.code)
			if !strings.Contains(string(r.Body), b.names) {
				t.Errorf("%s: problem %s does not name %q", b.what, r.Body, b.names)
			}
			if v := srv.roomVersion(rm.ID); v != v5 {
				t.Fatalf("%s changed the room: version %d, want %d", b.what, v, v5)
			}
		}

		// Restore version 3: a new version holding that graph; the
		// versions in between stay readable.
		sub := snapSubscribe(t, srv.URL, rm.ID, fmt.Sprint(v5))
		r = srv.must("POST", base+"/restore", `{"version":3}`)
		if r.Status != http.StatusOK {
			t.Fatalf("restore version 3: %d %s", r.Status, r.Body)
		}
		var res struct {
			Version int64 `json:"version"`
		}
		r.decode(t, &res)
		if res.Version != v5+1 {
			t.Errorf("restore answered version %d, want %d", res.Version, v5+1)
		}
		if ev := sub.nextNamed(t, "reset", 10*time.Second); ev.ID != fmt.Sprint(v5+1) {
			t.Errorf("reset event id %q, want %d", ev.ID, v5+1)
		}
		now := srv.snapGraph(rm.ID)
		if !reflect.DeepEqual(now.Nodes, at3.Nodes) || !reflect.DeepEqual(now.Edges, at3.Edges) || now.Version != v5+1 {
			t.Errorf("after restoring 3 the graph is %+v, want the elements of %+v at version %d", now, at3, v5+1)
		}
		if g := srv.graphAt(rm.ID, 4); !reflect.DeepEqual(g, at4) {
			t.Errorf("graph at 4 after the restore = %+v, want %+v", g, at4)
		}
		var page struct {
			Ops []loggedOp `json:"ops"`
		}
		srv.must("GET", fmt.Sprintf("%s/ops?since=%d", base, v5), nil).decode(t, &page)
		if len(page.Ops) != 1 || page.Ops[0].Seq != v5+1 || !strings.Contains(string(page.Ops[0].Op), `"op":"reset"`) {
			t.Errorf("the log after %d is %+v, want the reset at %d", v5, page.Ops, v5+1)
		}

		// Without history the same steps leave only the newest snapshot,
		// and versions before it are gone.
		off := startServer(t, store.Config{DatabaseURL: cfg.DatabaseURL, DataDir: t.TempDir()}, "LIVESHARE_SNAPSHOT_INTERVAL=200ms",
			"LIVESHARE_SNAPSHOT_KEEP=1", noHourly, noDaily)
		plain := off.createRoom("no history")
		off.snapPost(plain.ID, []map[string]any{{"op": "add_node", "node": map[string]any{"id": "a"}}})
		off.snapWait(plain.ID, 30*time.Second, "interval snapshot", func(l []snapMeta) bool { return len(l) > 0 })
		off.snapPost(plain.ID, []map[string]any{{"op": "add_node", "node": map[string]any{"id": "b"}}})
		off.snapNow(plain.ID)
		if l := off.snapList(plain.ID); len(l) != 1 || l[0].Version != 2 || l[0].Trigger == "checkpoint" {
			t.Errorf("without history: snapshots %+v, want the newest one only, no checkpoint", l)
		}
		snapProblem(t, "without history, version 1", off.must("GET", "/rooms/"+plain.ID+"/graph?version=1", nil), http.StatusGone, "history_gone")
	})
}
