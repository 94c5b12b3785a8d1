package main_test

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/lib/pq"  // "postgres", to corrupt a stored snapshot
	_ "modernc.org/sqlite" // "sqlite", to corrupt a stored snapshot

	"github.com/liveshare/liveshare/store"
)

// End-to-end tests of DESIGN.md section 6 (snapshots) and section 1 item 5
// (recovery is exact) against the built binary, on each database.

// snapInterval runs the scheduler every second. The tests that pair it with
// manual snapshots (snapTake, which wants a new one: 201) do not run in
// parallel: on a busy machine the scheduler can snapshot the room between
// a post and the manual request, which then answers the scheduler's
// snapshot (200).
const snapInterval = "LIVESHARE_SNAPSHOT_INTERVAL=1s"

// Without history (both 0) every snapshot keeps the trigger that took it
// and only the newest LIVESHARE_SNAPSHOT_KEEP are kept: the behaviour the
// tests of triggers and pruning pin down. With history on, a room's first
// automatic snapshot of each hour becomes a checkpoint (history_test.go).
const (
	noHourly = "LIVESHARE_HISTORY_HOURLY=0"
	noDaily  = "LIVESHARE_HISTORY_DAILY=0"
)

// snapMeta is a snapshot's metadata as the API answers it.
type snapMeta struct {
	ID           string    `json:"id"`
	RoomID       string    `json:"room_id"`
	Version      int64     `json:"version"`
	CreatedAt    time.Time `json:"created_at"`
	SizeBytes    int64     `json:"size_bytes"`
	ElementCount int64     `json:"element_count"`
	Trigger      string    `json:"trigger"`
}

// snapWithState is GET …/snapshots/latest or …/snapshots/{id} as JSON.
type snapWithState struct {
	snapMeta
	State struct {
		Nodes []any `json:"nodes"`
		Edges []any `json:"edges"`
	} `json:"state"`
}

// snapGraph is GET /rooms/{id}/graph, decoded generically so that every
// field of every element is compared.
type snapGraph struct {
	RoomID  string `json:"room_id"`
	Version int64  `json:"version"`
	Nodes   []any  `json:"nodes"`
	Edges   []any  `json:"edges"`
}

var snapMetaFields = []string{"id", "room_id", "version", "created_at", "size_bytes", "element_count", "trigger"}

func (s *server) snapList(roomID string) []snapMeta {
	s.t.Helper()
	r := s.must("GET", "/rooms/"+roomID+"/snapshots", nil)
	if r.Status != http.StatusOK {
		s.t.Fatalf("list snapshots: %d %s", r.Status, r.Body)
	}
	var raw struct {
		Snapshots []map[string]any `json:"snapshots"`
	}
	r.decode(s.t, &raw)
	for _, m := range raw.Snapshots {
		for _, f := range snapMetaFields {
			if _, ok := m[f]; !ok {
				s.t.Errorf("snapshot meta %v lacks %q", m, f)
			}
		}
	}
	var list struct {
		Snapshots []snapMeta `json:"snapshots"`
	}
	r.decode(s.t, &list)
	if list.Snapshots == nil {
		s.t.Fatalf("snapshots list is not an array: %s", r.Body)
	}
	return list.Snapshots
}

