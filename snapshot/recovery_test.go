package snapshot_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/liveshare/liveshare/graph"
	"github.com/liveshare/liveshare/room"
	"github.com/liveshare/liveshare/snapshot"
	"github.com/liveshare/liveshare/store"
	"github.com/liveshare/liveshare/store/storetest"
)

// genWrite draws a batch of valid ops for the graph g currently holds.
func genWrite(t *rapid.T, s graph.State, next *int) []graph.Op {
	nodes := make([]string, 0, len(s.Nodes))
	for _, n := range s.Nodes {
		nodes = append(nodes, n.ID)
	}
	var ops []graph.Op
	for k := rapid.IntRange(1, 4).Draw(t, "batch"); k > 0; k-- {
		*next++
		id := fmt.Sprintf("e%d", *next)
		switch choice := rapid.IntRange(0, 5).Draw(t, "op"); {
		case choice <= 1 || len(nodes) == 0:
			data := fmt.Sprintf(`{"columns":[{"name":"c%d","type":"int"}],"n":%d}`, *next, rapid.IntRange(-5, 5).Draw(t, "n"))
			ops = append(ops, graph.Op{Kind: graph.OpAddNode, Node: &graph.Node{
				ID: id, Kind: "table", Label: rapid.StringMatching(`[a-z ]{0,8}`).Draw(t, "label"),
				X: rapid.Float64Range(-1e6, 1e6).Draw(t, "x"), Y: rapid.Float64Range(-1e6, 1e6).Draw(t, "y"),
				Data: []byte(data),
			}})
			nodes = append(nodes, id)
		case choice == 2:
			src := rapid.SampledFrom(nodes).Draw(t, "src")
			dst := rapid.SampledFrom(nodes).Draw(t, "dst")
			ops = append(ops, graph.Op{Kind: graph.OpAddEdge, Edge: &graph.Edge{ID: id, Kind: "relation", Source: src, Target: dst}})
		case choice == 3:
			n := rapid.SampledFrom(nodes).Draw(t, "move")
			patch := fmt.Sprintf(`{"x":%d,"data":{"n":null,"moved":true}}`, rapid.IntRange(0, 1000).Draw(t, "mx"))
			ops = append(ops, graph.Op{Kind: graph.OpUpdateNode, ID: n, Patch: []byte(patch)})
		default:
			i := rapid.IntRange(0, len(nodes)-1).Draw(t, "remove")
			ops = append(ops, graph.Op{Kind: graph.OpRemoveNode, ID: nodes[i]})
			nodes = append(nodes[:i:i], nodes[i+1:]...)
		}
	}
	return ops
}

// TestPropRecoveryIsExact: for random op sequences with snapshots taken at
// random points, a fresh load (latest snapshot + the ops after it) equals
// the live room field for field, at the same version (DESIGN.md section 1,
// item 5), on the real store, rooms and registry.
func TestPropRecoveryIsExact(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		ctx := context.Background()
		st := storetest.Open(t, "sqlite")
		info, err := st.CreateRoom(ctx, "prop")
		if err != nil {
			rt.Fatal(err)
		}
		keep := rapid.IntRange(1, 3).Draw(rt, "keep")
		reg := snapshot.NewRegistry(st, snapshot.Config{Interval: time.Hour, Keep: keep, MaxBytes: 10 << 20})
		live := room.NewManager(st, room.Options{Snapshots: reg})
		next := 0
		for range rapid.IntRange(1, 30).Draw(rt, "writes") {
			r, err := live.Get(ctx, info.ID)
			if err != nil {
				rt.Fatal(err)
			}
			state, _ := r.State()
			if _, err := live.Apply(ctx, info.ID, room.Write{Ops: genWrite(rt, state, &next)}); err != nil {
				rt.Fatalf("valid write refused: %v", err)
			}
			if rapid.IntRange(0, 3).Draw(rt, "snapshot") == 0 {
				if _, err := reg.Take(ctx, r, snapshot.TriggerManual); err != nil {
					rt.Fatal(err)
				}
			}
		}
		r, _ := live.Get(ctx, info.ID)
		want, wantVersion := r.State()

		// The snapshot the load starts from decodes to a state that the ops
		// after it carry to the live state.
		fresh := room.NewManager(st, room.Options{Snapshots: snapshot.NewRegistry(st, snapshot.Config{Interval: time.Hour, Keep: keep, MaxBytes: 10 << 20})})
		r2, err := fresh.Get(ctx, info.ID)
		if err != nil {
			rt.Fatal(err)
		}
		got, gotVersion := r2.State()
		if gotVersion != wantVersion || !got.Equal(want) {
			rt.Fatalf("recovered version %d %+v\nlive version %d %+v", gotVersion, got, wantVersion, want)
		}
		if latest, err := reg.Latest(ctx, info.ID); err == nil {
			s, v, err := snapshot.Decode(latest.Data)
			if err != nil || v != latest.Version {
				rt.Fatalf("latest snapshot: version %d, meta %d, %v", v, latest.Version, err)
			}
			g, err := graph.FromState(s)
			if err != nil {
				rt.Fatal(err)
			}
			ops, err := st.OpsSince(ctx, info.ID, v, 0)
			if err != nil {
				rt.Fatal(err)
			}
			for _, rec := range ops {
				op, err := graph.ParseOp(rec.Op)
				if err != nil {
					rt.Fatal(err)
				}
				if err := g.Apply([]graph.Op{op}); err != nil {
					rt.Fatal(err)
				}
			}
			if !g.State().Equal(want) || v+int64(len(ops)) != wantVersion {
				rt.Fatalf("latest snapshot + %d ops does not reach the live state", len(ops))
			}
		}
	})
}

