package main_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/liveshare/liveshare/store"
	"github.com/liveshare/liveshare/store/storetest"
)

// TestRoomsGraphAndOps walks the REST API as the README's curl walkthrough
// does, on each database.
func TestRoomsGraphAndOps(t *testing.T) {
	t.Parallel()
	databases(t, func(t *testing.T, cfg store.Config) {
		srv := startServer(t, cfg)

		if r := srv.must("GET", "/healthz", nil); r.Status != 200 || !strings.Contains(string(r.Body), `"ok"`) {
			t.Fatalf("healthz: %d %s", r.Status, r.Body)
		}
		if r := srv.must("GET", "/readyz", nil); r.Status != 200 {
			t.Fatalf("readyz: %d %s", r.Status, r.Body)
		}

		r := srv.must("POST", "/rooms", `{"name":"schema"}`)
		if r.Status != http.StatusCreated {
			t.Fatalf("create: %d %s", r.Status, r.Body)
		}
		var rm roomJSON
		r.decode(t, &rm)
		if got, want := r.Header.Get("Location"), "/rooms/"+rm.ID; got != want {
			t.Errorf("Location %q, want %q", got, want)
		}
		if rm.Name != "schema" || rm.Version != 0 || rm.ElementCount != 0 {
			t.Errorf("new room %+v", rm)
		}

		ops := `{"client_id":"tab-1","ops":[
			{"op":"add_node","node":{"id":"users","kind":"table","label":"users","x":120.5,"y":80,"data":{"columns":[{"name":"id","type":"uuid"}]}}},
			{"op":"add_node","node":{"id":"orders","kind":"table","label":"orders","x":300,"y":80}},
			{"op":"add_edge","edge":{"id":"orders_user_fk","kind":"relation","source":"orders","target":"users","label":"user_id"}}]}`
		r = srv.must("POST", "/rooms/"+rm.ID+"/ops", ops)
		if r.Status != 200 || strings.TrimSpace(string(r.Body)) != `{"version":3,"applied":3}` {
			t.Fatalf("post ops: %d %s", r.Status, r.Body)
		}
		r = srv.must("POST", "/rooms/"+rm.ID+"/ops", `{"base_version":3,"ops":[{"op":"update_node","id":"users","patch":{"x":10,"data":{"columns":null}}},{"op":"remove_node","id":"orders"}]}`)
		if r.Status != 200 || strings.TrimSpace(string(r.Body)) != `{"version":5,"applied":2}` {
			t.Fatalf("post ops with base_version: %d %s", r.Status, r.Body)
		}

		r = srv.must("GET", "/rooms/"+rm.ID+"/graph", nil)
		want := `{"room_id":"` + rm.ID + `","version":5,"nodes":[{"id":"users","kind":"table","label":"users","x":10,"y":80,"data":{}}],"edges":[]}`
		if r.Status != 200 || strings.TrimSpace(string(r.Body)) != want {
			t.Fatalf("graph: %d\n got %s\nwant %s", r.Status, r.Body, want)
		}
		if got := r.Header.Get("ETag"); got != `"5"` {
			t.Errorf("ETag %q, want \"5\"", got)
		}
		if r := srv.must("GET", "/rooms/"+rm.ID+"/graph", nil, "If-None-Match", `"5"`); r.Status != http.StatusNotModified {
			t.Errorf("If-None-Match current: %d, want 304", r.Status)
		}
		if r := srv.must("GET", "/rooms/"+rm.ID+"/graph", nil, "If-None-Match", `"4"`); r.Status != http.StatusOK {
			t.Errorf("If-None-Match stale: %d, want 200", r.Status)
		}

		r = srv.must("GET", "/rooms/"+rm.ID+"/ops?since=3&limit=1", nil)
		var page struct {
			Version int64      `json:"version"`
			Ops     []loggedOp `json:"ops"`
		}
		r.decode(t, &page)
		if page.Version != 5 || len(page.Ops) != 1 || page.Ops[0].Seq != 4 || page.Ops[0].ClientID != "" {
			t.Errorf("ops since 3 limit 1: %s", r.Body)
		}
		r = srv.must("GET", "/rooms/"+rm.ID+"/ops?since=0&limit=1", nil)
		r.decode(t, &page)
		if len(page.Ops) != 1 || page.Ops[0].ClientID != "tab-1" {
			t.Errorf("first op should carry client_id tab-1: %s", r.Body)
		}

		r = srv.must("GET", "/rooms/"+rm.ID, nil)
		r.decode(t, &rm)
		if rm.Version != 5 || rm.ElementCount != 1 {
			t.Errorf("room after ops: %+v, want version 5, 1 element", rm)
		}

		// The same idempotency key answers the first result and applies nothing.
		add := `{"ops":[{"op":"add_node","node":{"id":"notes"}}]}`
		first := srv.must("POST", "/rooms/"+rm.ID+"/ops", add, "Idempotency-Key", "k-1")
		again := srv.must("POST", "/rooms/"+rm.ID+"/ops", add, "Idempotency-Key", "k-1")
		if first.Status != 200 || again.Status != 200 || string(first.Body) != string(again.Body) {
			t.Errorf("idempotent retry: first %d %s, again %d %s", first.Status, first.Body, again.Status, again.Body)
		}
		if again.Header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("a replayed answer should say Idempotent-Replayed: true")
		}
		if v := srv.roomVersion(rm.ID); v != 6 {
			t.Errorf("version %d after an idempotent retry, want 6", v)
		}

		// Listing pages newest first.
		for i := range 4 {
			srv.createRoom(fmt.Sprintf("room %d", i))
		}
		var names []string
		cursor := ""
		for {
			r := srv.must("GET", "/rooms?limit=2"+cursor, nil)
			var list struct {
				Rooms      []roomJSON `json:"rooms"`
				NextCursor *string    `json:"next_cursor"`
			}
			r.decode(t, &list)
			for _, x := range list.Rooms {
				names = append(names, x.Name)
			}
			if list.NextCursor == nil {
				break
			}
			cursor = "&cursor=" + *list.NextCursor
		}
		if got, want := strings.Join(names, ","), "room 3,room 2,room 1,room 0,schema"; got != want {
			t.Errorf("rooms listed %q, want %q", got, want)
		}

		// State survives a crash.
		srv = srv.restart()
		r = srv.must("GET", "/rooms/"+rm.ID+"/graph", nil)
		if !strings.Contains(string(r.Body), `"version":6`) || !strings.Contains(string(r.Body), `"id":"notes"`) {
			t.Errorf("graph after restart: %s", r.Body)
		}

		if r := srv.must("DELETE", "/rooms/"+rm.ID, nil); r.Status != http.StatusNoContent {
			t.Fatalf("delete: %d %s", r.Status, r.Body)
		}
		for _, path := range []string{"", "/graph", "/ops"} {
			if r := srv.must("GET", "/rooms/"+rm.ID+path, nil); r.Status != http.StatusNotFound {
				t.Errorf("GET %s of a deleted room: %d", path, r.Status)
			}
		}
		if r := srv.must("POST", "/rooms/"+rm.ID+"/ops", add); r.Status != http.StatusNotFound {
			t.Errorf("post to a deleted room: %d", r.Status)
		}
		if r := srv.must("DELETE", "/rooms/"+rm.ID, nil); r.Status != http.StatusNotFound {
			t.Errorf("second delete: %d", r.Status)
		}

		if code := srv.terminate(15 * time.Second); code != 0 {
			t.Errorf("exit code %d after SIGTERM, want 0", code)
		}
	})
}

