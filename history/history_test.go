package history_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/liveshare/liveshare/graph"
	"github.com/liveshare/liveshare/history"
	"github.com/liveshare/liveshare/snapshot"
	"github.com/liveshare/liveshare/store"
	"github.com/liveshare/liveshare/store/storetest"
)

// fakeClock is the store's clock in these tests: hours pass in no time.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func openStore(t *testing.T, cfg store.Config, clock *fakeClock) *store.Store {
	t.Helper()
	cfg.Now = clock.Now
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := store.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	return st
}

// opGen makes random ops that are valid on the graph it tracks.
type opGen struct {
	rng  *rand.Rand
	g    *graph.Graph
	next int
}

func (o *opGen) op(states []graph.State) graph.Op {
	st := o.g.State()
	for {
		switch k := o.rng.IntN(20); {
		case k < 6 || len(st.Nodes) < 2:
			o.next++
			raw := fmt.Sprintf(`{"op":"add_node","node":{"id":"n%d","kind":"table","label":"n%d","x":%d,"y":%d,"data":{"columns":[{"name":"id"}]}}}`,
				o.next, o.next, o.rng.IntN(500), o.rng.IntN(500))
			return mustParse(raw)
		case k < 10:
			n := st.Nodes[o.rng.IntN(len(st.Nodes))]
			patches := []string{`{"label":"l%d"}`, `{"x":%d}`, `{"data":{"columns":[{"name":"c%d"}]}}`, `{"data":{"note":"v%d"}}`, `{"kind":"view","y":%d}`}
			return mustParse(fmt.Sprintf(`{"op":"update_node","id":%q,"patch":`+patches[o.rng.IntN(len(patches))]+`}`, n.ID, o.rng.IntN(1000)))
		case k < 12:
			return mustParse(fmt.Sprintf(`{"op":"remove_node","id":%q}`, st.Nodes[o.rng.IntN(len(st.Nodes))].ID))
		case k < 16:
			o.next++
			a, b := st.Nodes[o.rng.IntN(len(st.Nodes))], st.Nodes[o.rng.IntN(len(st.Nodes))]
			return mustParse(fmt.Sprintf(`{"op":"add_edge","edge":{"id":"e%d","kind":"relation","source":%q,"target":%q,"label":""}}`, o.next, a.ID, b.ID))
		case k < 18 && len(st.Edges) > 0:
			e := st.Edges[o.rng.IntN(len(st.Edges))]
			return mustParse(fmt.Sprintf(`{"op":"update_edge","id":%q,"patch":{"label":"x%d","data":{"w":%d}}}`, e.ID, o.rng.IntN(9), o.rng.IntN(9)))
		case k < 19 && len(st.Edges) > 0:
			return mustParse(fmt.Sprintf(`{"op":"remove_edge","id":%q}`, st.Edges[o.rng.IntN(len(st.Edges))].ID))
		case k == 19 && len(states) > 1:
			// A restore: the state of an earlier version, as a reset op.
			s := states[o.rng.IntN(len(states))]
			return graph.Op{Kind: graph.OpReset, State: &s}
		}
	}
}

func mustParse(raw string) graph.Op {
	op, err := graph.ParseOp([]byte(raw))
	if err != nil {
		panic(fmt.Sprintf("generated op %s: %v", raw, err))
	}
	return op
}

// TestHistoryMatchesLiveStates is the property of DESIGN.md section 11 over
// the real store, in both dialects: random ops, with snapshots, checkpoints
// and pruning at random points and hours passing; then for every version,
// the state read back equals the state recorded live at that version
// exactly when the version is still kept (at or after pruned_through, or 0,
// the empty room), and history_gone before; and the diff between any two kept versions, applied
// to the first, gives the second.
func TestHistoryMatchesLiveStates(t *testing.T) {
	t.Parallel()
	storetest.Dialects(t, func(t *testing.T, cfg store.Config) {
		for run := range 3 {
			seed := uint64(time.Now().UnixNano()) + uint64(run)
			t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
				cfg := cfg
				if cfg.DatabaseURL == "" {
					cfg.DataDir = t.TempDir() // a database per run
				}
				checkHistory(t, cfg, seed)
			})
		}
	})
}