// snapWait polls the room's snapshots until ok holds, failing after timeout.
func (s *server) snapWait(roomID string, timeout time.Duration, what string, ok func([]snapMeta) bool) []snapMeta {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		list := s.snapList(roomID)
		if ok(list) {
			return list
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("room %s: no %s within %s; snapshots: %+v", roomID, what, timeout, list)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *server) snapTake(roomID string) snapMeta {
	s.t.Helper()
	r := s.must("POST", "/rooms/"+roomID+"/snapshots", nil)
	var m snapMeta
	switch r.Status {
	case http.StatusCreated:
		r.decode(s.t, &m)
		if m.Trigger != "manual" || m.RoomID != roomID {
			s.t.Errorf("manual snapshot meta %+v", m)
		}
	case http.StatusOK:
		// The room had not changed since its latest snapshot: on a busy
		// machine the scheduler or an idle eviction can take it between
		// the test's last post and this request. The contract is then to
		// answer that snapshot, which must hold the room's current version.
		r.decode(s.t, &m)
		if v := s.roomVersion(roomID); m.Version != v || m.RoomID != roomID {
			s.t.Fatalf("manual snapshot of an unchanged room answered %+v, want the snapshot at version %d", m, v)
		}
	default:
		s.t.Fatalf("take snapshot: %d %s", r.Status, r.Body)
	}
	return m
}

func (s *server) snapGet(roomID, path string) snapWithState {
	s.t.Helper()
	r := s.must("GET", "/rooms/"+roomID+"/snapshots/"+path, nil)
	if r.Status != http.StatusOK {
		s.t.Fatalf("GET snapshots/%s: %d %s", path, r.Status, r.Body)
	}
	var sw snapWithState
	r.decode(s.t, &sw)
	return sw
}

func (s *server) snapGraph(roomID string) snapGraph {
	s.t.Helper()
	r := s.must("GET", "/rooms/"+roomID+"/graph", nil)
	if r.Status != http.StatusOK {
		s.t.Fatalf("graph: %d %s", r.Status, r.Body)
	}
	var g snapGraph
	r.decode(s.t, &g)
	return g
}

// snapPost posts ops that must be acknowledged and returns the version.
func (s *server) snapPost(roomID string, ops []map[string]any) int64 {
	s.t.Helper()
	r := s.must("POST", "/rooms/"+roomID+"/ops", map[string]any{"ops": ops, "client_id": "snapshot-test"})
	if r.Status != http.StatusOK {
		s.t.Fatalf("post ops: %d %s", r.Status, r.Body)
	}
	var res opsResult
	r.decode(s.t, &res)
	if res.Applied != len(ops) {
		s.t.Fatalf("post ops: applied %d of %d", res.Applied, len(ops))
	}
	return res.Version
}

// snapStep is a batch of every kind of op: step k adds two nodes and an
// edge, patches a node, updates an edge, and removes the previous step's
// second node (taking its edge with it), so that states differ in nodes,
// edges, positions and data.
func snapStep(prefix string, k int) []map[string]any {
	a, b := fmt.Sprintf("%s-%d-a", prefix, k), fmt.Sprintf("%s-%d-b", prefix, k)
	e := fmt.Sprintf("%s-%d-e", prefix, k)
	ops := []map[string]any{
		{"op": "add_node", "node": map[string]any{"id": a, "kind": "table", "label": a, "x": float64(k) * 10.5, "y": -3,
			"data": map[string]any{"columns": []any{map[string]any{"name": "id", "type": "uuid"}}, "step": k}}},
		{"op": "add_node", "node": map[string]any{"id": b, "kind": "view", "x": 1, "y": 2}},
		{"op": "add_edge", "edge": map[string]any{"id": e, "kind": "relation", "source": a, "target": b, "label": "fk"}},
		{"op": "update_node", "id": a, "patch": map[string]any{"x": float64(k) + 0.25, "data": map[string]any{"note": "patched", "step": nil}}},
		{"op": "update_edge", "id": e, "patch": map[string]any{"label": fmt.Sprintf("fk-%d", k), "data": map[string]any{"w": k}}},
	}
	if k > 0 {
		ops = append(ops, map[string]any{"op": "remove_node", "id": fmt.Sprintf("%s-%d-b", prefix, k-1)})
	}
	return ops
}

// snapProblem asserts an error answer: status, problem+json and code.
func snapProblem(t *testing.T, what string, r response, status int, code string) {
	t.Helper()
	if r.Status != status {
		t.Errorf("%s: status %d, want %d (%s)", what, r.Status, status, r.Body)
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		t.Errorf("%s: Content-Type %q, want application/problem+json", what, ct)
	}
	var p problem
	if err := json.Unmarshal(r.Body, &p); err != nil {
		t.Errorf("%s: body %s: %v", what, r.Body, err)
		return
	}
	if p.Code != code || p.Status != status {
		t.Errorf("%s: problem %+v, want code %q status %d", what, p, code, status)
	}
}

// snapSameState compares a snapshot's state with a graph, as decoded JSON.
func snapSameState(t *testing.T, what string, s snapWithState, g snapGraph) {
	t.Helper()
	if s.Version != g.Version {
		t.Errorf("%s: snapshot version %d, graph version %d", what, s.Version, g.Version)
	}
	if !reflect.DeepEqual(s.State.Nodes, g.Nodes) || !reflect.DeepEqual(s.State.Edges, g.Edges) {
		t.Errorf("%s: snapshot state differs from the graph\nsnapshot nodes %v edges %v\n   graph nodes %v edges %v",
			what, s.State.Nodes, s.State.Edges, g.Nodes, g.Edges)
	}
}

func snapNewest(list []snapMeta) snapMeta {
	if len(list) == 0 {
		return snapMeta{}
	}
	return list[0]
}

// TestSnapshotsTakenOnInterval: the scheduler snapshots a room that moved
// (trigger interval) and leaves an idle room alone; latest, as JSON, is the
// room's graph at its version, and as binary the stored snapshot itself.
func TestSnapshotsTakenOnInterval(t *testing.T) {
	t.Parallel()
	databases(t, func(t *testing.T, cfg store.Config) {
		srv := startServer(t, cfg, snapInterval, noHourly, noDaily)
		rm := srv.createRoom("interval")
		var version int64
		for k := range 3 {
			version = srv.snapPost(rm.ID, snapStep("n", k))
		}
		list := srv.snapWait(rm.ID, 10*time.Second, "interval snapshot at version "+strconv.FormatInt(version, 10), func(l []snapMeta) bool {
			return len(l) > 0 && l[0].Version == version
		})
		for _, m := range list {
			if m.Trigger != "interval" || m.RoomID != rm.ID || m.ID == "" || m.CreatedAt.IsZero() || m.SizeBytes <= 0 {
				t.Errorf("snapshot meta %+v, want trigger interval of room %s", m, rm.ID)
			}
		}
		newest := list[0]
		g := srv.snapGraph(rm.ID)
		if g.Version != version {
			t.Fatalf("graph version %d, want %d", g.Version, version)
		}
		if want := int64(len(g.Nodes) + len(g.Edges)); newest.ElementCount != want {
			t.Errorf("element_count %d, want %d", newest.ElementCount, want)
		}

		// Idle: three intervals pass, nothing is added.
		time.Sleep(3500 * time.Millisecond)
		if again := srv.snapList(rm.ID); len(again) != len(list) {
			t.Errorf("an idle room got snapshots: %d before, %d after 3 intervals: %+v", len(list), len(again), again)
		}

		latest := srv.snapGet(rm.ID, "latest")
		if latest.snapMeta != newest {
			t.Errorf("latest meta %+v, want the newest listed %+v", latest.snapMeta, newest)
		}
		snapSameState(t, "latest", latest, g)

		bin := srv.must("GET", "/rooms/"+rm.ID+"/snapshots/latest", nil, "Accept", "application/octet-stream")
		if bin.Status != http.StatusOK {
			t.Fatalf("latest as binary: %d %s", bin.Status, bin.Body)
		}
		h := bin.Header
		if ct := h.Get("Content-Type"); ct != "application/octet-stream" {
			t.Errorf("binary Content-Type %q", ct)
		}
		if h.Get("X-Snapshot-Id") != newest.ID || h.Get("X-Snapshot-Version") != strconv.FormatInt(newest.Version, 10) ||
			h.Get("X-Element-Count") != strconv.FormatInt(newest.ElementCount, 10) || h.Get("ETag") == "" {
			t.Errorf("binary headers %v, want the meta %+v and an ETag", h, newest)
		}
		if int64(len(bin.Body)) != newest.SizeBytes {
			t.Errorf("binary body %d bytes, size_bytes %d", len(bin.Body), newest.SizeBytes)
		}
		if r := srv.must("GET", "/rooms/"+rm.ID+"/snapshots/latest", nil, "If-None-Match", h.Get("ETag")); r.Status != http.StatusNotModified {
			t.Errorf("latest with If-None-Match of its ETag: %d, want 304", r.Status)
		}
		if len(bin.Body) < 4 || string(bin.Body[:4]) != "LSNP" {
			t.Errorf("binary body does not start with the magic: %q", bin.Body[:min(len(bin.Body), 8)])
		}
	})
}

// TestSnapshotKeepPrunesHistory: with KEEP=3 only the 3 newest snapshots
// stay, newest first; the ops before the oldest kept one are gone (410
// history_gone) and the ops after it are all still listed.
func TestSnapshotKeepPrunesHistory(t *testing.T) {
	// Alone: see snapInterval.
	databases(t, func(t *testing.T, cfg store.Config) {
		srv := startServer(t, cfg, snapInterval, "LIVESHARE_SNAPSHOT_KEEP=3", noHourly, noDaily)
		rm := srv.createRoom("keep")
		var version int64
		var taken []snapMeta
		for k := range 5 {
			version = srv.snapPost(rm.ID, snapStep("k", k))
			taken = append(taken, srv.snapTake(rm.ID))
		}
		list := srv.snapList(rm.ID)
		if len(list) != 3 {
			t.Fatalf("%d snapshots kept, want 3: %+v", len(list), list)
		}
		for i := 1; i < len(list); i++ {
			a, b := list[i-1], list[i]
			if a.Version < b.Version || (a.Version == b.Version && a.CreatedAt.Before(b.CreatedAt)) {
				t.Errorf("snapshots not newest first: %+v", list)
			}
		}
		if list[0].ID != taken[4].ID || list[0].Version != version {
			t.Errorf("newest kept %+v, want the last manual one %+v at version %d", list[0], taken[4], version)
		}
		for _, old := range taken[:2] {
			for _, m := range list {
				if m.ID == old.ID {
					t.Errorf("snapshot %s (version %d) should have been deleted", old.ID, old.Version)
				}
			}
			if r := srv.must("GET", "/rooms/"+rm.ID+"/snapshots/"+old.ID, nil); r.Status != http.StatusNotFound {
				t.Errorf("GET deleted snapshot %s: %d", old.ID, r.Status)
			}
		}

		oldest := list[len(list)-1]
		snapProblem(t, "ops since 0 after pruning", srv.must("GET", "/rooms/"+rm.ID+"/ops?since=0", nil), http.StatusGone, "history_gone")
		r := srv.must("GET", fmt.Sprintf("/rooms/%s/ops?since=%d&limit=1000", rm.ID, oldest.Version), nil)
		if r.Status != http.StatusOK {
			t.Fatalf("ops since the oldest kept snapshot (%d): %d %s", oldest.Version, r.Status, r.Body)
		}
		var page struct {
			Version int64      `json:"version"`
			Ops     []loggedOp `json:"ops"`
		}
		r.decode(t, &page)
		if page.Version != version || int64(len(page.Ops)) != version-oldest.Version {
			t.Fatalf("ops since %d: version %d, %d ops; want version %d, %d ops", oldest.Version, page.Version, len(page.Ops), version, version-oldest.Version)
		}
		for i, op := range page.Ops {
			if op.Seq != oldest.Version+int64(i)+1 {
				t.Errorf("op %d has seq %d, want %d", i, op.Seq, oldest.Version+int64(i)+1)
			}
		}
		// The room still loads exactly from what was kept.
		before := srv.snapGraph(rm.ID)
		srv = srv.restart()
		if after := srv.snapGraph(rm.ID); !reflect.DeepEqual(before, after) {
			t.Errorf("graph after restart differs:\nbefore %+v\n after %+v", before, after)
		}
	})
}

// TestRecoverAfterKill: after SIGKILL every room comes back exactly at its
// last acknowledged version, from its snapshot plus the ops after it.
func TestRecoverAfterKill(t *testing.T) {
	t.Parallel()
	databases(t, func(t *testing.T, cfg store.Config) {
		srv := startServer(t, cfg, snapInterval)
		type roomState struct {
			id      string
			version int64
			graph   snapGraph
		}
		rooms := make([]*roomState, 3)
		for i := range rooms {
			rooms[i] = &roomState{id: srv.createRoom(fmt.Sprintf("crash %d", i)).ID}
			for k := range 2 + i {
				rooms[i].version = srv.snapPost(rooms[i].id, snapStep(fmt.Sprintf("r%d", i), k))
			}
		}
		for _, rs := range rooms {
			v := rs.version
			srv.snapWait(rs.id, 10*time.Second, "snapshot", func(l []snapMeta) bool { return len(l) > 0 && l[0].Version == v })
		}
		// Acknowledged ops after the snapshots: recovery must replay them.
		for i, rs := range rooms {
			for k := 2 + i; k < 4+i; k++ {
				rs.version = srv.snapPost(rs.id, snapStep(fmt.Sprintf("r%d", i), k))
			}
			rs.graph = srv.snapGraph(rs.id)
			if rs.graph.Version != rs.version {
				t.Fatalf("room %s: graph at %d, acknowledged %d", rs.id, rs.graph.Version, rs.version)
			}
		}
		srv = srv.restart()
		for _, rs := range rooms {
			got := srv.snapGraph(rs.id)
			if got.Version != rs.version {
				t.Errorf("room %s: version %d after restart, last acknowledged %d", rs.id, got.Version, rs.version)
			}
			if !reflect.DeepEqual(got, rs.graph) {
				t.Errorf("room %s: graph after restart differs\nbefore %+v\n after %+v", rs.id, rs.graph, got)
			}
			if v := srv.roomVersion(rs.id); v != rs.version {
				t.Errorf("room %s: GET room version %d, want %d", rs.id, v, rs.version)
			}
		}
		var logs string
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if logs = srv.logs.String(); strings.Count(logs, "from=\"snapshot at version") == len(rooms) {
				break
			}
		}
		if n := strings.Count(logs, "from=\"snapshot at version"); n != len(rooms) {
			t.Errorf("%d of %d rooms were loaded from a snapshot after the restart", n, len(rooms))
		}
	})
}

