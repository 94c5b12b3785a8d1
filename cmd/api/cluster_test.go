package main_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/liveshare/liveshare/store"
	"github.com/liveshare/liveshare/store/storetest"
)

// startCluster starts n instances on one PostgreSQL schema.
func startCluster(t *testing.T, n int, extraEnv ...string) (store.Config, []*server) {
	t.Helper()
	cfg := storetest.Config(t, "postgres")
	env := append([]string{"LIVESHARE_POLL_INTERVAL=200ms"}, extraEnv...)
	servers := make([]*server, n)
	for i := range servers {
		servers[i] = startServer(t, store.Config{DatabaseURL: cfg.DatabaseURL, DataDir: t.TempDir()}, env...)
	}
	return cfg, servers
}

// follower is a subscriber that resumes with Last-Event-ID on the next live
// instance whenever its stream ends, and records every op seq it receives.
type follower struct {
	name    string
	room    string
	urls    []string // where it may connect, its own instance first
	mu      sync.Mutex
	seqs    []int64
	last    int64
	deleted bool
	snaps   int // snapshot events after the first
	err     error
	// lastPresence is the data of the last presence event.
	lastPresence string
}

func (f *follower) record(ev snapEvent) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch ev.Name {
	case "ops":
		var data struct {
			Version int64 `json:"version"`
			Ops     []struct {
				Seq int64 `json:"seq"`
			} `json:"ops"`
		}
		if err := json.Unmarshal([]byte(ev.Data), &data); err != nil {
			return fmt.Errorf("ops event %q: %w", ev.Data, err)
		}
		for _, op := range data.Ops {
			f.seqs = append(f.seqs, op.Seq)
		}
		if id, _ := strconv.ParseInt(ev.ID, 10, 64); id != data.Version {
			return fmt.Errorf("ops event id %s, version %d", ev.ID, data.Version)
		}
		f.last = data.Version
	case "snapshot":
		var data struct {
			Version int64 `json:"version"`
		}
		if err := json.Unmarshal([]byte(ev.Data), &data); err != nil {
			return fmt.Errorf("snapshot event: %w", err)
		}
		if data.Version > f.last {
			if f.last > 0 {
				f.snaps++
			}
			f.last = data.Version
			// The state holds every op up to it: count them as seen.
			for s := int64(len(f.seqs)) + 1; s <= data.Version; s++ {
				f.seqs = append(f.seqs, s)
			}
		}
	case "room_deleted":
		f.deleted = true
	case "presence":
		f.lastPresence = ev.Data
	}
	return nil
}

func (f *follower) presence() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastPresence
}

// run follows the room until ctx ends or the room is deleted.
func (f *follower) run(ctx context.Context, alive func(string) bool) {
	for attempt := 0; ctx.Err() == nil; attempt++ {
		base := f.urls[attempt%len(f.urls)]
		if !alive(base) {
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		if f.stream(ctx, base) {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stream reads one connection; it reports whether the follower is done.
func (f *follower) stream(ctx context.Context, base string) bool {
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/rooms/"+f.room+"/events?name="+f.name+"&presence_id="+f.name, nil)
	if err != nil {
		return true
	}
	f.mu.Lock()
	if f.last > 0 || len(f.seqs) > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatInt(f.last, 10))
	}
	f.mu.Unlock()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		f.mu.Lock()
		f.deleted = true
		f.mu.Unlock()
		return true
	}
	if resp.StatusCode != http.StatusOK {
		return false
	}
	done := false
	_ = readEvents(resp.Body, func(ev snapEvent) bool {
		if ev.Name == "" {
			return true
		}
		if err := f.record(ev); err != nil {
			f.mu.Lock()
			f.err = err
			f.mu.Unlock()
			done = true
			return false
		}
		done = ev.Name == "room_deleted"
		return !done
	})
	return done
}

func (f *follower) state() (seqs []int64, deleted bool, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int64(nil), f.seqs...), f.deleted, f.err
}