type madeCheckpoint struct {
	at      time.Time
	version int64
}

func checkHistory(t *testing.T, cfg store.Config, seed uint64) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	clock := &fakeClock{now: time.Date(2026, 3, 1, 0, 30, 0, 0, time.UTC)}
	st := openStore(t, cfg, clock)
	rm, err := st.CreateRoom(ctx, "history")
	if err != nil {
		t.Fatal(err)
	}
	ret := store.Retention{Keep: 1 + rng.IntN(3), Hourly: 6 * time.Hour, Daily: 3 * 24 * time.Hour}
	gen := &opGen{rng: rng, g: graph.New()}
	states := []graph.State{gen.g.State()} // states[v] is the live state at version v
	var checkpoints []madeCheckpoint
	lastCheckpointHour := time.Time{}

	steps := 150 + rng.IntN(100)
	for range steps {
		// A request of 1–4 ops, applied live and then committed.
		n := 1 + rng.IntN(4)
		var raws []json.RawMessage
		for range n {
			op := gen.op(states)
			if err := gen.g.Apply([]graph.Op{op}); err != nil {
				t.Fatalf("seed %d: generated op does not apply: %v", seed, err)
			}
			raw, err := json.Marshal(op)
			if err != nil {
				t.Fatal(err)
			}
			raws = append(raws, raw)
			states = append(states, gen.g.State())
		}
		version := int64(len(states) - 1)
		if _, err := st.AppendOps(ctx, store.Append{RoomID: rm.ID, ExpectedVersion: version - int64(n),
			Writes: []store.AppendWrite{{Ops: raws}}, ElementCount: int64(gen.g.ElementCount())}); err != nil {
			t.Fatalf("seed %d: append: %v", seed, err)
		}
		// Time passes: minutes mostly, sometimes hours.
		if rng.IntN(10) == 0 {
			clock.Advance(time.Duration(1+rng.IntN(20)) * time.Hour)
		} else {
			clock.Advance(time.Duration(rng.IntN(30)) * time.Minute)
		}
		if rng.IntN(6) != 0 {
			continue
		}
		// A snapshot, a checkpoint when the hour has none yet (as the
		// registry decides).
		trigger := snapshot.TriggerInterval
		if h := clock.Now().Truncate(time.Hour); !h.Equal(lastCheckpointHour) {
			trigger, lastCheckpointHour = snapshot.TriggerCheckpoint, h
		}
		s := states[version]
		data, err := snapshot.Encode(s, version)
		if err != nil {
			t.Fatal(err)
		}
		meta, _, err := st.InsertSnapshotRetaining(ctx, store.NewSnapshot{RoomID: rm.ID, Version: version,
			ElementCount: int64(len(s.Nodes) + len(s.Edges)), Trigger: trigger, Format: snapshot.FormatVersion, Data: data}, ret)
		if err != nil {
			t.Fatalf("seed %d: insert snapshot at %d: %v", seed, version, err)
		}
		if trigger == snapshot.TriggerCheckpoint {
			checkpoints = append(checkpoints, madeCheckpoint{at: meta.CreatedAt, version: version})
		}
	}

	current, pruned, err := st.RoomVersion(ctx, rm.ID)
	if err != nil {
		t.Fatal(err)
	}
	if current != int64(len(states)-1) {
		t.Fatalf("seed %d: room at version %d, want %d", seed, current, len(states)-1)
	}
	checkRetention(t, st, rm.ID, ret, clock.Now(), checkpoints, seed)

	rd := history.NewReader(st, nil)
	var reachable []int64
	for v := int64(0); v <= current; v++ {
		got, err := rd.StateAt(ctx, rm.ID, v)
		// Version 0 is the empty room: known without any op.
		if v < pruned && v > 0 {
			if !errors.Is(err, history.ErrGone) {
				t.Fatalf("seed %d: StateAt(%d) with ops pruned through %d: %v, want ErrGone", seed, v, pruned, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("seed %d: StateAt(%d) (pruned through %d): %v", seed, v, pruned, err)
		}
		if !got.Equal(states[v]) {
			t.Fatalf("seed %d: StateAt(%d) = %+v\nwant the live state %+v", seed, v, got, states[v])
		}
		reachable = append(reachable, v)
	}
	if _, err := rd.StateAt(ctx, rm.ID, current+1); !errors.Is(err, history.ErrAhead) {
		t.Fatalf("seed %d: StateAt(current+1): %v, want ErrAhead", seed, err)
	}
	// Diffs: every neighbouring pair, and random pairs either way round.
	pairs := make([][2]int64, 0, 2*len(reachable))
	for i := 1; i < len(reachable); i++ {
		pairs = append(pairs, [2]int64{reachable[i-1], reachable[i]})
	}
	for range len(reachable) {
		pairs = append(pairs, [2]int64{reachable[rng.IntN(len(reachable))], reachable[rng.IntN(len(reachable))]})
	}
	for _, p := range pairs {
		a, b := states[p[0]], states[p[1]]
		gotA, gotB, err := rd.StatesAt(ctx, rm.ID, p[0], p[1])
		if err != nil {
			t.Fatalf("seed %d: StatesAt(%d, %d): %v", seed, p[0], p[1], err)
		}
		if !gotA.Equal(a) || !gotB.Equal(b) {
			t.Fatalf("seed %d: StatesAt(%d, %d) differs from the live states at those versions", seed, p[0], p[1])
		}
		if got := graph.DiffStates(a, b).Apply(a); !got.Equal(b) {
			t.Fatalf("seed %d: diff(%d, %d) applied to the state at %d = %+v\nwant %+v", seed, p[0], p[1], p[0], got, b)
		}
	}
}

// checkRetention: every checkpoint that was the first of its hour within
// ret.Hourly of now, or of its day within ret.Daily, is still stored, and
// the op log reaches back to the oldest stored snapshot.
func checkRetention(t *testing.T, st *store.Store, roomID string, ret store.Retention, now time.Time, made []madeCheckpoint, seed uint64) {
	t.Helper()
	ctx := context.Background()
	metas, err := st.ListSnapshots(ctx, roomID)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[int64]string{}
	oldest := int64(-1)
	for _, m := range metas {
		stored[m.Version] = m.Trigger
		oldest = m.Version
	}
	hours, days := map[time.Time]bool{}, map[time.Time]bool{}
	for _, c := range made {
		h, d := c.at.Truncate(time.Hour), c.at.Truncate(24*time.Hour)
		firstOfHour, firstOfDay := !hours[h], !days[d]
		hours[h], days[d] = true, true
		keptHourly := firstOfHour && now.Sub(c.at) < ret.Hourly
		keptDaily := firstOfDay && now.Sub(c.at) < ret.Daily
		if (keptHourly || keptDaily) && stored[c.version] != snapshot.TriggerCheckpoint {
			t.Errorf("seed %d: checkpoint at version %d of %s (now %s) is gone; hourly %v, daily %v",
				seed, c.version, c.at, now, keptHourly, keptDaily)
		}
	}
	_, pruned, err := st.RoomVersion(ctx, roomID)
	if err != nil {
		t.Fatal(err)
	}
	// Ops are pruned to the oldest snapshot kept, once there is a
	// checkpoint; never past it.
	checkpointStored := false
	for _, trigger := range stored {
		checkpointStored = checkpointStored || trigger == snapshot.TriggerCheckpoint
	}
	if oldest >= 0 && (pruned > oldest || checkpointStored && pruned != oldest) {
		t.Errorf("seed %d: ops pruned through %d; the oldest stored snapshot is %d (a checkpoint among them: %v)", seed, pruned, oldest, checkpointStored)
	}
}