// snapCorrupt flips bytes in the middle of a stored snapshot's data, with
// the server stopped, and returns the id of the room's newest snapshot it
// corrupted.
func snapCorrupt(t *testing.T, cfg store.Config, roomID string) string {
	t.Helper()
	driver, dsn := "sqlite", filepath.Join(cfg.DataDir, "liveshare.db")
	if cfg.DatabaseURL != "" {
		driver, dsn = "postgres", cfg.DatabaseURL
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// q turns ? placeholders into $1, $2… for PostgreSQL.
	q := func(query string) string {
		if driver != "postgres" {
			return query
		}
		var b strings.Builder
		n := 0
		for _, r := range query {
			if r == '?' {
				n++
				fmt.Fprintf(&b, "$%d", n)
				continue
			}
			b.WriteRune(r)
		}
		return b.String()
	}
	var id string
	var data []byte
	err = db.QueryRowContext(ctx, q(`SELECT id, data FROM snapshots WHERE room_id = ? ORDER BY version DESC, created_at DESC, id LIMIT 1`), roomID).Scan(&id, &data)
	if err != nil {
		t.Fatalf("read newest snapshot: %v", err)
	}
	if len(data) < 20 {
		t.Fatalf("snapshot %s has only %d bytes", id, len(data))
	}
	bad := append([]byte(nil), data...)
	for i := len(bad) / 2; i < len(bad)/2+4; i++ {
		bad[i] ^= 0xff
	}
	res, err := db.ExecContext(ctx, q(`UPDATE snapshots SET data = ? WHERE id = ?`), bad, id)
	if err != nil {
		t.Fatalf("corrupt snapshot %s: %v", id, err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("corrupt snapshot %s: %d rows updated", id, n)
	}
	return id
}

// TestRecoverFromCorruptSnapshot: the newest snapshot no longer verifies;
// the room loads from the one before it plus the ops after, exactly, and
// the log names the snapshot it rejected.
func TestRecoverFromCorruptSnapshot(t *testing.T) {
	// Alone: see snapInterval.
	databases(t, func(t *testing.T, cfg store.Config) {
		srv := startServer(t, cfg, snapInterval)
		rm := srv.createRoom("corrupt")
		for k := range 2 {
			srv.snapPost(rm.ID, snapStep("c", k))
		}
		first := srv.snapTake(rm.ID)
		for k := 2; k < 4; k++ {
			srv.snapPost(rm.ID, snapStep("c", k))
		}
		second := srv.snapTake(rm.ID)
		var version int64
		for k := 4; k < 6; k++ {
			version = srv.snapPost(rm.ID, snapStep("c", k))
		}
		before := srv.snapGraph(rm.ID)
		if before.Version != version || second.Version <= first.Version {
			t.Fatalf("graph at %d, acknowledged %d; snapshots at %d and %d", before.Version, version, first.Version, second.Version)
		}
		srv.kill()
		// The scheduler may have taken an interval snapshot after the
		// manual ones: corrupt whichever is newest now.
		bad := snapCorrupt(t, cfg, rm.ID)

		srv = startWithEnv(t, srv.env)
		after := srv.snapGraph(rm.ID)
		if !reflect.DeepEqual(before, after) {
			t.Errorf("graph after loading past a corrupt snapshot differs\nbefore %+v\n after %+v", before, after)
		}
		// The log is read from the process's stderr: give it a moment.
		var logs string
		found := false
		for deadline := time.Now().Add(5 * time.Second); !found && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			logs = srv.logs.String()
			for _, line := range strings.Split(logs, "\n") {
				if strings.Contains(line, "stored snapshot rejected") && strings.Contains(line, "snapshot_id="+bad) {
					found = true
				}
			}
		}
		if !found {
			t.Errorf("the log does not say snapshot %s was rejected:\n%s", bad, logs)
		}
		// The rejected snapshot is not served as the latest.
		if latest := srv.snapGet(rm.ID, "latest"); latest.ID == bad {
			t.Errorf("latest is the corrupt snapshot %s", bad)
		}
	})
}

// snapSSE reads an event stream with a small parser of its own.
type snapSSE struct {
	resp   *http.Response
	cancel context.CancelFunc
	events chan snapEvent
}

type snapEvent struct {
	ID, Name, Data string
}

// readEvents parses an event stream from r and hands each event with data
// or a name to fn until fn says stop (false) or the stream ends, whose
// error it returns.
func readEvents(r io.Reader, fn func(snapEvent) bool) error {
	br := bufio.NewReaderSize(r, 1<<16)
	var ev snapEvent
	var data []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if len(data) > 0 || ev.Name != "" {
				ev.Data = strings.Join(data, "\n")
				if !fn(ev) {
					return nil
				}
			}
			ev, data = snapEvent{}, nil
		case strings.HasPrefix(line, ":"):
		default:
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "id":
				ev.ID = value
			case "event":
				ev.Name = value
			case "data":
				data = append(data, value)
			}
		}
	}
}

