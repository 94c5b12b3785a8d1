package store_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/liveshare/liveshare/store"
	"github.com/liveshare/liveshare/store/storetest"
)

// TestStartNeedsTheKeys: a database with sealed rows does not open without
// their keys, and says which; plain rows stay readable beside sealed ones.
func TestStartNeedsTheKeys(t *testing.T) {
	t.Parallel()
	storetest.Dialects(t, func(t *testing.T, cfg store.Config) {
		ctx := context.Background()
		k1, k2 := newKey(t, "k1"), newKey(t, "k2")

		// Plain rows first, then sealed ones: a mixed database.
		plain := mustOpen(t, cfg)
		if _, err := plain.Rekey(ctx, 1, nil); !errors.Is(err, store.ErrNoKeys) {
			t.Errorf("Rekey without keys: %v, want ErrNoKeys", err)
		}
		room := mustCreateRoom(t, plain, "r")
		ops := secretOps(4)
		mustAppend(t, plain, store.Append{RoomID: room.ID, ElementCount: 2, Writes: []store.AppendWrite{{Ops: ops[:2]}}})
		plainSnap, _ := mustInsertSnapshot(t, plain, store.NewSnapshot{RoomID: room.ID, Version: 0, Trigger: "manual", Format: 1, Data: []byte("plain")}, 10)
		if err := plain.Close(); err != nil {
			t.Fatal(err)
		}
		sealed, err := store.Open(ctx, withKeys(cfg, mustKeyring(t, k1)))
		if err != nil {
			t.Fatal(err)
		}
		mustAppend(t, sealed, store.Append{RoomID: room.ID, ExpectedVersion: 2, ElementCount: 4, Writes: []store.AppendWrite{{Ops: ops[2:]}}})
		sealedSnap, _ := mustInsertSnapshot(t, sealed, store.NewSnapshot{RoomID: room.ID, Version: 1, Trigger: "manual", Format: 1, Data: []byte("sealed")}, 10)
		checkReadable(t, sealed, room.ID, ops, map[string]string{plainSnap.ID: "plain", sealedSnap.ID: "sealed"})
		if err := sealed.Close(); err != nil {
			t.Fatal(err)
		}

		for _, tc := range []struct {
			name string
			keys string
		}{
			{"no keys", ""},
			{"another key", k2},
		} {
			s, err := store.Open(ctx, withKeys(cfg, mustKeyring(t, tc.keys)))
			var missing *store.MissingKeysError
			if !errors.As(err, &missing) {
				if s != nil {
					s.Close()
				}
				t.Fatalf("Open with %s: %v, want a MissingKeysError", tc.name, err)
			}
			if got, want := fmt.Sprint(missing.IDs), "[k1]"; got != want {
				t.Errorf("Open with %s: missing %s, want %s", tc.name, got, want)
			}
			if msg := err.Error(); !bytes.Contains([]byte(msg), []byte("key ids k1,")) || bytes.ContainsRune([]byte(msg), '\n') {
				t.Errorf("Open with %s: error %q, want one line naming k1", tc.name, msg)
			}
		}

		// The new key first, the old one still there: everything opens.
		s := mustOpen(t, withKeys(cfg, mustKeyring(t, k2+","+k1)))
		checkReadable(t, s, room.ID, ops, map[string]string{plainSnap.ID: "plain", sealedSnap.ID: "sealed"})
	})
}

// checkReadable reads the room's ops and the given snapshots and compares
// them with what was stored.
func checkReadable(t *testing.T, s *store.Store, roomID string, ops []json.RawMessage, snaps map[string]string) {
	t.Helper()
	ctx := context.Background()
	got := mustOpsSince(t, s, roomID, 0, 0)
	if len(got) != len(ops) {
		t.Fatalf("OpsSince = %d ops, want %d", len(got), len(ops))
	}
	for _, r := range got {
		if !bytes.Equal(r.Op, ops[r.Seq-1]) {
			t.Errorf("op %d = %s, want %s", r.Seq, r.Op, ops[r.Seq-1])
		}
	}
	for id, want := range snaps {
		snap, err := s.GetSnapshot(ctx, roomID, id)
		if err != nil || string(snap.Data) != want {
			t.Errorf("GetSnapshot(%s) = %q, %v; want %q", id, snap.Data, err, want)
		}
	}
}

