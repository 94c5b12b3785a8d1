package snapshot_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/liveshare/liveshare/graph"
	"github.com/liveshare/liveshare/room"
	"github.com/liveshare/liveshare/snapshot"
	"github.com/liveshare/liveshare/store"
	"github.com/liveshare/liveshare/store/storetest"
)

// TestCheckpointsByTheClock: with history kept, the registry's first
// snapshot of a changed room in each hour is a checkpoint and the others
// keep their trigger; manual snapshots never are; hours later the store
// keeps one checkpoint per hour, and ops back to the oldest. The clock is
// the test's, so hours pass at once.
func TestCheckpointsByTheClock(t *testing.T) {
	t.Parallel()
	storetest.Dialects(t, func(t *testing.T, cfg store.Config) {
		ctx := context.Background()
		var (
			mu  sync.Mutex
			now = time.Date(2026, 5, 1, 9, 10, 0, 0, time.UTC)
		)
		clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
		cfg.Now = clock
		st, err := store.Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		info, err := st.CreateRoom(ctx, "checkpoints")
		if err != nil {
			t.Fatal(err)
		}
		reg := snapshot.NewRegistry(st, snapshot.Config{Interval: time.Hour, Keep: 1, MaxBytes: 1 << 20,
			Hourly: 3 * time.Hour, Daily: 0, Now: clock})
		rooms := room.NewManager(st, room.Options{Snapshots: reg})
		next := 0
		write := func() *room.Room {
			t.Helper()
			next++
			op, err := graph.ParseOp([]byte(fmt.Sprintf(`{"op":"add_node","node":{"id":"n%d"}}`, next)))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := rooms.Apply(ctx, info.ID, room.Write{Ops: []graph.Op{op}}); err != nil {
				t.Fatal(err)
			}
			r, err := rooms.Get(ctx, info.ID)
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		take := func(r *room.Room, trigger, want string) store.SnapshotMeta {
			t.Helper()
			m, err := reg.Take(ctx, r, trigger)
			if err != nil {
				t.Fatalf("Take(%s): %v", trigger, err)
			}
			if m.Trigger != want {
				t.Fatalf("Take(%s) at %s stored trigger %q, want %q", trigger, clock().Format(time.TimeOnly), m.Trigger, want)
			}
			return m
		}

		take(write(), snapshot.TriggerManual, snapshot.TriggerManual)     // 09:10, version 1: no checkpoint yet
		first := take(write(), snapshot.TriggerInterval, "checkpoint")    // version 2
		take(write(), snapshot.TriggerInterval, snapshot.TriggerInterval) // same hour
		advance(30 * time.Minute)                                         // 09:40
		take(write(), snapshot.TriggerIdle, snapshot.TriggerIdle)
		var hourly []store.SnapshotMeta
		for range 5 { // 10:40 … 14:40
			advance(time.Hour)
			hourly = append(hourly, take(write(), snapshot.TriggerInterval, "checkpoint"))
			take(write(), snapshot.TriggerThreshold, snapshot.TriggerThreshold)
		}
		// Kept at 14:40 with 3 h of hourly history: the newest snapshot and
		// the checkpoints of 12:40, 13:40 and 14:40 (those of 09 … 11 are
		// older than 3 h).
		list, err := st.ListSnapshots(ctx, info.ID)
		if err != nil {
			t.Fatal(err)
		}
		var got []int64
		for _, m := range list {
			got = append(got, m.Version)
		}
		want := []int64{hourly[4].Version + 1, hourly[4].Version, hourly[3].Version, hourly[2].Version}
		if len(got) != len(want) {
			t.Fatalf("kept versions %v, want %v (first checkpoint was %d)", got, want, first.Version)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("kept versions %v, want %v", got, want)
			}
		}
		st2, err := reg.Stats(ctx, info.ID)
		if err != nil {
			t.Fatal(err)
		}
		if st2.Count != 4 || st2.Checkpoints != 3 {
			t.Errorf("stats count %d, checkpoints %d; want 4 and 3", st2.Count, st2.Checkpoints)
		}
		if _, pruned, err := st.RoomVersion(ctx, info.ID); err != nil || pruned != hourly[2].Version {
			t.Errorf("ops pruned through %d (%v), want through the oldest checkpoint %d", pruned, err, hourly[2].Version)
		}
	})
}