// snapSubscribe opens roomID's event stream; lastID "" sends no position.
func snapSubscribe(t *testing.T, base, roomID, lastID string) *snapSSE {
	t.Helper()
	h := http.Header{}
	if lastID != "" {
		h.Set("Last-Event-ID", lastID)
	}
	return snapSubscribeHeader(t, base, roomID, h)
}

// snapSubscribeHeader opens roomID's event stream with header.
func snapSubscribeHeader(t *testing.T, base, roomID string, header http.Header) *snapSSE {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/rooms/"+roomID+"/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("subscribe: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		resp.Body.Close()
		t.Fatalf("subscribe: %d", resp.StatusCode)
	}
	c := &snapSSE{resp: resp, cancel: cancel, events: make(chan snapEvent, 1024)}
	go func() {
		defer close(c.events)
		_ = readEvents(resp.Body, func(ev snapEvent) bool {
			c.events <- ev
			return true
		})
	}()
	t.Cleanup(func() {
		cancel()
		resp.Body.Close()
	})
	return c
}

// nextNamed skips events until one named name.
func (c *snapSSE) nextNamed(t *testing.T, name string, timeout time.Duration) snapEvent {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev, ok := <-c.events:
			if !ok {
				t.Fatalf("stream ended before a %s event", name)
			}
			if ev.Name == name {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %s event within %s", name, timeout)
		}
	}
}

