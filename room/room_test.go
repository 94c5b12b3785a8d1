package room_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/liveshare/liveshare/graph"
	"github.com/liveshare/liveshare/room"
	"github.com/liveshare/liveshare/snapshot"
	"github.com/liveshare/liveshare/store"
	"github.com/liveshare/liveshare/store/storetest"
)

// seqsOf drains what sub has queued and returns the seqs of its ops events.
func seqsOf(t *testing.T, sub *room.Subscription) []int64 {
	t.Helper()
	var out []int64
	for {
		select {
		case m, ok := <-sub.C:
			if !ok {
				t.Fatalf("subscription ended: %s", sub.Reason())
			}
			if m.Event != room.EventOps {
				continue
			}
			var ev struct {
				Version int64 `json:"version"`
				Ops     []struct {
					Seq int64 `json:"seq"`
				} `json:"ops"`
			}
			if err := json.Unmarshal(m.Data, &ev); err != nil {
				t.Fatalf("ops event %s: %v", m.Data, err)
			}
			for _, op := range ev.Ops {
				out = append(out, op.Seq)
			}
			if ev.Version != m.Seq || out[len(out)-1] != m.Seq {
				t.Fatalf("ops event id %d, version %d, last seq %d", m.Seq, ev.Version, out[len(out)-1])
			}
		default:
			return out
		}
	}
}

func addNode(id string) graph.Op {
	return graph.Op{Kind: graph.OpAddNode, Node: &graph.Node{ID: id}}
}