// TestLoadFallsBackPastACorruptSnapshot: a newest snapshot that does not
// verify is skipped (and logged); the room loads from the one before it.
func TestLoadFallsBackPastACorruptSnapshot(t *testing.T) {
	storetest.Dialects(t, func(t *testing.T, cfg store.Config) {
		ctx := context.Background()
		st, err := store.Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		info, _ := st.CreateRoom(ctx, "fallback")
		reg := snapshot.NewRegistry(st, snapshot.Config{Interval: time.Hour, Keep: 5, MaxBytes: 10 << 20})
		live := room.NewManager(st, room.Options{Snapshots: reg})
		add := func(id string) {
			t.Helper()
			if _, err := live.Apply(ctx, info.ID, room.Write{Ops: []graph.Op{{Kind: graph.OpAddNode, Node: &graph.Node{ID: id}}}}); err != nil {
				t.Fatal(err)
			}
		}
		add("a")
		r, _ := live.Get(ctx, info.ID)
		if _, err := reg.Take(ctx, r, snapshot.TriggerManual); err != nil {
			t.Fatal(err)
		}
		add("b")
		bad, err := reg.Take(ctx, r, snapshot.TriggerManual)
		if err != nil {
			t.Fatal(err)
		}
		add("c")
		want, version := r.State()

		// A store that hands out the newest snapshot with a flipped byte.
		corrupt := corruptingStore{Store: st, id: bad.ID}
		fresh := room.NewManager(st, room.Options{Snapshots: snapshot.NewRegistry(corrupt, snapshot.Config{Interval: time.Hour, Keep: 5, MaxBytes: 10 << 20})})
		r2, err := fresh.Get(ctx, info.ID)
		if err != nil {
			t.Fatal(err)
		}
		got, gotVersion := r2.State()
		if gotVersion != version || !got.Equal(want) {
			t.Fatalf("loaded version %d %+v, want %d %+v", gotVersion, got, version, want)
		}
	})
}

type corruptingStore struct {
	*store.Store
	id string
}

func (c corruptingStore) GetSnapshot(ctx context.Context, roomID, id string) (store.Snapshot, error) {
	s, err := c.Store.GetSnapshot(ctx, roomID, id)
	if err == nil && s.ID == c.id {
		data := append([]byte(nil), s.Data...)
		data[len(data)/2] ^= 0xff
		s.Data = data
	}
	return s, err
}

// TestOversizeSnapshotIsNotStored: a snapshot over MaxBytes is refused,
// counted as a failure, and the room keeps its op log.
func TestOversizeSnapshotIsNotStored(t *testing.T) {
	ctx := context.Background()
	st := storetest.Open(t, "sqlite")
	info, _ := st.CreateRoom(ctx, "big")
	reg := snapshot.NewRegistry(st, snapshot.Config{Interval: time.Hour, Keep: 3, MaxBytes: 64})
	m := room.NewManager(st, room.Options{Snapshots: reg})
	for i := range 20 {
		op := graph.Op{Kind: graph.OpAddNode, Node: &graph.Node{ID: fmt.Sprintf("n%d", i), Label: "a label long enough"}}
		if _, err := m.Apply(ctx, info.ID, room.Write{Ops: []graph.Op{op}}); err != nil {
			t.Fatal(err)
		}
	}
	r, _ := m.Get(ctx, info.ID)
	if _, err := reg.Take(ctx, r, snapshot.TriggerInterval); !errors.Is(err, snapshot.ErrTooLarge) {
		t.Fatalf("Take: %v, want ErrTooLarge", err)
	}
	if got := reg.Totals().Failures.Load(); got != 1 {
		t.Errorf("failures %d, want 1", got)
	}
	if metas, _ := st.ListSnapshots(ctx, info.ID); len(metas) != 0 {
		t.Errorf("%d snapshots stored", len(metas))
	}
	if ops, _ := st.OpsSince(ctx, info.ID, 0, 0); len(ops) != 20 {
		t.Errorf("%d ops kept, want all 20", len(ops))
	}
	if !r.Changed() {
		t.Error("the room counts as snapshotted")
	}
}