// TestRestoreOlderSnapshot: a restore appends a reset op (a new version)
// holding the snapshot's state, sends reset to subscribers, and keeps the
// history.
func TestRestoreOlderSnapshot(t *testing.T) {
	// Alone: see snapInterval.
	databases(t, func(t *testing.T, cfg store.Config) {
		srv := startServer(t, cfg, snapInterval)
		rm := srv.createRoom("restore")
		// A snapshot at version 0 is the oldest kept, so no op is pruned
		// and the whole history stays listable.
		empty := srv.snapTake(rm.ID)
		if empty.Version != 0 {
			t.Fatalf("snapshot of a new room at version %d", empty.Version)
		}
		for k := range 2 {
			srv.snapPost(rm.ID, snapStep("s", k))
		}
		old := srv.snapTake(rm.ID)
		oldState := srv.snapGet(rm.ID, old.ID)
		snapSameState(t, "snapshot just taken", oldState, srv.snapGraph(rm.ID))
		var prev int64
		for k := 2; k < 5; k++ {
			prev = srv.snapPost(rm.ID, snapStep("s", k))
		}
		srv.snapTake(rm.ID)

		sub := snapSubscribe(t, srv.URL, rm.ID, "")
		sub.nextNamed(t, "snapshot", 10*time.Second)

		r := srv.must("POST", "/rooms/"+rm.ID+"/snapshots/"+old.ID+"/restore", nil)
		if r.Status != http.StatusOK {
			t.Fatalf("restore: %d %s", r.Status, r.Body)
		}
		var res struct {
			Version int64 `json:"version"`
		}
		r.decode(t, &res)
		n := prev + 1
		if res.Version != n {
			t.Fatalf("restore answered version %d, want %d", res.Version, n)
		}

		g := srv.snapGraph(rm.ID)
		if g.Version != n {
			t.Errorf("graph version %d after restore, want %d", g.Version, n)
		}
		want := oldState
		want.Version = n
		snapSameState(t, "graph after restore", want, g)

		ev := sub.nextNamed(t, "reset", 10*time.Second)
		if ev.ID != strconv.FormatInt(n, 10) {
			t.Errorf("reset event id %q, want %d", ev.ID, n)
		}
		var data struct {
			SnapshotID *string `json:"snapshot_id"`
			Version    int64   `json:"version"`
			State      struct {
				Nodes []any `json:"nodes"`
				Edges []any `json:"edges"`
			} `json:"state"`
		}
		if err := json.Unmarshal([]byte(ev.Data), &data); err != nil {
			t.Fatalf("reset event data %q: %v", ev.Data, err)
		}
		if data.SnapshotID == nil || *data.SnapshotID != old.ID || data.Version != n {
			t.Errorf("reset event data %s, want snapshot_id %s version %d", ev.Data, old.ID, n)
		}
		if !reflect.DeepEqual(data.State.Nodes, g.Nodes) || !reflect.DeepEqual(data.State.Edges, g.Edges) {
			t.Errorf("reset event state differs from the graph: %s", ev.Data)
		}

		version, logged := srv.allOps(rm.ID)
		if version != n {
			t.Errorf("ops list version %d, want %d", version, n)
		}
		checkLog(t, version, logged)
		if len(logged) == int(n) {
			var op struct {
				Op         string `json:"op"`
				SnapshotID string `json:"snapshot_id"`
			}
			if err := json.Unmarshal(logged[n-1].Op, &op); err != nil {
				t.Fatal(err)
			}
			if logged[n-1].Seq != n || op.Op != "reset" || op.SnapshotID != old.ID {
				t.Errorf("op at seq %d: %s, want a reset of %s", n, logged[n-1].Op, old.ID)
			}
		}

		// A restart replays the reset op to the same state.
		srv = srv.restart()
		if after := srv.snapGraph(rm.ID); !reflect.DeepEqual(after, g) {
			t.Errorf("graph after restart differs from the restored one\nbefore %+v\n after %+v", g, after)
		}
	})
}

