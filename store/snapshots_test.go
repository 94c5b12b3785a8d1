package store_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/liveshare/liveshare/store"
	"github.com/liveshare/liveshare/store/storetest"
)

func mustInsertSnapshot(t *testing.T, s *store.Store, n store.NewSnapshot, keep int) (store.SnapshotMeta, int64) {
	t.Helper()
	m, pruned, err := s.InsertSnapshot(context.Background(), n, keep)
	if err != nil {
		t.Fatalf("InsertSnapshot(version %d): %v", n.Version, err)
	}
	return m, pruned
}

func mustGetRoom(t *testing.T, s *store.Store, id string) store.Room {
	t.Helper()
	r, err := s.GetRoom(context.Background(), id)
	if err != nil {
		t.Fatalf("GetRoom: %v", err)
	}
	return r
}

// versions lists the metas' versions, in order.
func versions(metas []store.SnapshotMeta) string {
	vs := make([]string, len(metas))
	for i, m := range metas {
		vs[i] = fmt.Sprint(m.Version)
	}
	return strings.Join(vs, ",")
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSnapshots(t *testing.T) {
	t.Parallel()
	storetest.Dialects(t, func(t *testing.T, cfg store.Config) {
		ctx := context.Background()
		s := mustOpen(t, cfg)
		var (
			mu  sync.Mutex
			now = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
		)
		store.SetClock(s, func() time.Time { mu.Lock(); defer mu.Unlock(); return now })
		tick := func() { mu.Lock(); now = now.Add(time.Second); mu.Unlock() }

		room := mustCreateRoom(t, s, "r")
		other := mustCreateRoom(t, s, "other")
		mustAppend(t, s, store.Append{RoomID: room.ID, ElementCount: 30, Writes: []store.AppendWrite{{Ops: makeOps("a", 30)}}})
		mustAppend(t, s, store.Append{RoomID: other.ID, Writes: []store.AppendWrite{{Ops: makeOps("o", 5)}}})

		if got, err := s.ListSnapshots(ctx, room.ID); err != nil || got == nil || len(got) != 0 {
			t.Fatalf("ListSnapshots with none = %#v, %v; want an empty slice", got, err)
		}
		if got, err := s.SnapshotMetas(ctx, room.ID, 3); err != nil || got == nil || len(got) != 0 {
			t.Fatalf("SnapshotMetas with none = %#v, %v; want an empty slice", got, err)
		}
		if _, err := s.LatestSnapshotMeta(ctx, room.ID); !errors.Is(err, store.ErrSnapshotNotFound) {
			t.Fatalf("LatestSnapshotMeta with none: %v, want ErrSnapshotNotFound", err)
		}

		// Inserted out of order; the one at version 0 keeps the whole log;
		// the 5 MB one is stored in pieces.
		allBytes := make([]byte, 512)
		for i := range allBytes {
			allBytes[i] = byte(i)
		}
		inserts := []store.NewSnapshot{
			{Version: 0, ElementCount: 0, Trigger: "clear", Format: 1, Data: nil},
			{Version: 20, ElementCount: 20, Trigger: "interval", Format: 1, Data: []byte("twenty-a")},
			{Version: 10, ElementCount: 10, Trigger: "manual", Format: 1, Data: allBytes},
			{Version: 30, ElementCount: 30, Trigger: "threshold", Format: 2, Data: randomBytes(t, 5<<20)},
		}
		byID := map[string]store.NewSnapshot{}
		metaByID := map[string]store.SnapshotMeta{}
		for _, n := range inserts {
			tick()
			n.RoomID = room.ID
			m, pruned := mustInsertSnapshot(t, s, n, 100)
			if pruned != 0 {
				t.Errorf("pruned %d ops with a snapshot at version 0 kept", pruned)
			}
			if _, err := uuid.Parse(m.ID); err != nil {
				t.Errorf("snapshot id %q is no UUID", m.ID)
			}
			if m.RoomID != room.ID || m.Version != n.Version || m.ElementCount != n.ElementCount || m.Trigger != n.Trigger ||
				m.Format != n.Format || m.SizeBytes != int64(len(n.Data)) || !m.CreatedAt.Equal(now) || m.CreatedAt.Location() != time.UTC {
				t.Errorf("meta = %+v, want the fields of %+v (data %d bytes) at %v", m, n, len(n.Data), now)
			}
			byID[m.ID], metaByID[m.ID] = n, m
		}
		// One snapshot per version: a second one at 20 is refused and
		// changes nothing.
		tick()
		if _, _, err := s.InsertSnapshot(ctx, store.NewSnapshot{RoomID: room.ID, Version: 20, ElementCount: 21, Trigger: "idle", Format: 1, Data: []byte("twenty-b")}, 100); !errors.Is(err, store.ErrSnapshotExists) {
			t.Fatalf("second snapshot at version 20: %v, want ErrSnapshotExists", err)
		}
		tick()
		otherMeta, _ := mustInsertSnapshot(t, s, store.NewSnapshot{RoomID: other.ID, Version: 5, Trigger: "manual", Format: 1, Data: []byte("other")}, 10)

		list, err := s.ListSnapshots(ctx, room.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := versions(list), "30,20,10,0"; got != want {
			t.Fatalf("ListSnapshots versions = %s, want %s", got, want)
		}
		if list[1].Trigger != "interval" {
			t.Errorf("snapshot at 20 has trigger %q, want the first one's (interval)", list[1].Trigger)
		}
		for _, m := range list {
			if want := metaByID[m.ID]; m != want {
				t.Errorf("listed %+v, inserted %+v", m, want)
			}
		}

		for id, n := range byID {
			got, err := s.GetSnapshot(ctx, room.ID, id)
			if err != nil {
				t.Fatalf("GetSnapshot: %v", err)
			}
			if got.SnapshotMeta != metaByID[id] {
				t.Errorf("GetSnapshot meta = %+v, want %+v", got.SnapshotMeta, metaByID[id])
			}
			if !bytes.Equal(got.Data, n.Data) || got.Data == nil {
				t.Errorf("GetSnapshot(version %d) data: %d bytes, differs from the %d inserted", n.Version, len(got.Data), len(n.Data))
			}
		}
		// Any spelling of the id.
		if got, err := s.GetSnapshot(ctx, strings.ToUpper(room.ID), strings.ToUpper(list[0].ID)); err != nil || got.ID != list[0].ID {
			t.Errorf("GetSnapshot(upper-case ids) = %+v, %v", got.SnapshotMeta, err)
		}
		for _, tc := range []struct{ room, id string }{
			{room.ID, otherMeta.ID}, // another room's snapshot
			{other.ID, list[0].ID},
			{room.ID, uuid.NewString()},
			{room.ID, "not-a-uuid"},
			{room.ID, ""},
			{"not-a-uuid", list[0].ID},
			{uuid.NewString(), list[0].ID},
		} {
			if _, err := s.GetSnapshot(ctx, tc.room, tc.id); !errors.Is(err, store.ErrSnapshotNotFound) {
				t.Errorf("GetSnapshot(%q, %q) error = %v, want ErrSnapshotNotFound", tc.room, tc.id, err)
			}
		}

		for n, want := range map[int]string{0: "30,20,10,0", -1: "30,20,10,0", 1: "30", 2: "30,20", 9: "30,20,10,0"} {
			metas, err := s.SnapshotMetas(ctx, room.ID, n)
			if err != nil || metas == nil {
				t.Fatalf("SnapshotMetas(%d) = %v, %v", n, metas, err)
			}
			for i, m := range metas {
				if m != list[i] {
					t.Errorf("SnapshotMetas(%d)[%d] = %+v, want %+v", n, i, m, list[i])
				}
			}
			if got := versions(metas); got != want {
				t.Errorf("SnapshotMetas(%d) versions = %s, want %s", n, got, want)
			}
		}
		if latest, err := s.LatestSnapshotMeta(ctx, room.ID); err != nil || latest != list[0] {
			t.Errorf("LatestSnapshotMeta = %+v, %v; want %+v", latest, err, list[0])
		}
		if got, err := s.ListSnapshots(ctx, "nope"); err != nil || got == nil || len(got) != 0 {
			t.Errorf("ListSnapshots(invalid id) = %v, %v; want an empty slice", got, err)
		}
	})
}

func TestInsertSnapshotKeepsAndPrunes(t *testing.T) {
	t.Parallel()
	storetest.Dialects(t, func(t *testing.T, cfg store.Config) {
		ctx := context.Background()
		s := mustOpen(t, cfg)
		room := mustCreateRoom(t, s, "r")
		other := mustCreateRoom(t, s, "other")
		mustAppend(t, s, store.Append{RoomID: room.ID, Writes: []store.AppendWrite{{Ops: makeOps("a", 50)}}})
		mustAppend(t, s, store.Append{RoomID: other.ID, Writes: []store.AppendWrite{{Ops: makeOps("o", 50)}}})
		mustInsertSnapshot(t, s, store.NewSnapshot{RoomID: other.ID, Version: 0, Trigger: "manual", Data: []byte("o")}, 3)

		// keep = 3: versions 10..50; wantPruned is what each insert prunes.
		for i, wantPruned := range []int64{10, 0, 0, 10, 10} {
			version := int64(10 * (i + 1))
			_, pruned := mustInsertSnapshot(t, s, store.NewSnapshot{RoomID: room.ID, Version: version, Trigger: "interval", Format: 1, Data: []byte{byte(i)}}, 3)
			if pruned != wantPruned {
				t.Errorf("snapshot at %d pruned %d ops, want %d", version, pruned, wantPruned)
			}
		}
		list, err := s.ListSnapshots(ctx, room.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := versions(list), "50,40,30"; got != want {
			t.Errorf("kept versions = %s, want %s", got, want)
		}
		checkLog := func(wantPrunedThrough, wantVersion int64) {
			t.Helper()
			r := mustGetRoom(t, s, room.ID)
			if r.PrunedThrough != wantPrunedThrough || r.Version != wantVersion {
				t.Errorf("room pruned_through %d, version %d; want %d, %d", r.PrunedThrough, r.Version, wantPrunedThrough, wantVersion)
			}
			ops := mustOpsSince(t, s, room.ID, 0, 0)
			if int64(len(ops)) != wantVersion-wantPrunedThrough {
				t.Fatalf("%d ops in the log, want %d", len(ops), wantVersion-wantPrunedThrough)
			}
			for i, op := range ops {
				if op.Seq != wantPrunedThrough+1+int64(i) {
					t.Fatalf("ops[%d].Seq = %d, want %d", i, op.Seq, wantPrunedThrough+1+int64(i))
				}
			}
		}
		checkLog(30, 50)
		listed, _, err := s.ListRooms(ctx, 10, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range listed {
			if want := map[string]int64{room.ID: 30, other.ID: 0}[r.ID]; r.PrunedThrough != want {
				t.Errorf("ListRooms: room %q pruned_through %d, want %d", r.Name, r.PrunedThrough, want)
			}
		}
		// The other room was not touched.
		if ops := mustOpsSince(t, s, other.ID, 0, 0); len(ops) != 50 {
			t.Errorf("other room has %d ops, want 50", len(ops))
		}

		// Appending after pruning continues from the room's version.
		if res := mustAppend(t, s, store.Append{RoomID: room.ID, ExpectedVersion: 50, Writes: []store.AppendWrite{{Ops: makeOps("b", 5)}}}); res.Version != 55 {
			t.Errorf("append after pruning: version %d, want 55", res.Version)
		}
		checkLog(30, 55)

		// A snapshot below pruned_through (the state of an older version,
		// as in a restore) never lowers it, and nothing kept snapshots need
		// is pruned.
		m, pruned := mustInsertSnapshot(t, s, store.NewSnapshot{RoomID: room.ID, Version: 25, Trigger: "manual", Data: []byte("old")}, 4)
		if pruned != 0 {
			t.Errorf("snapshot at 25 pruned %d ops", pruned)
		}
		checkLog(30, 55)
		list, _ = s.ListSnapshots(ctx, room.ID)
		if got, want := versions(list), "50,40,30,25"; got != want {
			t.Errorf("kept versions = %s, want %s", got, want)
		}
		// With keep newer ones, the new snapshot is itself the one trimmed.
		_, pruned = mustInsertSnapshot(t, s, store.NewSnapshot{RoomID: room.ID, Version: 20, Trigger: "manual", Data: []byte("older")}, 4)
		list, _ = s.ListSnapshots(ctx, room.ID)
		if got, want := versions(list), "50,40,30,25"; got != want || pruned != 0 {
			t.Errorf("after a snapshot older than the kept ones: versions %s, pruned %d; want %s, 0", got, pruned, want)
		}
		if _, err := s.GetSnapshot(ctx, room.ID, m.ID); err != nil {
			t.Errorf("snapshot at 25 gone: %v", err)
		}
		checkLog(30, 55)

		// keep < 1 counts as 1; the oldest kept is now 55.
		_, pruned = mustInsertSnapshot(t, s, store.NewSnapshot{RoomID: room.ID, Version: 55, Trigger: "shutdown", Data: []byte("now")}, 0)
		if pruned != 25 {
			t.Errorf("snapshot at 55 with keep 0 pruned %d, want 25", pruned)
		}
		list, _ = s.ListSnapshots(ctx, room.ID)
		if got, want := versions(list), "55"; got != want {
			t.Errorf("kept versions = %s, want %s", got, want)
		}
		checkLog(55, 55)

		// A version the room has not reached, or a negative one, is refused.
		for _, v := range []int64{56, -1} {
			if _, _, err := s.InsertSnapshot(ctx, store.NewSnapshot{RoomID: room.ID, Version: v, Data: []byte("x")}, 1); err == nil {
				t.Errorf("InsertSnapshot at version %d of a room at 55 succeeded", v)
			}
		}
		list, _ = s.ListSnapshots(ctx, room.ID)
		if got, want := versions(list), "55"; got != want {
			t.Errorf("after refused inserts: versions %s, want %s", got, want)
		}
		checkLog(55, 55)
	})
}

func TestInsertSnapshotMissingRoom(t *testing.T) {
	t.Parallel()
	storetest.Dialects(t, func(t *testing.T, cfg store.Config) {
		ctx := context.Background()
		s := mustOpen(t, cfg)
		gone := mustCreateRoom(t, s, "gone")
		if err := s.DeleteRoom(ctx, gone.ID, nil); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{gone.ID, uuid.NewString(), "nope", ""} {
			_, _, err := s.InsertSnapshot(ctx, store.NewSnapshot{RoomID: id, Trigger: "manual", Data: []byte("x")}, 3)
			if !errors.Is(err, store.ErrNotFound) {
				t.Errorf("InsertSnapshot(room %q) error = %v, want ErrNotFound", id, err)
			}
		}
		if tot, err := s.SnapshotTotals(ctx); err != nil || tot != (store.SnapshotTotals{}) {
			t.Errorf("SnapshotTotals = %+v, %v; want none", tot, err)
		}
	})
}

func TestSnapshotStatsAndDelete(t *testing.T) {
	t.Parallel()
	storetest.Dialects(t, func(t *testing.T, cfg store.Config) {
		ctx := context.Background()
		s := mustOpen(t, cfg)
		a := mustCreateRoom(t, s, "a")
		b := mustCreateRoom(t, s, "b")
		c := mustCreateRoom(t, s, "c") // never has snapshots
		mustAppend(t, s, store.Append{RoomID: a.ID, Writes: []store.AppendWrite{{Ops: makeOps("a", 10)}}})
		mustAppend(t, s, store.Append{RoomID: b.ID, Writes: []store.AppendWrite{{Ops: makeOps("b", 10)}}})

		st, err := s.RoomSnapshotStats(ctx, a.ID)
		if err != nil || st != (store.RoomSnapshotStats{}) {
			t.Fatalf("RoomSnapshotStats with none = %+v, %v", st, err)
		}
		if tot, err := s.SnapshotTotals(ctx); err != nil || tot != (store.SnapshotTotals{}) {
			t.Fatalf("SnapshotTotals with none = %+v, %v", tot, err)
		}

		var latestA store.SnapshotMeta
		for i, size := range []int{100, 200, 300} {
			latestA, _ = mustInsertSnapshot(t, s, store.NewSnapshot{RoomID: a.ID, Version: int64(3 * (i + 1)), Trigger: "interval", Data: make([]byte, size)}, 10)
		}
		mustInsertSnapshot(t, s, store.NewSnapshot{RoomID: b.ID, Version: 4, Trigger: "manual", Data: make([]byte, 7)}, 10)

		st, err = s.RoomSnapshotStats(ctx, a.ID)
		if err != nil {
			t.Fatal(err)
		}
		if st.Count != 3 || st.TotalBytes != 600 || st.Latest == nil || *st.Latest != latestA {
			t.Errorf("RoomSnapshotStats(a) = %+v (latest %+v), want 3, 600 bytes, latest %+v", st, st.Latest, latestA)
		}
		if st, err := s.RoomSnapshotStats(ctx, c.ID); err != nil || st != (store.RoomSnapshotStats{}) {
			t.Errorf("RoomSnapshotStats(c) = %+v, %v; want none", st, err)
		}
		if tot, err := s.SnapshotTotals(ctx); err != nil || tot != (store.SnapshotTotals{Rooms: 2, Snapshots: 4, Bytes: 607}) {
			t.Errorf("SnapshotTotals = %+v, %v; want 2 rooms, 4 snapshots, 607 bytes", tot, err)
		}

		// DeleteSnapshots clears one room and leaves pruned_through alone.
		before := mustGetRoom(t, s, a.ID)
		if before.PrunedThrough != 3 {
			t.Fatalf("pruned_through = %d, want 3", before.PrunedThrough)
		}
		if n, err := s.DeleteSnapshots(ctx, a.ID); err != nil || n != 3 {
			t.Errorf("DeleteSnapshots = %d, %v; want 3", n, err)
		}
		if n, err := s.DeleteSnapshots(ctx, a.ID); err != nil || n != 0 {
			t.Errorf("second DeleteSnapshots = %d, %v; want 0", n, err)
		}
		if n, err := s.DeleteSnapshots(ctx, "nope"); err != nil || n != 0 {
			t.Errorf("DeleteSnapshots(invalid id) = %d, %v; want 0", n, err)
		}
		if after := mustGetRoom(t, s, a.ID); !sameRoom(after, before) {
			t.Errorf("room changed by DeleteSnapshots: %+v, was %+v", after, before)
		}
		if ops := mustOpsSince(t, s, a.ID, 0, 0); len(ops) != 7 || ops[0].Seq != 4 {
			t.Errorf("after DeleteSnapshots: %d ops, want 7 from seq 4", len(ops))
		}
		if st, err := s.RoomSnapshotStats(ctx, a.ID); err != nil || st.Count != 0 || st.Latest != nil {
			t.Errorf("RoomSnapshotStats after delete = %+v, %v", st, err)
		}
		if tot, err := s.SnapshotTotals(ctx); err != nil || tot != (store.SnapshotTotals{Rooms: 1, Snapshots: 1, Bytes: 7}) {
			t.Errorf("SnapshotTotals after delete = %+v, %v", tot, err)
		}
		// A fresh snapshot at a lower version than pruned_through (after a
		// clear) does not lower it.
		mustInsertSnapshot(t, s, store.NewSnapshot{RoomID: a.ID, Version: 2, Trigger: "clear", Data: []byte("x")}, 10)
		if r := mustGetRoom(t, s, a.ID); r.PrunedThrough != 3 {
			t.Errorf("pruned_through = %d after a snapshot at 2, want 3", r.PrunedThrough)
		}

		// Deleting a room deletes its snapshots.
		bSnaps, _ := s.ListSnapshots(ctx, b.ID)
		if err := s.DeleteRoom(ctx, b.ID, nil); err != nil {
			t.Fatal(err)
		}
		var rows int
		if err := rawDB(t, cfg).QueryRowContext(ctx, `SELECT count(*) FROM snapshots WHERE room_id = '`+b.ID+`'`).Scan(&rows); err != nil {
			t.Fatal(err)
		}
		if rows != 0 {
			t.Errorf("%d snapshots of the deleted room left", rows)
		}
		if _, err := s.GetSnapshot(ctx, b.ID, bSnaps[0].ID); !errors.Is(err, store.ErrSnapshotNotFound) {
			t.Errorf("GetSnapshot of a deleted room's snapshot: %v, want ErrSnapshotNotFound", err)
		}
		if tot, err := s.SnapshotTotals(ctx); err != nil || tot != (store.SnapshotTotals{Rooms: 1, Snapshots: 1, Bytes: 1}) {
			t.Errorf("SnapshotTotals after DeleteRoom = %+v, %v", tot, err)
		}
	})
}

// Writers and snapshotters on one room, from two stores: the log always
// holds exactly the ops after pruned_through, which never passes the oldest
// kept snapshot.
func TestSnapshotsConcurrentWithAppends(t *testing.T) {
	t.Parallel()
	storetest.Dialects(t, func(t *testing.T, cfg store.Config) {
		ctx := context.Background()
		s1 := mustOpen(t, cfg)
		s2 := mustOpen(t, cfg)
		room := mustCreateRoom(t, s1, "busy")
		const keep = 2

		var wg sync.WaitGroup
		errs := make(chan error, 8)
		var mu sync.Mutex
		versions := map[int64]bool{} // the versions snapshotted, by either store
		for w := range 2 {
			s := []*store.Store{s1, s2}[w]
			wg.Go(func() { // writer
				for range 40 {
					for {
						r, err := s.GetRoom(ctx, room.ID)
						if err != nil {
							errs <- err
							return
						}
						_, err = s.AppendOps(ctx, store.Append{RoomID: room.ID, ExpectedVersion: r.Version, Writes: []store.AppendWrite{{Ops: makeOps(fmt.Sprint(r.Version), 3)}}})
						var mismatch *store.VersionMismatchError
						if errors.As(err, &mismatch) {
							continue
						}
						if err != nil {
							errs <- err
							return
						}
						break
					}
				}
			})
			wg.Go(func() { // snapshotter
				for range 15 {
					r, err := s.GetRoom(ctx, room.ID)
					if err != nil {
						errs <- err
						return
					}
					_, _, err = s.InsertSnapshot(ctx, store.NewSnapshot{RoomID: room.ID, Version: r.Version, Trigger: "interval", Data: make([]byte, 1000)}, keep)
					if err != nil && !errors.Is(err, store.ErrSnapshotExists) { // the other one took this version
						errs <- err
						return
					}
					mu.Lock()
					versions[r.Version] = true
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}

		r := mustGetRoom(t, s1, room.ID)
		if r.Version != 2*40*3 {
			t.Errorf("version = %d, want %d", r.Version, 2*40*3)
		}
		list, err := s2.ListSnapshots(ctx, room.ID)
		if err != nil {
			t.Fatal(err)
		}
		// When the writers finish first, every snapshot is of one version.
		if want := min(keep, len(versions)); len(list) != want {
			t.Fatalf("%d snapshots kept, want %d (of %d versions snapshotted)", len(list), want, len(versions))
		}
		if oldest := list[len(list)-1].Version; r.PrunedThrough != oldest {
			t.Errorf("pruned_through = %d, oldest kept snapshot at %d", r.PrunedThrough, oldest)
		}
		ops := mustOpsSince(t, s2, room.ID, 0, 0)
		if int64(len(ops)) != r.Version-r.PrunedThrough {
			t.Fatalf("%d ops, want %d", len(ops), r.Version-r.PrunedThrough)
		}
		for i, op := range ops {
			if op.Seq != r.PrunedThrough+1+int64(i) {
				t.Fatalf("ops[%d].Seq = %d: gap or duplicate", i, op.Seq)
			}
		}
	})
}