// blockingStore holds InsertSnapshot until release is closed.
type blockingStore struct {
	*store.Store
	entered, release chan struct{}
}

func (b blockingStore) InsertSnapshot(ctx context.Context, n store.NewSnapshot, keep int) (store.SnapshotMeta, int64, error) {
	close(b.entered)
	<-b.release
	return b.Store.InsertSnapshot(ctx, n, keep)
}

// TestSnapshotInProgressDoesNotBlockReaders: while a snapshot of a room is
// being stored, subscribers still get the room's latest stored snapshot.
func TestSnapshotInProgressDoesNotBlockReaders(t *testing.T) {
	ctx := context.Background()
	st := storetest.Open(t, "sqlite")
	info, _ := st.CreateRoom(ctx, "busy")
	slow := blockingStore{Store: st, entered: make(chan struct{}), release: make(chan struct{})}
	reg := snapshot.NewRegistry(slow, snapshot.Config{Interval: time.Hour, Keep: 3, MaxBytes: 10 << 20})
	m := room.NewManager(st, room.Options{Snapshots: reg})
	if _, err := m.Apply(ctx, info.ID, room.Write{Ops: []graph.Op{{Kind: graph.OpAddNode, Node: &graph.Node{ID: "a"}}}}); err != nil {
		t.Fatal(err)
	}
	r, _ := m.Get(ctx, info.ID)
	done := make(chan error, 1)
	go func() {
		_, err := reg.Take(ctx, r, snapshot.TriggerManual)
		done <- err
	}()
	<-slow.entered
	if _, version, err := reg.StartEvent(ctx, info.ID); err != nil || version != 0 {
		t.Fatalf("StartEvent while a snapshot is stored: version %d, %v", version, err)
	}
	close(slow.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, version, err := reg.StartEvent(ctx, info.ID); err != nil || version != 1 {
		t.Fatalf("StartEvent after: version %d, %v", version, err)
	}
}

// countingStore counts the snapshots the registry tries to store.
type countingStore struct {
	*store.Store
	inserts *int
}

func (c countingStore) InsertSnapshot(ctx context.Context, n store.NewSnapshot, keep int) (store.SnapshotMeta, int64, error) {
	*c.inserts++
	return c.Store.InsertSnapshot(ctx, n, keep)
}

// TestManualSnapshotOfUnchangedRoom: asked again of a room that did not
// change, a manual snapshot answers the stored one's version without
// encoding or storing the room again; once the room moves, it stores one.
func TestManualSnapshotOfUnchangedRoom(t *testing.T) {
	ctx := context.Background()
	st := storetest.Open(t, "sqlite")
	info, _ := st.CreateRoom(ctx, "unchanged")
	inserts := 0
	reg := snapshot.NewRegistry(countingStore{st, &inserts}, snapshot.Config{Interval: time.Hour, Keep: 3, MaxBytes: 10 << 20})
	m := room.NewManager(st, room.Options{Snapshots: reg})
	add := func(id string) {
		op := graph.Op{Kind: graph.OpAddNode, Node: &graph.Node{ID: id}}
		if _, err := m.Apply(ctx, info.ID, room.Write{Ops: []graph.Op{op}}); err != nil {
			t.Fatal(err)
		}
	}
	add("a")
	r, _ := m.Get(ctx, info.ID)
	first, err := reg.Take(ctx, r, snapshot.TriggerManual)
	if err != nil || first.Version != 1 {
		t.Fatalf("first manual snapshot: %+v, %v", first, err)
	}
	for range 5 {
		again, err := reg.Take(ctx, r, snapshot.TriggerManual)
		if !errors.Is(err, store.ErrSnapshotExists) || again.Version != 1 {
			t.Fatalf("manual snapshot of an unchanged room: %+v, %v; want ErrSnapshotExists at version 1", again, err)
		}
	}
	if inserts != 1 {
		t.Errorf("%d snapshots sent to the store for one change, want 1", inserts)
	}
	add("b")
	if next, err := reg.Take(ctx, r, snapshot.TriggerManual); err != nil || next.Version != 2 || inserts != 2 {
		t.Errorf("after a change: %+v, %v, %d inserts; want a new snapshot at version 2", next, err, inserts)
	}
}