// listenConnections returns the backend pids listening on the test's
// channel (its schema is in the channel's name).
func terminateListeners(t *testing.T, db *sql.DB, schema string) int {
	t.Helper()
	rows, err := db.Query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE query ILIKE 'listen%' AND query LIKE '%' || $1 || '%'`, "liveshare_"+schema)
	if err != nil {
		t.Errorf("terminate listeners: %v", err)
		return 0
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		n++
	}
	return n
}

func schemaOf(t *testing.T, databaseURL string) string {
	t.Helper()
	u, err := url.Parse(databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query().Get("search_path")
}

// TestClusterIsOneService: three instances on one PostgreSQL, writers and
// subscribers on all three, one instance killed mid-run and the listening
// connections cut again and again: every subscriber ends with exactly the
// ops 1..N in order, every instance answers the same graph, a read after an
// ack on another instance is never older than the ack, and a deletion ends
// the streams on every instance.
func TestClusterIsOneService(t *testing.T) {
	t.Parallel()
	cfg, servers := startCluster(t, 3, "LIVESHARE_SNAPSHOT_INTERVAL=400ms", "LIVESHARE_SNAPSHOT_KEEP=1000")
	rm := servers[0].createRoom("cluster")
	urls := make([]string, len(servers))
	for i, s := range servers {
		urls[i] = s.URL
	}
	var dead sync.Map // URL → true once killed
	alive := func(u string) bool { _, gone := dead.Load(u); return !gone }

	// Two followers per instance.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var followers []*follower
	var fwg sync.WaitGroup
	for i := range servers {
		for k := range 2 {
			order := append(append([]string{}, urls[i:]...), urls[:i]...)
			f := &follower{name: fmt.Sprintf("f%d-%d", i, k), room: rm.ID, urls: order}
			followers = append(followers, f)
			fwg.Go(func() { f.run(ctx, alive) })
		}
	}

	db := rawDB(t, cfg)
	schema := schemaOf(t, cfg.DatabaseURL)
	stopCutting := make(chan struct{})
	var cuts atomic.Int64
	var cwg sync.WaitGroup
	cwg.Go(func() {
		for {
			select {
			case <-stopCutting:
				return
			case <-time.After(700 * time.Millisecond):
				cuts.Add(int64(terminateListeners(t, db, schema)))
			}
		}
	})

	// Three writers, one per instance; the third instance dies mid-run and
	// its writer goes on through the first, retrying with the same key.
	const batches = 60
	var acked atomic.Int64
	var staleReads atomic.Int64
	var wwg sync.WaitGroup
	for w := range servers {
		wwg.Go(func() {
			target := w
			for b := range batches {
				key := fmt.Sprintf("w%d-b%d", w, b)
				ops := []map[string]any{{"op": "add_node", "node": map[string]any{"id": key, "label": key}}}
				if b%3 == 0 {
					ops = append(ops, map[string]any{"op": "update_node", "id": key, "patch": map[string]any{"x": b}})
				}
				for {
					if !alive(urls[target]) {
						target = 0
					}
					r, err := servers[target].do("POST", "/rooms/"+rm.ID+"/ops", map[string]any{"ops": ops, "client_id": key}, "Idempotency-Key", key)
					if err != nil || r.Status >= 500 {
						time.Sleep(20 * time.Millisecond)
						continue
					}
					if r.Status != http.StatusOK {
						t.Errorf("writer %d: %d %s", w, r.Status, r.Body)
						return
					}
					var res struct {
						Version int64 `json:"version"`
					}
					r.decode(t, &res)
					acked.Add(1)
					// A read on another live instance reflects the ack.
					other := (target + 1 + b%2) % len(servers)
					if alive(urls[other]) {
						if gr, err := servers[other].do("GET", "/rooms/"+rm.ID+"/graph", nil); err == nil && gr.Status == http.StatusOK {
							var g struct {
								Version int64 `json:"version"`
							}
							gr.decode(t, &g)
							if g.Version < res.Version {
								staleReads.Add(1)
								t.Errorf("instance %d answered version %d after instance %d acked %d", other, g.Version, target, res.Version)
							}
						}
					}
					break
				}
				if w == 0 && b == batches/2 {
					dead.Store(urls[2], true)
					servers[2].kill()
				}
				if w == 1 && (b == batches/3 || b == 2*batches/3) {
					// Mid-run whatever the pace: the timed cuts above
					// may all fall after a fast run.
					cuts.Add(int64(terminateListeners(t, db, schema)))
				}
			}
		})
	}
	wwg.Wait()
	close(stopCutting)
	cwg.Wait()

	version := servers[0].roomVersion(rm.ID)
	if want := int64(3*batches + 3*((batches+2)/3)); version != want {
		t.Errorf("room at version %d after %d batches, want %d (each batch applied once)", version, 3*batches, want)
	}
	// Every follower reaches the final version with exactly 1..N.
	deadline := time.Now().Add(20 * time.Second)
	for _, f := range followers {
		for {
			seqs, _, err := f.state()
			if err != nil {
				t.Fatalf("follower %s: %v", f.name, err)
			}
			if int64(len(seqs)) >= version || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		seqs, _, _ := f.state()
		if int64(len(seqs)) != version {
			t.Errorf("follower %s has %d ops, want %d", f.name, len(seqs), version)
		}
		for i, s := range seqs {
			if s != int64(i+1) {
				t.Errorf("follower %s: op %d has seq %d (gap or duplicate)", f.name, i, s)
				break
			}
		}
	}
	// Every live instance answers the same graph.
	var graphs []any
	for i, s := range servers[:2] {
		r := s.must("GET", "/rooms/"+rm.ID+"/graph", nil)
		var g any
		r.decode(t, &g)
		graphs = append(graphs, g)
		if i > 0 && !reflect.DeepEqual(graphs[0], g) {
			t.Errorf("instance %d answers another graph than instance 0", i)
		}
	}
	if cuts.Load() == 0 {
		t.Error("no listening connection was cut: the test did not test reconnection")
	}
	// One snapshot row per version, whichever instance took it.
	var dups int
	if err := db.QueryRow(`SELECT count(*) FROM (SELECT version FROM snapshots WHERE room_id = $1 GROUP BY version HAVING count(*) > 1) d`, rm.ID).Scan(&dups); err != nil || dups != 0 {
		t.Errorf("%d versions with two snapshot rows (%v)", dups, err)
	}

	// A deletion on one instance ends the streams on all.
	if r := servers[1].must("DELETE", "/rooms/"+rm.ID, nil); r.Status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	deadline = time.Now().Add(5 * time.Second)
	for _, f := range followers {
		for {
			_, deleted, _ := f.state()
			if deleted || time.Now().After(deadline) {
				if !deleted {
					t.Errorf("follower %s did not see the room deleted", f.name)
				}
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if r := servers[0].must("GET", "/rooms/"+rm.ID+"/graph", nil); r.Status != http.StatusNotFound {
		t.Errorf("graph of the deleted room on another instance: %d", r.Status)
	}
	cancel()
	fwg.Wait()
	t.Logf("%d batches acked, %d listening connections cut, %d stale reads", acked.Load(), cuts.Load(), staleReads.Load())
}

// TestClusterPresence: a subscriber on one instance is listed by the
// others, in GET …/presence and in their presence events, and the
// subscribers of an instance that died are dropped within 30 s.
func TestClusterPresence(t *testing.T) {
	t.Parallel()
	_, servers := startCluster(t, 2)
	a, b := servers[0], servers[1]
	rm := a.createRoom("presence")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	watch := &follower{name: "watch", room: rm.ID, urls: []string{a.URL}}
	bob := &follower{name: "bob", room: rm.ID, urls: []string{b.URL}}
	var bDead atomic.Bool
	wg.Go(func() { watch.run(ctx, func(string) bool { return true }) })
	wg.Go(func() { bob.run(ctx, func(string) bool { return !bDead.Load() }) })

	names := func(s *server) string {
		r := s.must("GET", "/rooms/"+rm.ID+"/presence", nil)
		var p struct {
			Users []struct {
				Name string `json:"name"`
			} `json:"users"`
		}
		r.decode(t, &p)
		var out []string
		for _, u := range p.Users {
			out = append(out, u.Name)
		}
		slices.Sort(out)
		return strings.Join(out, ",")
	}
	waitFor := func(what string, timeout time.Duration, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(timeout); !ok(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %s", what, timeout)
			}
		}
	}
	waitFor("both listed on both instances", 3*time.Second, func() bool {
		return names(a) == "bob,watch" && names(b) == "bob,watch"
	})
	// The names a presence event lists as present.
	eventNames := func() string {
		var p struct {
			Users []struct {
				Name string `json:"name"`
			} `json:"users"`
		}
		_ = json.Unmarshal([]byte(watch.presence()), &p)
		var out []string
		for _, u := range p.Users {
			out = append(out, u.Name)
		}
		slices.Sort(out)
		return strings.Join(out, ",")
	}
	waitFor("bob in the presence events on instance a", 3*time.Second, func() bool {
		return eventNames() == "bob,watch"
	})

	// Bob's cursor, set on his instance, reaches the watcher on the other
	// one, in its presence events and in GET …/presence there.
	if r := b.must("PATCH", "/rooms/"+rm.ID+"/presence/bob", map[string]any{"cursor": map[string]float64{"x": 3, "y": 4}, "status": "editing"}); r.Status != http.StatusNoContent {
		t.Fatalf("set bob's state: %d %s", r.Status, r.Body)
	}
	wantState := `{"cursor":{"x":3,"y":4},"status":"editing"}`
	bobState := func(data []byte) string {
		var p struct {
			Users []struct {
				Name  string          `json:"name"`
				State json.RawMessage `json:"state"`
			} `json:"users"`
		}
		_ = json.Unmarshal(data, &p)
		for _, u := range p.Users {
			if u.Name == "bob" {
				return string(u.State)
			}
		}
		return ""
	}
	waitFor("bob's state on instance a", 3*time.Second, func() bool {
		return bobState([]byte(watch.presence())) == wantState &&
			bobState(a.must("GET", "/rooms/"+rm.ID+"/presence", nil).Body) == wantState
	})

	// Set through the instance that does not hold bob's stream (any
	// instance takes any request, DESIGN.md section 10): the patch is
	// applied to the state bob has, and reaches both instances.
	time.Sleep(30 * time.Millisecond) // past the holder's 20 ms between changes
	if r := a.must("PATCH", "/rooms/"+rm.ID+"/presence/bob", map[string]any{"selection": []string{"n1"}}); r.Status != http.StatusNoContent {
		t.Fatalf("set bob's state through instance a: %d %s", r.Status, r.Body)
	}
	wantState = `{"cursor":{"x":3,"y":4},"selection":["n1"],"status":"editing"}`
	waitFor("bob's state set through instance a, on both instances", 3*time.Second, func() bool {
		return bobState([]byte(watch.presence())) == wantState &&
			bobState(a.must("GET", "/rooms/"+rm.ID+"/presence", nil).Body) == wantState &&
			bobState(b.must("GET", "/rooms/"+rm.ID+"/presence", nil).Body) == wantState
	})
	// An id no instance holds is still 404 presence_not_found on either.
	for _, s := range []*server{a, b} {
		r := s.must("PATCH", "/rooms/"+rm.ID+"/presence/nobody", map[string]any{"status": "x"})
		if r.Status != http.StatusNotFound || !strings.Contains(string(r.Body), "presence_not_found") {
			t.Fatalf("PATCH of an unknown presence id: %d %s, want 404 presence_not_found", r.Status, r.Body)
		}
	}

	bDead.Store(true)
	b.kill()
	start := time.Now()
	waitFor("bob dropped after his instance died", 30*time.Second, func() bool {
		return names(a) == "watch" && eventNames() == "watch"
	})
	t.Logf("the dead instance's subscriber was dropped after %s", time.Since(start).Round(time.Second))
}

// rawDB opens the test's PostgreSQL schema directly.
func rawDB(t *testing.T, cfg store.Config) *sql.DB {
	t.Helper()
	db, err := sql.Open("postgres", cfg.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