func openStore(t *testing.T, cfg store.Config) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func mustRoom(t *testing.T, st *store.Store) string {
	t.Helper()
	rm, err := st.CreateRoom(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	return rm.ID
}

func TestConcurrentWritersGetOneOrder(t *testing.T) {
	storetest.Dialects(t, func(t *testing.T, cfg store.Config) {
		ctx := context.Background()
		st := openStore(t, cfg)
		id := mustRoom(t, st)
		m := room.NewManager(st, room.Options{QueueSize: 1000})
		watcher, err := m.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		join, err := watcher.Subscribe("watcher")
		if err != nil {
			t.Fatal(err)
		}

		const writers, each = 4, 25
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for i := range each {
					r, err := m.Get(ctx, id)
					if err != nil {
						t.Error(err)
						return
					}
					if _, err := r.Apply(ctx, room.Write{Ops: []graph.Op{addNode(fmt.Sprintf("w%d-%d", w, i))}}); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		r, err := m.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := r.Version(), int64(writers*each); got != want {
			t.Fatalf("version %d, want %d", got, want)
		}
		seqs := seqsOf(t, join.Sub)
		for i, seq := range seqs {
			if seq != int64(i+1) {
				t.Fatalf("published seq %d at position %d: out of order", seq, i)
			}
		}
		if len(seqs) != writers*each {
			t.Fatalf("subscriber got %d ops, want %d", len(seqs), writers*each)
		}
		if got := r.ElementCount(); got != writers*each {
			t.Errorf("element count %d", got)
		}
	})
}

// Two managers on one database stand for two LiveShare instances: each
// catches up with the other's writes before committing its own.
func TestTwoInstancesShareOneRoom(t *testing.T) {
	storetest.Dialects(t, func(t *testing.T, cfg store.Config) {
		ctx := context.Background()
		st1, st2 := openStore(t, cfg), openStore(t, cfg)
		id := mustRoom(t, st1)
		m1 := room.NewManager(st1, room.Options{})
		m2 := room.NewManager(st2, room.Options{QueueSize: 1000})
		r2, err := m2.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		join, err := r2.Subscribe("watcher")
		if err != nil {
			t.Fatal(err)
		}

		var wg sync.WaitGroup
		for i, m := range []*room.Manager{m1, m2} {
			wg.Go(func() {
				for j := range 20 {
					r, err := m.Get(ctx, id)
					if err != nil {
						t.Error(err)
						return
					}
					if _, err := r.Apply(ctx, room.Write{Ops: []graph.Op{addNode(fmt.Sprintf("i%d-%d", i, j))}}); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		r1, _ := m1.Get(ctx, id)
		// The last writer is current; the other catches up on its next write.
		if _, err := r1.Apply(ctx, room.Write{Ops: []graph.Op{addNode("last-1")}}); err != nil {
			t.Fatal(err)
		}
		if _, err := r2.Apply(ctx, room.Write{Ops: []graph.Op{addNode("last-2")}}); err != nil {
			t.Fatal(err)
		}
		s2, v2 := r2.State()
		if v2 != 42 || len(s2.Nodes) != 42 {
			t.Fatalf("instance 2 at version %d with %d nodes, want 42 and 42", v2, len(s2.Nodes))
		}
		for i, seq := range seqsOf(t, join.Sub) {
			if seq != int64(i+1) {
				t.Fatalf("instance 2 published seq %d at position %d", seq, i)
			}
		}
	})
}

func TestBaseVersionAndIdempotency(t *testing.T) {
	storetest.Dialects(t, func(t *testing.T, cfg store.Config) {
		ctx := context.Background()
		st := openStore(t, cfg)
		id := mustRoom(t, st)
		m := room.NewManager(st, room.Options{})
		r, err := m.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		base := int64(0)
		res, err := r.Apply(ctx, room.Write{Ops: []graph.Op{addNode("a"), addNode("b")}, BaseVersion: &base, IdempotencyKey: "k"})
		if err != nil || res.Version != 2 || res.Applied != 2 || res.Replayed {
			t.Fatalf("first write: %+v %v", res, err)
		}
		_, err = r.Apply(ctx, room.Write{Ops: []graph.Op{addNode("c")}, BaseVersion: &base})
		var conflict *room.ConflictError
		if !errors.As(err, &conflict) || conflict.Current != 2 {
			t.Fatalf("stale base_version: %v, want ConflictError at 2", err)
		}
		res, err = r.Apply(ctx, room.Write{Ops: []graph.Op{addNode("a"), addNode("b")}, IdempotencyKey: "k"})
		if err != nil || res.Version != 2 || res.Applied != 2 || !res.Replayed {
			t.Fatalf("retry: %+v %v", res, err)
		}
		_, err = r.Apply(ctx, room.Write{Ops: []graph.Op{addNode("c"), addNode("a")}})
		var opErr *graph.OpError
		if !errors.As(err, &opErr) || opErr.Index != 1 {
			t.Fatalf("duplicate id: %v, want OpError at index 1", err)
		}
		if s, v := r.State(); v != 2 || len(s.Nodes) != 2 {
			t.Fatalf("after rejected writes: version %d, %d nodes", v, len(s.Nodes))
		}
	})
}

func TestIdleRoomsAreEvictedAndReload(t *testing.T) {
	ctx := context.Background()
	st := storetest.Open(t, "sqlite")
	id := mustRoom(t, st)
	now := time.Unix(1000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	m := room.NewManager(st, room.Options{IdleTimeout: time.Minute, Now: clock})
	r, err := m.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Apply(ctx, room.Write{Ops: []graph.Op{addNode("a")}}); err != nil {
		t.Fatal(err)
	}
	if n := m.EvictIdle(ctx); n != 0 {
		t.Fatalf("evicted %d fresh rooms", n)
	}
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	if n := m.EvictIdle(ctx); n != 1 || m.Len() != 0 {
		t.Fatalf("evicted %d, %d left; want 1 and 0", n, m.Len())
	}
	r2, err := m.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if r2 == r || r2.Version() != 1 {
		t.Fatalf("reloaded room at version %d (same object: %v)", r2.Version(), r2 == r)
	}
	// The evicted object refuses writes; through the manager they land in
	// the fresh load.
	if _, err := r.Apply(ctx, room.Write{Ops: []graph.Op{addNode("b")}}); err == nil {
		t.Fatal("the evicted room accepted a write")
	}
	if res, err := m.Apply(ctx, id, room.Write{Ops: []graph.Op{addNode("c")}}); err != nil || res.Version != 2 {
		t.Fatalf("write through the manager: %+v %v", res, err)
	}
	if _, err := m.Get(ctx, "00000000-0000-4000-8000-000000000000"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown room: %v", err)
	}
}

// An eviction that races with Get must not strand a subscriber on a room
// that no longer receives writes: the evicted room refuses, and the
// manager's Subscribe follows the room to its fresh load.
func TestEvictionRacingGet(t *testing.T) {
	st := storetest.Open(t, "sqlite")
	id := mustRoom(t, st)
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	var block atomic.Bool
	gate, entered := make(chan struct{}), make(chan struct{})
	now := func() time.Time {
		if block.CompareAndSwap(true, false) {
			close(entered)
			<-gate
		}
		return time.Unix(0, clock.Load())
	}
	ctx := context.Background()
	m := room.NewManager(st, room.Options{IdleTimeout: time.Minute, Now: now})
	if _, err := m.Get(ctx, id); err != nil {
		t.Fatal(err)
	}
	clock.Add(int64(2 * time.Minute)) // the room is idle now
	block.Store(true)                 // Get's touch blocks in the clock
	var old *room.Room
	var wg sync.WaitGroup
	wg.Go(func() { old, _ = m.Get(ctx, id) })
	<-entered
	if n := m.EvictIdle(ctx); n != 1 {
		t.Fatalf("evicted %d", n)
	}
	close(gate)
	wg.Wait()

	if _, err := old.Subscribe("stale"); err == nil {
		t.Fatal("an evicted room accepted a subscriber")
	}
	if _, err := old.Apply(ctx, room.Write{Ops: []graph.Op{addNode("x")}}); err == nil {
		t.Fatal("an evicted room accepted a write")
	}
	fresh, join, err := m.Subscribe(ctx, id, "a")
	if err != nil || fresh == old {
		t.Fatalf("Subscribe: %v (same room: %v)", err, fresh == old)
	}
	if _, err := m.Apply(ctx, id, room.Write{Ops: []graph.Op{addNode("n1")}}); err != nil {
		t.Fatal(err)
	}
	if seqs := seqsOf(t, join.Sub); len(seqs) != 1 || seqs[0] != 1 {
		t.Fatalf("subscriber got %v, want [1]", seqs)
	}
}

// A presence event lists at most MaxPresenceUsers users, oldest first, and
// counts everyone; each change is one new number, and waiters wake.
func TestPresenceIsBoundedAndWakesWaiters(t *testing.T) {
	ctx := context.Background()
	st := storetest.Open(t, "sqlite")
	id := mustRoom(t, st)
	m := room.NewManager(st, room.Options{})
	_, first, err := m.Subscribe(ctx, id, "first")
	if err != nil {
		t.Fatal(err)
	}
	seq, changed := first.Sub.PresenceChanged()
	for i := range room.MaxPresenceUsers + 49 {
		if _, _, err := m.Subscribe(ctx, id, fmt.Sprintf("u%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-changed:
	default:
		t.Fatal("a waiter was not woken by joins")
	}
	newSeq, users, data := first.Sub.Presence()
	if newSeq != seq+room.MaxPresenceUsers+49 || users != room.MaxPresenceUsers+50 {
		t.Fatalf("presence number %d (was %d), %d users", newSeq, seq, users)
	}
	var ev struct {
		Users []room.User `json:"users"`
		Count int         `json:"count"`
	}
	if err := json.Unmarshal(data, &ev); err != nil {
		t.Fatal(err)
	}
	if len(ev.Users) != room.MaxPresenceUsers || ev.Count != room.MaxPresenceUsers+50 || ev.Users[0].Name != "first" {
		t.Fatalf("presence lists %d users (first %q), count %d", len(ev.Users), ev.Users[0].Name, ev.Count)
	}
}

// Instance A snapshots the room and prunes the ops that instance B has not
// seen; B's next write must still succeed (B reloads from the snapshot) and
// B's subscribers get the snapshot and then B's op, in order.
func TestWriterCatchesUpPastAPrunedLog(t *testing.T) {
	storetest.Dialects(t, func(t *testing.T, cfg store.Config) {
		ctx := context.Background()
		stA, stB := openStore(t, cfg), openStore(t, cfg)
		id := mustRoom(t, stA)
		regA := snapshot.NewRegistry(stA, snapshot.Config{Keep: 1, MaxBytes: 1 << 20, Shared: true})
		regB := snapshot.NewRegistry(stB, snapshot.Config{Keep: 1, MaxBytes: 1 << 20, Shared: true})
		mA := room.NewManager(stA, room.Options{Shared: true, Snapshots: regA})
		mB := room.NewManager(stB, room.Options{Shared: true, Snapshots: regB, QueueSize: 100})
		t.Cleanup(func() { mA.Close(); mB.Close() })
		rA, err := mA.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		rB, join, err := mB.Subscribe(ctx, id, "watcher")
		if err != nil {
			t.Fatal(err)
		}
		if rB.Version() != 0 {
			t.Fatalf("B loaded at version %d", rB.Version())
		}
		for i := range 5 {
			if _, err := rA.Apply(ctx, room.Write{Ops: []graph.Op{addNode(fmt.Sprintf("a%d", i))}}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := regA.Take(ctx, rA, snapshot.TriggerManual); err != nil {
			t.Fatal(err)
		}
		if ops, err := stA.OpsSince(ctx, id, 0, 100); err != nil || len(ops) != 0 {
			t.Fatalf("ops 1..5 not pruned by the snapshot: %d ops, %v", len(ops), err)
		}

		res, err := rB.Apply(ctx, room.Write{Ops: []graph.Op{addNode("b")}})
		if err != nil {
			t.Fatalf("B's write after A pruned the log: %v", err)
		}
		if res.Version != 6 {
			t.Fatalf("B's write got version %d, want 6", res.Version)
		}
		state, v := rB.State()
		if v != 6 || len(state.Nodes) != 6 {
			t.Fatalf("B at version %d with %d nodes, want 6 and 6", v, len(state.Nodes))
		}
		var events []string
		for len(events) < 2 {
			select {
			case m := <-join.Sub.C:
				events = append(events, fmt.Sprintf("%s@%d", m.Event, m.Seq))
			case <-time.After(5 * time.Second):
				t.Fatalf("B's subscriber got only %v", events)
			}
		}
		if want := []string{"snapshot@5", "ops@6"}; fmt.Sprint(events) != fmt.Sprint(want) {
			t.Fatalf("B's subscriber got %v, want %v", events, want)
		}
	})
}

// A frozen room keeps the state and version of its freeze while the room's
// writers go on: a snapshot encodes exactly one committed version.
func TestFreezeKeepsTheVersionItWasTakenAt(t *testing.T) {
	storetest.Dialects(t, func(t *testing.T, cfg store.Config) {
		ctx := context.Background()
		st := openStore(t, cfg)
		m := room.NewManager(st, room.Options{})
		id := mustRoom(t, st)
		if _, err := m.Apply(ctx, id, room.Write{Ops: []graph.Op{addNode("a"), addNode("b")}}); err != nil {
			t.Fatal(err)
		}
		r, err := m.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		want, wantVersion := r.State()
		view, version := r.Freeze()
		if _, err := m.Apply(ctx, id, room.Write{Ops: []graph.Op{addNode("c"), {Kind: graph.OpRemoveNode, ID: "a"}}}); err != nil {
			t.Fatal(err)
		}
		got := view.State()
		if version != wantVersion || !got.Equal(want) {
			t.Fatalf("frozen at version %d: %+v; want version %d: %+v", version, got, wantVersion, want)
		}
		if now, v := r.State(); v == version || len(now.Nodes) != 2 || now.Nodes[0].ID != "b" {
			t.Fatalf("room after the freeze at version %d: %+v", v, now)
		}
	})
}