// TestRekeyWhileServing re-seals a mixed database (plain, k1) under k2 while
// writers append, snapshots are stored and trimmed (pruning the log) and
// readers read: no reader sees an error, and afterwards k1 is retired and
// everything opens with k2 alone.
func TestRekeyWhileServing(t *testing.T) {
	t.Parallel()
	storetest.Dialects(t, func(t *testing.T, cfg store.Config) {
		ctx := context.Background()
		k1, k2 := newKey(t, "k1"), newKey(t, "k2")
		const rooms = 3

		// Plain rows, then rows under k1, with chunked snapshots.
		var ids []string
		plain := mustOpen(t, cfg)
		for i := range rooms {
			r := mustCreateRoom(t, plain, fmt.Sprintf("r%d", i))
			ids = append(ids, r.ID)
			mustAppend(t, plain, store.Append{RoomID: r.ID, ElementCount: 20, Writes: []store.AppendWrite{{Ops: secretOps(20)}}})
		}
		if err := plain.Close(); err != nil {
			t.Fatal(err)
		}
		old := mustOpen(t, withKeys(cfg, mustKeyring(t, k1)))
		for _, id := range ids {
			mustAppend(t, old, store.Append{RoomID: id, ExpectedVersion: 20, ElementCount: 40, Writes: []store.AppendWrite{{Ops: secretOps(20)}}})
			mustInsertSnapshot(t, old, store.NewSnapshot{RoomID: id, Version: 5, Trigger: "manual", Format: 1, Data: secretSnapshot()}, 3)
		}
		if err := old.Close(); err != nil {
			t.Fatal(err)
		}

		// The instance serving, with the new key current.
		ring := mustKeyring(t, k2+","+k1)
		s := mustOpen(t, withKeys(cfg, ring))
		rk := mustOpen(t, withKeys(cfg, ring))

		serveCtx, stop := context.WithCancel(ctx)
		var (
			wg     sync.WaitGroup
			mu     sync.Mutex
			failed []error
		)
		fail := func(err error) {
			mu.Lock()
			failed = append(failed, err)
			mu.Unlock()
		}
		for i, id := range ids {
			// The first room's snapshots are trimmed and its log pruned as
			// it goes; the others keep theirs, so that rekey re-seals
			// snapshots that readers are reading.
			keep := 100
			if i == 0 {
				keep = 2
			}
			wg.Add(1)
			go func() { // writer and snapshotter of one room; ends with serveCtx
				defer wg.Done()
				version := int64(40)
				for serveCtx.Err() == nil {
					res, err := s.AppendOps(ctx, store.Append{RoomID: id, ExpectedVersion: version, ElementCount: version + 5,
						Writes: []store.AppendWrite{{Ops: secretOps(5)}}})
					if err != nil {
						fail(err)
						return
					}
					version = res.Version
					if _, _, err := s.InsertSnapshot(ctx, store.NewSnapshot{RoomID: id, Version: version, Trigger: "interval",
						Format: 1, Data: secretSnapshot()}, keep); err != nil {
						fail(err)
						return
					}
				}
			}()
			wg.Add(1)
			go func() { // reader of one room; ends with serveCtx
				defer wg.Done()
				for serveCtx.Err() == nil {
					metas, err := s.ListSnapshots(ctx, id)
					if err != nil {
						fail(err)
						return
					}
					for _, m := range metas {
						snap, err := s.GetSnapshot(ctx, id, m.ID)
						if errors.Is(err, store.ErrSnapshotNotFound) {
							continue // trimmed meanwhile
						}
						if err != nil {
							fail(fmt.Errorf("read snapshot during rekey: %w", err))
							return
						}
						if !bytes.Equal(snap.Data, secretSnapshot()) {
							fail(fmt.Errorf("snapshot %s read back wrong during rekey", m.ID))
							return
						}
					}
					_, prunedThrough, err := s.RoomVersion(ctx, id)
					if err != nil {
						fail(err)
						return
					}
					if _, err := s.OpsSince(ctx, id, prunedThrough, 0); err != nil {
						fail(fmt.Errorf("read ops during rekey: %w", err))
						return
					}
				}
			}()
		}

		batches := 0
		res, err := rk.Rekey(ctx, 7, func(store.RekeyProgress) { batches++ })
		stop()
		wg.Wait()
		if err != nil {
			t.Fatalf("Rekey: %v", err)
		}
		for _, err := range failed {
			t.Error(err)
		}
		if res.Ops == 0 || res.Snapshots < rooms-1 || batches < 2 || res.Unopenable != 0 {
			t.Errorf("Rekey = %+v after %d batches; want ops and snapshots re-sealed in batches", res, batches)
		}
		if res.Remaining != 0 || fmt.Sprint(res.Retired) != "[k1]" {
			t.Errorf("Rekey left %d rows, retired %v; want none left and k1 retired", res.Remaining, res.Retired)
		}

		// The new key alone opens everything; the old one is not needed.
		only := mustOpen(t, withKeys(cfg, mustKeyring(t, k2)))
		for _, id := range ids {
			_, prunedThrough, err := only.RoomVersion(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := only.OpsSince(ctx, id, prunedThrough, 0); err != nil {
				t.Errorf("OpsSince with the new key alone: %v", err)
			}
			metas, err := only.ListSnapshots(ctx, id)
			if err != nil || len(metas) == 0 {
				t.Fatalf("ListSnapshots = %v, %v", metas, err)
			}
			for _, m := range metas {
				if _, err := only.GetSnapshot(ctx, id, m.ID); err != nil {
					t.Errorf("GetSnapshot with the new key alone: %v", err)
				}
			}
		}
		if s, err := store.Open(ctx, withKeys(cfg, mustKeyring(t, k1))); err == nil {
			s.Close()
			t.Error("Open with the retired key alone succeeded; the database needs k2")
		}
	})
}

// TestRekeyLeavesWhatDoesNotOpen: a row that does not open is counted and
// left; no key is retired while it remains.
func TestRekeyLeavesWhatDoesNotOpen(t *testing.T) {
	t.Parallel()
	storetest.Dialects(t, func(t *testing.T, cfg store.Config) {
		ctx := context.Background()
		k1, k2 := newKey(t, "k1"), newKey(t, "k2")
		old := mustOpen(t, withKeys(cfg, mustKeyring(t, k1)))
		room, _ := mustSealedRoom(t, old)
		flipByte(t, rawDB(t, cfg), cfg, `SELECT sealed FROM ops WHERE room_id = ? AND seq = 2`, `UPDATE ops SET sealed = ? WHERE room_id = ? AND seq = 2`, room.ID)

		s := mustOpen(t, withKeys(cfg, mustKeyring(t, k2+","+k1)))
		res, err := s.Rekey(ctx, 100, nil)
		if err != nil {
			t.Fatalf("Rekey: %v", err)
		}
		if res.Ops != 2 || res.Snapshots != 2 || res.Unopenable != 1 || res.Remaining != 1 || len(res.Retired) != 0 {
			t.Errorf("Rekey = %+v; want 2 ops and 2 snapshots re-sealed, 1 left unopenable, nothing retired", res)
		}
		if s, err := store.Open(ctx, withKeys(cfg, mustKeyring(t, k2))); err == nil {
			s.Close()
			t.Error("Open without k1 succeeded while a row under k1 remains")
		}
	})
}