// TestSnapshotBadInput: every bad request gets its problem and changes
// nothing.
func TestSnapshotBadInput(t *testing.T) {
	// Alone: see snapInterval.
	databases(t, func(t *testing.T, cfg store.Config) {
		srv := startServer(t, cfg, snapInterval)
		rm := srv.createRoom("bad")
		version := srv.snapPost(rm.ID, snapStep("b", 0))
		own := srv.snapTake(rm.ID)

		other := srv.createRoom("other")
		srv.snapPost(other.ID, snapStep("o", 0))
		foreign := srv.snapTake(other.ID)

		gone := srv.createRoom("gone")
		srv.snapPost(gone.ID, snapStep("g", 0))
		goneSnap := srv.snapTake(gone.ID)
		if r := srv.must("DELETE", "/rooms/"+gone.ID, nil); r.Status != http.StatusNoContent {
			t.Fatalf("delete room: %d %s", r.Status, r.Body)
		}

		empty := srv.createRoom("empty")
		unknownRoom := "6f1c2b9e-0d1a-4c55-9a3e-1b2c3d4e5f60"
		unknownSnap := "0b7a4a52-9c1e-4d1e-8f5e-3a2b1c0d9e8f"

		cases := []struct {
			name, method, path string
			status             int
			code               string
		}{
			{"unknown snapshot", "GET", "/rooms/" + rm.ID + "/snapshots/" + unknownSnap, 404, "snapshot_not_found"},
			{"restore unknown snapshot", "POST", "/rooms/" + rm.ID + "/snapshots/" + unknownSnap + "/restore", 404, "snapshot_not_found"},
			{"another room's snapshot", "GET", "/rooms/" + rm.ID + "/snapshots/" + foreign.ID, 404, "snapshot_not_found"},
			{"another room's snapshot as binary", "GET", "/rooms/" + rm.ID + "/snapshots/" + foreign.ID, 404, "snapshot_not_found"},
			{"restore another room's snapshot", "POST", "/rooms/" + rm.ID + "/snapshots/" + foreign.ID + "/restore", 404, "snapshot_not_found"},
			{"malformed snapshot id", "GET", "/rooms/" + rm.ID + "/snapshots/not-a-uuid", 400, "invalid_snapshot_id"},
			{"restore malformed snapshot id", "POST", "/rooms/" + rm.ID + "/snapshots/12345/restore", 400, "invalid_snapshot_id"},
			{"restore into a deleted room", "POST", "/rooms/" + gone.ID + "/snapshots/" + goneSnap.ID + "/restore", 404, "room_not_found"},
			{"snapshot of a deleted room", "GET", "/rooms/" + gone.ID + "/snapshots/" + goneSnap.ID, 404, "room_not_found"},
			{"latest with no snapshot yet", "GET", "/rooms/" + empty.ID + "/snapshots/latest", 404, "snapshot_not_found"},
			{"snapshots of an unknown room", "GET", "/rooms/" + unknownRoom + "/snapshots", 404, "room_not_found"},
			{"latest of an unknown room", "GET", "/rooms/" + unknownRoom + "/snapshots/latest", 404, "room_not_found"},
			{"take a snapshot of an unknown room", "POST", "/rooms/" + unknownRoom + "/snapshots", 404, "room_not_found"},
			{"restore into an unknown room", "POST", "/rooms/" + unknownRoom + "/snapshots/" + own.ID + "/restore", 404, "room_not_found"},
		}
		for _, c := range cases {
			var hdr []string
			if strings.HasSuffix(c.name, "as binary") {
				hdr = []string{"Accept", "application/octet-stream"}
			}
			snapProblem(t, c.name, srv.must(c.method, c.path, nil, hdr...), c.status, c.code)
		}
		if v := srv.roomVersion(rm.ID); v != version {
			t.Errorf("room version %d after bad requests, want %d", v, version)
		}
		if v := srv.roomVersion(other.ID); v != foreign.Version {
			t.Errorf("other room version %d after bad requests, want %d", v, foreign.Version)
		}
		if v := srv.roomVersion(empty.ID); v != 0 {
			t.Errorf("empty room version %d, want 0", v)
		}
		if l := srv.snapList(empty.ID); len(l) != 0 {
			t.Errorf("empty room has snapshots %+v", l)
		}
		// Nothing was appended to the (pruned) log either.
		r := srv.must("GET", fmt.Sprintf("/rooms/%s/ops?since=%d", rm.ID, own.Version), nil)
		var page struct {
			Version int64      `json:"version"`
			Ops     []loggedOp `json:"ops"`
		}
		r.decode(t, &page)
		if r.Status != http.StatusOK || page.Version != version || len(page.Ops) != 0 {
			t.Errorf("ops since the snapshot: %d %s, want version %d and no op", r.Status, r.Body, version)
		}
	})
}

