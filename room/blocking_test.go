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

// Tests of a database that stops answering for one room (issue 19): the
// locks are real, held by a session of the test's own on the test's
// database (storetest.HoldLocks), as another instance's hung transaction or
// a maintenance job would hold them.

// within runs fn and fails the test unless it returns within d. A call
// that does not return is left to the lock's release at cleanup.
func within(t *testing.T, d time.Duration, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s: still blocked after %s", what, d)
	}
}

// slack is how much later than its deadline a call that gives up may
// return: generous, because the machine is shared; a call that waits for
// the lock instead waits until the test releases it.
const slack = 5 * time.Second

// deadline is the tests' deadline for a call that must give up.
const deadline = 300 * time.Millisecond

// TestStalledCommitStaysInItsRoom: while one room's commit hangs on a lock
// in the database, that room's writers give up at their deadline with
// ErrUnavailable (503), and the rest of the instance goes on: other rooms
// load and (where the database allows) commit and get snapshotted, and
// Live, Len, SnapshotLag (/metrics), the snapshot scheduler and eviction
// all return.
func TestStalledCommitStaysInItsRoom(t *testing.T) {
	storetest.Dialects(t, func(t *testing.T, cfg store.Config) {
		ctx := context.Background()
		st := openStore(t, cfg)
		// PostgreSQL locks the stalled room's row only; SQLite has one
		// write lock for the whole database, so there no room commits
		// while the test holds it.
		rowLocks := cfg.DatabaseURL != ""
		var clock atomic.Int64
		clock.Store(time.Now().UnixNano())
		now := func() time.Time { return time.Unix(0, clock.Load()) }
		snaps := snapshot.NewRegistry(st, snapshot.Config{Interval: time.Hour, Keep: 3, MaxBytes: 1 << 20, Shared: rowLocks,
			TakeTimeout: deadline})
		m := room.NewManager(st, room.Options{Snapshots: snaps, IdleTimeout: time.Minute, Shared: rowLocks, Now: now})
		t.Cleanup(m.Close) // after the lock's release, registered later

		stalled, other, cold := mustRoom(t, st), mustRoom(t, st), mustRoom(t, st)
		for _, id := range []string{stalled, other} {
			if _, err := m.Apply(ctx, id, room.Write{Ops: []graph.Op{addNode("before")}}); err != nil {
				t.Fatal(err)
			}
		}
		stalledRoom, err := m.Get(ctx, stalled)
		if err != nil {
			t.Fatal(err)
		}
		release := storetest.HoldCommitLock(t, cfg, stalled)

		const writers = 3
		var wg sync.WaitGroup
		errs, took := make([]error, writers), make([]time.Duration, writers)
		for i := range writers {
			wg.Go(func() {
				wctx, cancel := context.WithTimeout(ctx, deadline)
				defer cancel()
				start := time.Now()
				_, errs[i] = m.Apply(wctx, stalled, room.Write{Ops: []graph.Op{addNode(fmt.Sprintf("w%d", i))}})
				took[i] = time.Since(start)
			})
		}
		within(t, deadline+slack, "writers of the stalled room", wg.Wait)
		for i := range writers {
			if !errors.Is(errs[i], room.ErrUnavailable) {
				t.Errorf("writer %d of the stalled room: %v, want ErrUnavailable", i, errs[i])
			}
			if took[i] < deadline {
				t.Errorf("writer %d gave up after %s, before its deadline of %s", i, took[i], deadline)
			}
		}
		within(t, slack, "reading the stalled room", func() {
			if v := stalledRoom.Version(); v != 1 {
				t.Errorf("the stalled room moved to version %d while its commit was locked out", v)
			}
		})

		// The commit still hangs; everything else answers.
		within(t, slack, "loading another room", func() {
			gctx, cancel := context.WithTimeout(ctx, slack)
			defer cancel()
			if r, err := m.Get(gctx, cold); err != nil || r.Version() != 0 {
				t.Errorf("load another room: %v", err)
			}
		})
		within(t, slack, "Live, Len and SnapshotLag", func() {
			if n := len(m.Live()); n != 3 {
				t.Errorf("Live lists %d rooms, want 3", n)
			}
			if n := m.Len(); n != 3 {
				t.Errorf("Len %d, want 3", n)
			}
			if v, _ := m.SnapshotLag(); v < 1 {
				t.Errorf("SnapshotLag %d versions, want at least 1", v)
			}
		})
		if rowLocks {
			within(t, slack, "a write to another room", func() {
				wctx, cancel := context.WithTimeout(ctx, slack)
				defer cancel()
				if res, err := m.Apply(wctx, other, room.Write{Ops: []graph.Op{addNode("during")}}); err != nil || res.Version != 2 {
					t.Errorf("write to another room: %+v, %v", res, err)
				}
			})
			within(t, slack, "the snapshot scheduler's pass", func() {
				sctx, cancel := context.WithTimeout(ctx, 2*slack)
				defer cancel()
				snaps.SnapshotChanged(sctx, m, snapshot.TriggerInterval)
			})
			if list, err := snaps.List(ctx, other); err != nil || len(list) != 1 || list[0].Version != 2 {
				t.Errorf("another room's snapshot by the scheduler: %+v, %v", list, err)
			}
		}
		clock.Add(int64(2 * time.Minute)) // every room is idle now
		within(t, 2*slack, "eviction", func() { m.EvictIdle(ctx) })
		if _, ok := m.Loaded(cold); ok {
			t.Errorf("the idle unchanged room %s was not evicted", cold)
		}
		// Its commit still waits: for the lock on PostgreSQL (until
		// CommitTimeout, 30s), for SQLite's busy_timeout (10s) there; the
		// steps since the lock took about a second.
		if _, ok := m.Loaded(stalled); !ok {
			t.Errorf("the stalled room was evicted while its commit was in flight")
		}

		// Once the database answers again, the room takes writes.
		release()
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		res, err := m.Apply(wctx, stalled, room.Write{Ops: []graph.Op{addNode("after")}})
		if err != nil {
			t.Fatalf("write after the lock was released: %v", err)
		}
		if v := stalledRoom.Version(); res.Version != v || v < 2 {
			t.Errorf("write after the release got version %d, the room is at %d", res.Version, v)
		}
	})
}