// TestInvalidConfigurationStops checks that a bad setting stops the process
// at start with one line naming it.
func TestInvalidConfigurationStops(t *testing.T) {
	t.Parallel()
	cases := []struct{ env, want string }{
		{"LIVESHARE_SNAPSHOT_INTERVAL=soon", "LIVESHARE_SNAPSHOT_INTERVAL"},
		{"LIVESHARE_SNAPSHOT_KEEP=0", "LIVESHARE_SNAPSHOT_KEEP"},
		{"LIVESHARE_MAX_BODY_BYTES=lots", "LIVESHARE_MAX_BODY_BYTES"},
		{"LIVESHARE_LOG_LEVEL=loud", "LIVESHARE_LOG_LEVEL"},
		{"DATABASE_URL=mysql://x", "DATABASE_URL"},
		{"LIVESHARE_HISTORY_HOURLY=-1h", "LIVESHARE_HISTORY_HOURLY"},
		{"LIVESHARE_HISTORY_DAILY=a month", "LIVESHARE_HISTORY_DAILY"},
	}
	trackSources(t)
	for _, c := range cases {
		cmd := exec.Command(binary)
		cmd.Env = append(os.Environ(), "LIVESHARE_DATA_DIR="+t.TempDir(), "LIVESHARE_ADDR=127.0.0.1:0", c.env)
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Errorf("%s: the process started", c.env)
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != 1 || !strings.Contains(lines[0], c.want) {
			t.Errorf("%s: output %q, want one line naming %s", c.env, out, c.want)
		}
	}
}

// TestShutdownEndsEventStreams: SIGTERM with subscribers connected ends
// their streams and the process exits cleanly, well within its timeout.
func TestShutdownEndsEventStreams(t *testing.T) {
	t.Parallel()
	srv := startServer(t, storetest.Config(t, "sqlite"), "LIVESHARE_SHUTDOWN_TIMEOUT=20s")
	rm := srv.createRoom("shutdown")
	var bodies []io.ReadCloser
	for range 3 {
		resp, err := http.Get(srv.URL + "/rooms/" + rm.ID + "/events")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		bodies = append(bodies, resp.Body)
	}
	// Were the streams not ended, Shutdown would wait its whole 20s for them.
	if code := srv.terminate(15 * time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	for i, b := range bodies {
		if _, err := io.ReadAll(b); err != nil {
			t.Errorf("stream %d did not end cleanly: %v", i, err)
		}
	}
}