// TestSnapshotClearAndStats: DELETE …/snapshots leaves one fresh snapshot
// (trigger clear) at the current version; the stats describe it.
func TestSnapshotClearAndStats(t *testing.T) {
	// Alone: see snapInterval.
	databases(t, func(t *testing.T, cfg store.Config) {
		srv := startServer(t, cfg, snapInterval)
		rm := srv.createRoom("clear")
		for k := range 3 {
			srv.snapPost(rm.ID, snapStep("c", k))
			srv.snapTake(rm.ID)
		}
		version := srv.snapPost(rm.ID, snapStep("c", 3))
		if r := srv.must("DELETE", "/rooms/"+rm.ID+"/snapshots", nil); r.Status != http.StatusNoContent {
			t.Fatalf("clear snapshots: %d %s", r.Status, r.Body)
		}
		list := srv.snapList(rm.ID)
		if len(list) != 1 || list[0].Trigger != "clear" || list[0].Version != version {
			t.Fatalf("after clear: %+v, want one snapshot with trigger clear at version %d", list, version)
		}
		fresh := list[0]
		if latest := srv.snapGet(rm.ID, "latest"); latest.snapMeta != fresh {
			t.Errorf("latest after clear %+v, want %+v", latest.snapMeta, fresh)
		}

		r := srv.must("GET", "/rooms/"+rm.ID+"/snapshots/stats", nil)
		if r.Status != http.StatusOK {
			t.Fatalf("room stats: %d %s", r.Status, r.Body)
		}
		var raw map[string]any
		r.decode(t, &raw)
		for _, f := range []string{"count", "total_bytes", "latest_version", "latest_at", "versions_behind", "last_encode_ms"} {
			if _, ok := raw[f]; !ok {
				t.Errorf("room stats %s lack %q", r.Body, f)
			}
		}
		var st struct {
			Count          int64      `json:"count"`
			TotalBytes     int64      `json:"total_bytes"`
			LatestVersion  *int64     `json:"latest_version"`
			LatestAt       *time.Time `json:"latest_at"`
			VersionsBehind int64      `json:"versions_behind"`
			LastEncodeMS   *float64   `json:"last_encode_ms"`
		}
		r.decode(t, &st)
		if st.Count != 1 || st.TotalBytes != fresh.SizeBytes || st.LatestVersion == nil || *st.LatestVersion != version ||
			st.LatestAt == nil || !st.LatestAt.Equal(fresh.CreatedAt) || st.VersionsBehind != 0 || st.LastEncodeMS == nil || *st.LastEncodeMS < 0 {
			t.Errorf("room stats %s, want count 1, total_bytes %d, latest_version %d at %s, versions_behind 0, last_encode_ms set",
				r.Body, fresh.SizeBytes, version, fresh.CreatedAt)
		}
		// One op later the room is one version behind its snapshot.
		srv.snapPost(rm.ID, []map[string]any{{"op": "update_node", "id": "c-3-a", "patch": map[string]any{"y": 7}}})
		r = srv.must("GET", "/rooms/"+rm.ID+"/snapshots/stats", nil)
		r.decode(t, &st)
		if st.VersionsBehind != 1 && st.VersionsBehind != 0 { // 0 once the scheduler caught up
			t.Errorf("versions_behind %d after one op, want 1 (or 0 after an interval snapshot)", st.VersionsBehind)
		}

		// The global stats: poll until the scheduler has run once.
		var global map[string]any
		deadline := time.Now().Add(10 * time.Second)
		for {
			r = srv.must("GET", "/snapshots/stats", nil)
			if r.Status != http.StatusOK {
				t.Fatalf("global stats: %d %s", r.Status, r.Body)
			}
			global = nil
			r.decode(t, &global)
			if global["last_run"] != nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		for _, f := range []string{"rooms", "snapshots", "bytes", "failures", "last_run"} {
			if _, ok := global[f]; !ok {
				t.Errorf("global stats %s lack %q", r.Body, f)
			}
		}
		var gst struct {
			Rooms     int64      `json:"rooms"`
			Snapshots int64      `json:"snapshots"`
			Bytes     int64      `json:"bytes"`
			Failures  int64      `json:"failures"`
			LastRun   *time.Time `json:"last_run"`
		}
		r.decode(t, &gst)
		if gst.Rooms != 1 || gst.Snapshots < 1 || gst.Bytes < fresh.SizeBytes || gst.Failures != 0 || gst.LastRun == nil {
			t.Errorf("global stats %s, want 1 room, ≥1 snapshot, ≥%d bytes, no failure, a last run", r.Body, fresh.SizeBytes)
		}
	})
}

// TestSnapshotOnShutdown: SIGTERM snapshots the rooms that changed (trigger
// shutdown) at their last version.
func TestSnapshotOnShutdown(t *testing.T) {
	t.Parallel()
	databases(t, func(t *testing.T, cfg store.Config) {
		srv := startServer(t, cfg, "LIVESHARE_SNAPSHOT_INTERVAL=1h", noHourly, noDaily)
		rm := srv.createRoom("shutdown")
		idle := srv.createRoom("untouched")
		var version int64
		for k := range 3 {
			version = srv.snapPost(rm.ID, snapStep("t", k))
		}
		before := srv.snapGraph(rm.ID)
		if l := srv.snapList(rm.ID); len(l) != 0 {
			t.Fatalf("snapshots before shutdown with a 1h interval: %+v", l)
		}
		if code := srv.terminate(15 * time.Second); code != 0 {
			t.Errorf("exit code %d after SIGTERM", code)
		}
		srv = startWithEnv(t, srv.env)
		list := srv.snapList(rm.ID)
		if len(list) != 1 || list[0].Trigger != "shutdown" || list[0].Version != version {
			t.Fatalf("snapshots after a graceful shutdown: %+v, want one with trigger shutdown at version %d", list, version)
		}
		snapSameState(t, "shutdown snapshot", srv.snapGet(rm.ID, list[0].ID), before)
		if l := srv.snapList(idle.ID); len(l) != 0 {
			t.Errorf("an unchanged room was snapshotted on shutdown: %+v", l)
		}
		if after := srv.snapGraph(rm.ID); !reflect.DeepEqual(after, before) {
			t.Errorf("graph after restart differs\nbefore %+v\n after %+v", before, after)
		}
	})
}

// TestSnapshotRoomTooLarge: ops that would take a room past what its
// snapshot may hold are refused with 413 room_too_large and change nothing;
// the room as it is still snapshots.
func TestSnapshotRoomTooLarge(t *testing.T) {
	// Alone: see snapInterval.
	databases(t, func(t *testing.T, cfg store.Config) {
		const maxBytes = 65536
		srv := startServer(t, cfg, snapInterval,
			"LIVESHARE_SNAPSHOT_MAX_BYTES="+strconv.Itoa(maxBytes), "LIVESHARE_MAX_BODY_BYTES=4194304")
		rm := srv.createRoom("large")
		rng := rand.New(rand.NewPCG(1, 2))
		blob := func() string {
			b := make([]byte, 15*1024) // 20 KiB of incompressible base64
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			return base64.StdEncoding.EncodeToString(b)
		}
		var version int64
		refused := false
		for i := range 10 {
			body := map[string]any{"ops": []map[string]any{{"op": "add_node", "node": map[string]any{
				"id": fmt.Sprintf("big-%d", i), "kind": "note", "data": map[string]any{"blob": blob()}}}}}
			r := srv.must("POST", "/rooms/"+rm.ID+"/ops", body)
			if r.Status == http.StatusOK {
				var res opsResult
				r.decode(t, &res)
				version = res.Version
				continue
			}
			snapProblem(t, fmt.Sprintf("node %d", i), r, http.StatusRequestEntityTooLarge, "room_too_large")
			refused = true
			break
		}
		if !refused {
			t.Fatalf("ten 20 KiB nodes were all accepted under a %d-byte snapshot limit", maxBytes)
		}
		if version < 1 {
			t.Fatalf("not even one 20 KiB node was accepted")
		}
		if v := srv.roomVersion(rm.ID); v != version {
			t.Errorf("version %d after the refused request, want %d", v, version)
		}
		if _, logged := srv.allOps(rm.ID); int64(len(logged)) != version {
			t.Errorf("%d ops logged, want %d", len(logged), version)
		}
		m := srv.snapTake(rm.ID)
		if m.Version != version || m.SizeBytes > maxBytes {
			t.Errorf("snapshot %+v, want version %d within %d bytes", m, version, maxBytes)
		}
		r := srv.must("GET", "/snapshots/stats", nil)
		var gst struct {
			Failures int64 `json:"failures"`
		}
		r.decode(t, &gst)
		if gst.Failures != 0 {
			t.Errorf("snapshot failures %d: a room within its budget failed to snapshot", gst.Failures)
		}
	})
}

// TestSnapshotOtherTriggers: a room that gathered SNAPSHOT_EVERY_OPS ops is
// snapshotted at once (threshold), and a changed room leaving memory is
// snapshotted first (idle); the interval is long so only they can act.
func TestSnapshotOtherTriggers(t *testing.T) {
	t.Parallel()
	cases := []struct {
		trigger string
		env     string
		ops     int // steps of snapStep to post
	}{
		{"threshold", "LIVESHARE_SNAPSHOT_EVERY_OPS=10", 3},
		{"idle", "LIVESHARE_ROOM_IDLE_TIMEOUT=1s", 2},
	}
	for _, c := range cases {
		t.Run(c.trigger, func(t *testing.T) {
			databases(t, func(t *testing.T, cfg store.Config) {
				srv := startServer(t, cfg, "LIVESHARE_SNAPSHOT_INTERVAL=1h", c.env, noHourly, noDaily)
				rm := srv.createRoom(c.trigger)
				var version int64
				for k := range c.ops {
					version = srv.snapPost(rm.ID, snapStep("x", k))
				}
				before := srv.snapGraph(rm.ID)
				list := srv.snapWait(rm.ID, 10*time.Second, c.trigger+" snapshot", func(l []snapMeta) bool {
					return len(l) > 0 && l[0].Trigger == c.trigger
				})
				if c.trigger == "idle" && list[0].Version != version {
					t.Errorf("idle snapshot at version %d, want %d", list[0].Version, version)
				}
				if c.trigger == "threshold" && (list[0].Version < 10 || list[0].Version > version) {
					t.Errorf("threshold snapshot at version %d, want 10..%d", list[0].Version, version)
				}
				// Reloading (after eviction, or a crash) gives the same graph.
				srv = srv.restart()
				if after := srv.snapGraph(rm.ID); !reflect.DeepEqual(after, before) {
					t.Errorf("graph after restart differs\nbefore %+v\n after %+v", before, after)
				}
			})
		})
	}
}

// TestRestoreEventSameLiveAndReplayed: a subscriber resuming from before a
// restore gets the reset event replayed from the log; it is the very event
// live subscribers got (same id, same data), and its created_at is the
// reset op's created_at in GET /ops.
func TestRestoreEventSameLiveAndReplayed(t *testing.T) {
	t.Parallel()
	databases(t, func(t *testing.T, cfg store.Config) {
		srv := startServer(t, cfg, "LIVESHARE_SNAPSHOT_INTERVAL=1h")
		rm := srv.createRoom("restore events")
		srv.snapTake(rm.ID) // at version 0: nothing gets pruned
		srv.snapPost(rm.ID, snapStep("e", 0))
		old := srv.snapTake(rm.ID)
		prev := srv.snapPost(rm.ID, snapStep("e", 1))

		live := snapSubscribe(t, srv.URL, rm.ID, "")
		live.nextNamed(t, "snapshot", 10*time.Second)
		if r := srv.must("POST", "/rooms/"+rm.ID+"/snapshots/"+old.ID+"/restore", nil); r.Status != http.StatusOK {
			t.Fatalf("restore: %d %s", r.Status, r.Body)
		}
		ev := live.nextNamed(t, "reset", 10*time.Second)
		resumed := snapSubscribe(t, srv.URL, rm.ID, strconv.FormatInt(prev, 10))
		ev2 := resumed.nextNamed(t, "reset", 10*time.Second)
		if ev2.ID != ev.ID {
			t.Errorf("replayed reset event id %q, live one %q", ev2.ID, ev.ID)
		}

		var liveData, replayedData map[string]any
		if err := json.Unmarshal([]byte(ev.Data), &liveData); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(ev2.Data), &replayedData); err != nil {
			t.Fatal(err)
		}
		liveAt, replayedAt := liveData["created_at"], replayedData["created_at"]
		delete(liveData, "created_at")
		delete(replayedData, "created_at")
		if !reflect.DeepEqual(liveData, replayedData) {
			t.Errorf("replayed reset event data differs from the live one\nlive     %s\nreplayed %s", ev.Data, ev2.Data)
		}

		r := srv.must("GET", fmt.Sprintf("/rooms/%s/ops?since=%d", rm.ID, prev), nil)
		var page struct {
			Ops []struct {
				Seq       int64     `json:"seq"`
				CreatedAt time.Time `json:"created_at"`
			} `json:"ops"`
		}
		r.decode(t, &page)
		if len(page.Ops) != 1 || page.Ops[0].Seq != prev+1 {
			t.Fatalf("ops since %d: %s, want the reset op alone", prev, r.Body)
		}
		logged := page.Ops[0].CreatedAt
		for _, c := range []struct {
			name string
			at   any
		}{{"live", liveAt}, {"replayed", replayedAt}} {
			str, _ := c.at.(string)
			at, err := time.Parse(time.RFC3339Nano, str)
			if err != nil || !at.Equal(logged) {
				t.Errorf("%s reset event created_at %v, want the reset op's logged created_at %s", c.name, c.at, logged.Format(time.RFC3339Nano))
			}
		}
	})
}