// stallingReads is a store whose op log reads of one room hang until their
// context ends, as a database call on a stuck connection does: SQLite's
// readers never wait for a lock (WAL), so there is no real lock to hold.
type stallingReads struct {
	*store.Store
	roomID string
}

func (s stallingReads) OpsSince(ctx context.Context, roomID string, since int64, limit int) ([]store.OpRecord, error) {
	if roomID == s.roomID {
		<-ctx.Done()
		return nil, fmt.Errorf("read ops of room %s: %w", roomID, ctx.Err())
	}
	return s.Store.OpsSince(ctx, roomID, since, limit)
}

// TestDeleteWhileLoadHangs: a room whose load hangs in the database (on
// PostgreSQL, behind a real lock on the op log) makes its readers give up
// at their deadline with ErrUnavailable, can be forgotten (DELETE) without
// waiting for the load, and the load itself ends at LoadTimeout with an
// error that is ErrUnavailable (503), not a failure of the server (500).
func TestDeleteWhileLoadHangs(t *testing.T) {
	storetest.Dialects(t, func(t *testing.T, cfg store.Config) {
		ctx := context.Background()
		st := openStore(t, cfg)
		hung := mustRoom(t, st)
		if _, err := st.AppendOps(ctx, store.Append{RoomID: hung, ExpectedVersion: 0, ElementCount: 1,
			Writes: []store.AppendWrite{{Ops: []json.RawMessage{json.RawMessage(`{"op":"add_node","node":{"id":"a"}}`)}}}}); err != nil {
			t.Fatal(err)
		}
		var rooms room.Store = st
		var release func()
		if cfg.DatabaseURL != "" {
			// Whoever holds this (a migration, a VACUUM FULL) makes every
			// read of the op log wait.
			release = storetest.HoldLocks(t, cfg, `LOCK TABLE ops IN ACCESS EXCLUSIVE MODE`)
		} else {
			rooms = stallingReads{Store: st, roomID: hung}
		}
		const loadTimeout = 4 * time.Second
		m := room.NewManager(rooms, room.Options{LoadTimeout: loadTimeout})
		t.Cleanup(func() {
			if release != nil {
				release()
			}
			m.Close()
		})

		within(t, deadline+slack, "a reader of the hung room", func() {
			gctx, cancel := context.WithTimeout(ctx, deadline)
			defer cancel()
			start := time.Now()
			_, err := m.Get(gctx, hung)
			if !errors.Is(err, room.ErrUnavailable) {
				t.Errorf("Get of a room whose load hangs: %v, want ErrUnavailable", err)
			}
			if took := time.Since(start); took < deadline {
				t.Errorf("Get gave up after %s, before its deadline of %s", took, deadline)
			}
		})
		// Well before the load's own deadline: Forget must not wait for it.
		within(t, loadTimeout/2, "forgetting the room whose load hangs", func() { m.Forget(hung) })

		// A reader without a deadline of its own gets the load's.
		within(t, loadTimeout+slack, "a load at its LoadTimeout", func() {
			_, err := m.Get(ctx, hung)
			if !errors.Is(err, room.ErrUnavailable) {
				t.Errorf("load past its LoadTimeout: %v, want ErrUnavailable", err)
			}
		})

		if release != nil {
			release()
			r, err := m.Get(ctx, hung)
			if err != nil || r.Version() != 1 {
				t.Fatalf("load once the lock is gone: %v", err)
			}
		}
	})
}

// TestCommitTimeoutIsUnavailable: a commit cut short by the sequencer's own
// deadline (CommitTimeout), while its writer still waits, answers that
// writer ErrUnavailable (503), whatever the driver says of the
// cancellation; nothing was applied.
func TestCommitTimeoutIsUnavailable(t *testing.T) {
	storetest.Dialects(t, func(t *testing.T, cfg store.Config) {
		ctx := context.Background()
		st := openStore(t, cfg)
		id := mustRoom(t, st)
		const commitTimeout = 500 * time.Millisecond
		m := room.NewManager(st, room.Options{CommitTimeout: commitTimeout, Shared: cfg.DatabaseURL != ""})
		t.Cleanup(m.Close)
		r, err := m.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		storetest.HoldCommitLock(t, cfg, id)
		within(t, commitTimeout+slack, "a writer past the commit's deadline", func() {
			wctx, cancel := context.WithTimeout(ctx, commitTimeout+2*slack)
			defer cancel()
			_, err := m.Apply(wctx, id, room.Write{Ops: []graph.Op{addNode("a")}})
			if !errors.Is(err, room.ErrUnavailable) {
				t.Errorf("write whose commit timed out: %v, want ErrUnavailable", err)
			}
		})
		if v := r.Version(); v != 0 {
			t.Errorf("room at version %d after a commit that timed out", v)
		}
	})
}
