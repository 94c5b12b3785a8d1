package store_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/liveshare/liveshare/migrations"
	"github.com/liveshare/liveshare/store"
	"github.com/liveshare/liveshare/store/storetest"
)

// migrationFiles lists the embedded migrations, oldest first.
func migrationFiles(t *testing.T) []string {
	t.Helper()
	files, err := fs.Glob(migrations.SQLite, "*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("embedded migrations: %v, %v", files, err)
	}
	return files
}

// mustOpen opens a store on cfg and closes it when the test ends.
func mustOpen(t *testing.T, cfg store.Config) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func mustCreateRoom(t *testing.T, s *store.Store, name string) store.Room {
	t.Helper()
	r, err := s.CreateRoom(context.Background(), name)
	if err != nil {
		t.Fatalf("CreateRoom: %v", err)
	}
	return r
}

func mustAppend(t *testing.T, s *store.Store, a store.Append) store.AppendResult {
	t.Helper()
	res, err := s.AppendOps(context.Background(), a)
	if err != nil {
		t.Fatalf("AppendOps: %v", err)
	}
	return res
}

func mustOpsSince(t *testing.T, s *store.Store, roomID string, since int64, limit int) []store.OpRecord {
	t.Helper()
	ops, err := s.OpsSince(context.Background(), roomID, since, limit)
	if err != nil {
		t.Fatalf("OpsSince: %v", err)
	}
	return ops
}

// makeOps returns n distinct encoded ops, tagged with tag.
func makeOps(tag string, n int) []json.RawMessage {
	ops := make([]json.RawMessage, n)
	for i := range ops {
		ops[i] = json.RawMessage(fmt.Sprintf(`{"op":"add_node","node":{"id":"%s-%d","kind":"note","label":"","x":0,"y":0,"data":{}}}`, tag, i))
	}
	return ops
}

// rawDB opens the database cfg names directly, to tamper with it.
func rawDB(t *testing.T, cfg store.Config) *sql.DB {
	t.Helper()
	driver, dsn := "postgres", cfg.DatabaseURL
	if dsn == "" {
		driver, dsn = "sqlite", filepath.Join(cfg.DataDir, "liveshare.db")
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func sameRoom(a, b store.Room) bool {
	return a.ID == b.ID && a.Name == b.Name && a.Version == b.Version && a.ElementCount == b.ElementCount && a.PrunedThrough == b.PrunedThrough &&
		a.CreatedAt.Equal(b.CreatedAt) && a.UpdatedAt.Equal(b.UpdatedAt)
}

func TestRooms(t *testing.T) {
	t.Parallel()
	storetest.Dialects(t, func(t *testing.T, cfg store.Config) {
		ctx := context.Background()
		s := mustOpen(t, cfg)

		created := mustCreateRoom(t, s, "schema review")
		if _, err := uuid.Parse(created.ID); err != nil {
			t.Errorf("id %q is no UUID: %v", created.ID, err)
		}
		if created.Version != 0 || created.ElementCount != 0 || created.PrunedThrough != 0 || created.Name != "schema review" {
			t.Errorf("created = %+v, want version 0, no elements, the name", created)
		}
		got, err := s.GetRoom(ctx, created.ID)
		if err != nil {
			t.Fatalf("GetRoom: %v", err)
		}
		if !sameRoom(got, created) {
			t.Errorf("GetRoom = %+v, want %+v", got, created)
		}
		// Ids are UUIDs, whatever their spelling.
		if got, err := s.GetRoom(ctx, strings.ToUpper(created.ID)); err != nil || got.ID != created.ID {
			t.Errorf("GetRoom(upper-case id) = %+v, %v; want the room", got, err)
		}

		for _, id := range []string{uuid.NewString(), "not-a-uuid", ""} {
			if _, err := s.GetRoom(ctx, id); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("GetRoom(%q) error = %v, want ErrNotFound", id, err)
			}
			if err := s.DeleteRoom(ctx, id, nil); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("DeleteRoom(%q) error = %v, want ErrNotFound", id, err)
			}
		}
	})
}

func TestListRooms(t *testing.T) {
	t.Parallel()
	storetest.Dialects(t, func(t *testing.T, cfg store.Config) {
		ctx := context.Background()
		s := mustOpen(t, cfg)

		rooms, next, err := s.ListRooms(ctx, 10, "")
		if err != nil || len(rooms) != 0 || next != "" {
			t.Fatalf("ListRooms on empty store = %v, %q, %v; want nothing", rooms, next, err)
		}

		// Same created_at for several rooms must still page exactly: fix the clock.
		var (
			mu  sync.Mutex
			now = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
		)
		store.SetClock(s, func() time.Time {
			mu.Lock()
			defer mu.Unlock()
			return now
		})
		const n = 23
		var want []string // newest first
		for i := range n {
			if i%3 == 0 { // groups of three rooms share a timestamp
				mu.Lock()
				now = now.Add(time.Millisecond)
				mu.Unlock()
			}
			want = append(want, mustCreateRoom(t, s, fmt.Sprintf("room %d", i)).ID)
		}
		// Expected order: created_at desc, then id desc.
		wantOrder := make([]string, 0, n)
		for g := (n - 1) / 3; g >= 0; g-- {
			group := append([]string(nil), want[g*3:min(g*3+3, n)]...)
			for i := range group {
				for j := i + 1; j < len(group); j++ {
					if group[j] > group[i] {
						group[i], group[j] = group[j], group[i]
					}
				}
			}
			wantOrder = append(wantOrder, group...)
		}

		var gotOrder []string
		cursor, pages := "", 0
		for {
			rooms, next, err := s.ListRooms(ctx, 5, cursor)
			if err != nil {
				t.Fatalf("ListRooms page %d: %v", pages, err)
			}
			pages++
			if len(rooms) > 5 || (next != "" && len(rooms) != 5) {
				t.Fatalf("page %d has %d rooms, next %q", pages, len(rooms), next)
			}
			for _, r := range rooms {
				gotOrder = append(gotOrder, r.ID)
			}
			if next == "" {
				break
			}
			if pages > n {
				t.Fatal("pagination does not end")
			}
			cursor = next
		}
		if got, want := pages, 5; got != want {
			t.Errorf("pages = %d, want %d", got, want)
		}
		if got, want := strings.Join(gotOrder, ","), strings.Join(wantOrder, ","); got != want {
			t.Errorf("order:\n got %s\nwant %s", got, want)
		}

		// An exact multiple of the limit ends without an empty page.
		if rooms, next, err := s.ListRooms(ctx, n, ""); err != nil || len(rooms) != n || next != "" {
			t.Errorf("ListRooms(limit %d) = %d rooms, next %q, %v; want all, no next", n, len(rooms), next, err)
		}
		// Default limit.
		if rooms, _, err := s.ListRooms(ctx, 0, ""); err != nil || len(rooms) != n {
			t.Errorf("ListRooms(limit 0) = %d rooms, %v; want %d", len(rooms), err, n)
		}

		for _, cursor := range []string{"!!!", "bm90LWEtY3Vyc29y", "MTIzOm5vdC1hLXV1aWQ", "eDpmMjFmNjQ5Ny1mNGUyLTQ3ZjgtYjc2Zi1mNjAyZWNkMWMzMGU"} {
			if _, _, err := s.ListRooms(ctx, 5, cursor); !errors.Is(err, store.ErrInvalidCursor) {
				t.Errorf("ListRooms(cursor %q) error = %v, want ErrInvalidCursor", cursor, err)
			}
		}
	})
}

func TestDeleteRoomCascades(t *testing.T) {
	t.Parallel()
	storetest.Dialects(t, func(t *testing.T, cfg store.Config) {
		ctx := context.Background()
		s := mustOpen(t, cfg)
		keep := mustCreateRoom(t, s, "keep")
		gone := mustCreateRoom(t, s, "gone")
		mustAppend(t, s, store.Append{RoomID: keep.ID, Writes: []store.AppendWrite{{Ops: makeOps("k", 3), IdempotencyKey: "k1"}}})
		mustAppend(t, s, store.Append{RoomID: gone.ID, Writes: []store.AppendWrite{{Ops: makeOps("g", 4), IdempotencyKey: "k1"}}})

		if err := s.DeleteRoom(ctx, gone.ID, nil); err != nil {
			t.Fatalf("DeleteRoom: %v", err)
		}
		if _, err := s.GetRoom(ctx, gone.ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetRoom after delete: %v, want ErrNotFound", err)
		}
		if err := s.DeleteRoom(ctx, gone.ID, nil); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("second DeleteRoom: %v, want ErrNotFound", err)
		}

		db := rawDB(t, cfg)
		for _, table := range []string{"ops", "idempotency_keys"} {
			var goneRows, keepRows int
			if err := db.QueryRowContext(ctx, `SELECT count(*) FROM `+table+` WHERE room_id = '`+gone.ID+`'`).Scan(&goneRows); err != nil {
				t.Fatal(err)
			}
			if err := db.QueryRowContext(ctx, `SELECT count(*) FROM `+table+` WHERE room_id = '`+keep.ID+`'`).Scan(&keepRows); err != nil {
				t.Fatal(err)
			}
			if goneRows != 0 || keepRows == 0 {
				t.Errorf("%s: %d rows of the deleted room, %d of the kept one; want 0 and some", table, goneRows, keepRows)
			}
		}
		if _, ok, err := s.IdempotentResult(ctx, gone.ID, "k1"); ok || err != nil {
			t.Errorf("IdempotentResult of deleted room = %v, %v; want none", ok, err)
		}
		if got := mustOpsSince(t, s, keep.ID, 0, 0); len(got) != 3 {
			t.Errorf("kept room has %d ops, want 3", len(got))
		}
	})
}

func TestAppendOps(t *testing.T) {
	t.Parallel()
	storetest.Dialects(t, func(t *testing.T, cfg store.Config) {
		ctx := context.Background()
		s := mustOpen(t, cfg)
		room := mustCreateRoom(t, s, "r")

		first := makeOps("a", 3)
		// Bytes are stored exactly as given, key order and spacing included.
		first[1] = json.RawMessage(`{ "op":"remove_node",  "id":"x" }`)
		res := mustAppend(t, s, store.Append{RoomID: room.ID, ExpectedVersion: 0, ElementCount: 2, Writes: []store.AppendWrite{{Ops: first, ClientID: "alice"}}})
		if res.Version != 3 || res.Applied != 3 {
			t.Errorf("first append = %+v, want version 3, 3 applied", res)
		}
		// The result's time is the one the log returns for these ops.
		if logged, err := s.OpsSince(ctx, room.ID, 0, 1); err != nil || !logged[0].CreatedAt.Equal(res.CreatedAt) {
			t.Errorf("append answered created_at %v, the log has %v (%v)", res.CreatedAt, logged, err)
		}
		res = mustAppend(t, s, store.Append{RoomID: room.ID, ExpectedVersion: 3, ElementCount: 4, Writes: []store.AppendWrite{{Ops: makeOps("b", 2), ClientID: "bob"}}})
		if res.Version != 5 || res.Applied != 2 {
			t.Errorf("second append = %+v, want version 5, 2 applied", res)
		}

		got, err := s.GetRoom(ctx, room.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Version != 5 || got.ElementCount != 4 {
			t.Errorf("room = %+v, want version 5, element_count 4", got)
		}
		if got.UpdatedAt.Before(got.CreatedAt) {
			t.Errorf("updated_at %v before created_at %v", got.UpdatedAt, got.CreatedAt)
		}

		ops := mustOpsSince(t, s, room.ID, 0, 0)
		if len(ops) != 5 {
			t.Fatalf("OpsSince(0) = %d ops, want 5", len(ops))
		}
		want := append(append([]json.RawMessage(nil), first...), makeOps("b", 2)...)
		for i, op := range ops {
			if op.Seq != int64(i+1) {
				t.Errorf("ops[%d].Seq = %d, want %d", i, op.Seq, i+1)
			}
			if string(op.Op) != string(want[i]) {
				t.Errorf("ops[%d].Op = %s, want %s", i, op.Op, want[i])
			}
			if wantClient := map[bool]string{true: "alice", false: "bob"}[i < 3]; op.ClientID != wantClient {
				t.Errorf("ops[%d].ClientID = %q, want %q", i, op.ClientID, wantClient)
			}
			if op.CreatedAt.Location() != time.UTC || op.CreatedAt.IsZero() {
				t.Errorf("ops[%d].CreatedAt = %v, want a UTC time", i, op.CreatedAt)
			}
		}

		// A batch larger than one INSERT statement.
		res = mustAppend(t, s, store.Append{RoomID: room.ID, ExpectedVersion: 5, Writes: []store.AppendWrite{{Ops: makeOps("c", 1000)}}})
		if res.Version != 1005 || res.Applied != 1000 {
			t.Errorf("1000-op append = %+v", res)
		}
		ops = mustOpsSince(t, s, room.ID, 5, 0)
		if len(ops) != 1000 || ops[0].Seq != 6 || ops[999].Seq != 1005 {
			t.Errorf("1000-op batch read back as %d ops", len(ops))
		}

		if _, err := s.AppendOps(ctx, store.Append{RoomID: room.ID, ExpectedVersion: 1005}); err == nil {
			t.Error("AppendOps without ops succeeded")
		}
	})
}

func TestAppendOpsVersionMismatch(t *testing.T) {
	t.Parallel()
	storetest.Dialects(t, func(t *testing.T, cfg store.Config) {
		ctx := context.Background()
		s := mustOpen(t, cfg)
		room := mustCreateRoom(t, s, "r")
		mustAppend(t, s, store.Append{RoomID: room.ID, ElementCount: 2, Writes: []store.AppendWrite{{Ops: makeOps("a", 2)}}})
		before, err := s.GetRoom(ctx, room.ID)
		if err != nil {
			t.Fatal(err)
		}

		for _, expected := range []int64{0, 1, 3} {
			_, err := s.AppendOps(ctx, store.Append{RoomID: room.ID, ExpectedVersion: expected, ElementCount: 9, Writes: []store.AppendWrite{{Ops: makeOps("b", 1), IdempotencyKey: "k"}}})
			var mismatch *store.VersionMismatchError
			if !errors.As(err, &mismatch) {
				t.Fatalf("AppendOps(expected %d) error = %v, want *VersionMismatchError", expected, err)
			}
			if mismatch.Current != 2 {
				t.Errorf("Current = %d, want 2", mismatch.Current)
			}
		}
		after, err := s.GetRoom(ctx, room.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !sameRoom(after, before) {
			t.Errorf("room changed by rejected appends: %+v, was %+v", after, before)
		}
		if got := mustOpsSince(t, s, room.ID, 0, 0); len(got) != 2 {
			t.Errorf("%d ops after rejected appends, want 2", len(got))
		}
		// The key of a rejected append was not recorded.
		if _, ok, err := s.IdempotentResult(ctx, room.ID, "k"); ok || err != nil {
			t.Errorf("IdempotentResult after rejected append = %v, %v; want none", ok, err)
		}
	})
}

func TestAppendOpsUnknownRoom(t *testing.T) {
	t.Parallel()
	storetest.Dialects(t, func(t *testing.T, cfg store.Config) {
		ctx := context.Background()
		s := mustOpen(t, cfg)
		for _, id := range []string{uuid.NewString(), "nope"} {
			_, err := s.AppendOps(ctx, store.Append{RoomID: id, Writes: []store.AppendWrite{{Ops: makeOps("a", 1), IdempotencyKey: "k"}}})
			if !errors.Is(err, store.ErrNotFound) {
				t.Errorf("AppendOps(%q) error = %v, want ErrNotFound", id, err)
			}
			if ops := mustOpsSince(t, s, id, 0, 0); len(ops) != 0 {
				t.Errorf("OpsSince(%q) = %d ops, want none", id, len(ops))
			}
		}
	})
}

func TestIdempotencyKeys(t *testing.T) {
	t.Parallel()
	storetest.Dialects(t, func(t *testing.T, cfg store.Config) {
		ctx := context.Background()
		s := mustOpen(t, cfg)
		var (
			mu  sync.Mutex
			now = time.Now()
		)
		store.SetClock(s, func() time.Time { mu.Lock(); defer mu.Unlock(); return now })
		advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

		room := mustCreateRoom(t, s, "r")
		other := mustCreateRoom(t, s, "other")

		if _, ok, err := s.IdempotentResult(ctx, room.ID, "key-1"); ok || err != nil {
			t.Fatalf("IdempotentResult of unused key = %v, %v", ok, err)
		}
		first := mustAppend(t, s, store.Append{RoomID: room.ID, Writes: []store.AppendWrite{{Ops: makeOps("a", 3), IdempotencyKey: "key-1"}}})
		got, ok, err := s.IdempotentResult(ctx, room.ID, "key-1")
		if err != nil || !ok || got.Version != first.Version || got.Applied != first.Applied {
			t.Fatalf("IdempotentResult = %+v, %v, %v; want %+v", got, ok, err, first)
		}

		// The same key again, at the right version: refused, nothing appended.
		_, err = s.AppendOps(ctx, store.Append{RoomID: room.ID, ExpectedVersion: 3, Writes: []store.AppendWrite{{Ops: makeOps("b", 1), IdempotencyKey: "key-1"}}})
		if !errors.Is(err, store.ErrIdempotencyKeyUsed) {
			t.Fatalf("reused key error = %v, want ErrIdempotencyKeyUsed", err)
		}
		// At a stale version nothing is checked but the version: the caller
		// looks keys up once it caught up.
		_, err = s.AppendOps(ctx, store.Append{RoomID: room.ID, ExpectedVersion: 0, Writes: []store.AppendWrite{{Ops: makeOps("b", 1), IdempotencyKey: "key-1"}}})
		var mismatch *store.VersionMismatchError
		if !errors.As(err, &mismatch) {
			t.Fatalf("reused key at stale version error = %v, want *VersionMismatchError", err)
		}
		if r, _ := s.GetRoom(ctx, room.ID); r.Version != 3 {
			t.Errorf("version after reused key = %d, want 3", r.Version)
		}
		if ops := mustOpsSince(t, s, room.ID, 0, 0); len(ops) != 3 {
			t.Errorf("%d ops after reused key, want 3", len(ops))
		}

		// Keys are per room.
		if _, ok, _ := s.IdempotentResult(ctx, other.ID, "key-1"); ok {
			t.Error("key of one room found on another")
		}
		mustAppend(t, s, store.Append{RoomID: other.ID, Writes: []store.AppendWrite{{Ops: makeOps("o", 1), IdempotencyKey: "key-1"}}})

		// After 24 h the key is forgotten and may be used again.
		advance(24*time.Hour + time.Second)
		if _, ok, err := s.IdempotentResult(ctx, room.ID, "key-1"); ok || err != nil {
			t.Errorf("IdempotentResult after 24 h = %v, %v; want none", ok, err)
		}
		again := mustAppend(t, s, store.Append{RoomID: room.ID, ExpectedVersion: 3, Writes: []store.AppendWrite{{Ops: makeOps("c", 2), IdempotencyKey: "key-1"}}})
		if got, ok, _ := s.IdempotentResult(ctx, room.ID, "key-1"); !ok || got.Version != again.Version || got.Applied != again.Applied {
			t.Errorf("IdempotentResult of reused expired key = %+v, %v; want %+v", got, ok, again)
		}
		// Pruning deletes the expired key of the other room, and only it.
		if n, err := s.PruneIdempotencyKeys(ctx); err != nil || n != 1 {
			t.Errorf("PruneIdempotencyKeys = %d, %v; want 1 (the other room's expired key)", n, err)
		}
		if _, ok, _ := s.IdempotentResult(ctx, room.ID, "key-1"); !ok {
			t.Error("pruning deleted a key that is still valid")
		}
	})
}

// Many writers on one room, each retrying on a version mismatch: the log ends
// with seqs 1..N, no gap, no duplicate, every op exactly once.
func TestAppendOpsConcurrent(t *testing.T) {
	t.Parallel()
	storetest.Dialects(t, func(t *testing.T, cfg store.Config) {
		ctx := context.Background()
		// Two stores on one database stand for two LiveShare instances.
		s1 := mustOpen(t, cfg)
		s2 := mustOpen(t, cfg)
		room := mustCreateRoom(t, s1, "busy")

		const writers, appends = 8, 50
		var wg sync.WaitGroup
		errs := make(chan error, writers)
		for w := range writers {
			s := s1
			if w%2 == 1 {
				s = s2
			}
			wg.Go(func() {
				for i := range appends {
					op := json.RawMessage(fmt.Sprintf(`{"w":%d,"i":%d}`, w, i))
					version := int64(0)
					for {
						_, err := s.AppendOps(ctx, store.Append{RoomID: room.ID, ExpectedVersion: version, Writes: []store.AppendWrite{{Ops: []json.RawMessage{op}, ClientID: fmt.Sprint(w)}}})
						var mismatch *store.VersionMismatchError
						if errors.As(err, &mismatch) {
							r, err := s.GetRoom(ctx, room.ID)
							if err != nil {
								errs <- err
								return
							}
							version = r.Version
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
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}

		const n = writers * appends
		r, err := s1.GetRoom(ctx, room.ID)
		if err != nil {
			t.Fatal(err)
		}
		if r.Version != n {
			t.Errorf("version = %d, want %d", r.Version, n)
		}
		ops := mustOpsSince(t, s2, room.ID, 0, 0)
		if len(ops) != n {
			t.Fatalf("%d ops, want %d", len(ops), n)
		}
		seen := make(map[string]bool, n)
		lastOfWriter := make(map[string]int)
		for i, op := range ops {
			if op.Seq != int64(i+1) {
				t.Fatalf("ops[%d].Seq = %d: gap or duplicate", i, op.Seq)
			}
			if seen[string(op.Op)] {
				t.Fatalf("op %s logged twice", op.Op)
			}
			seen[string(op.Op)] = true
			// Each writer's ops are in its own order.
			var v struct{ W, I int }
			if err := json.Unmarshal(op.Op, &v); err != nil {
				t.Fatal(err)
			}
			if last, ok := lastOfWriter[op.ClientID]; ok && v.I != last+1 {
				t.Errorf("writer %s: op %d after %d", op.ClientID, v.I, last)
			}
			lastOfWriter[op.ClientID] = v.I
		}
	})
}

func TestOpsSince(t *testing.T) {
	t.Parallel()
	storetest.Dialects(t, func(t *testing.T, cfg store.Config) {
		s := mustOpen(t, cfg)
		room := mustCreateRoom(t, s, "r")
		mustAppend(t, s, store.Append{RoomID: room.ID, Writes: []store.AppendWrite{{Ops: makeOps("a", 10)}}})

		tests := []struct {
			since     int64
			limit     int
			wantFirst int64
			wantN     int
		}{
			{since: 0, limit: 0, wantFirst: 1, wantN: 10},
			{since: 0, limit: -1, wantFirst: 1, wantN: 10},
			{since: 4, limit: 0, wantFirst: 5, wantN: 6},
			{since: 4, limit: 3, wantFirst: 5, wantN: 3},
			{since: 8, limit: 5, wantFirst: 9, wantN: 2},
			{since: 10, limit: 0, wantN: 0},
			{since: 99, limit: 0, wantN: 0},
		}
		for _, tt := range tests {
			ops := mustOpsSince(t, s, room.ID, tt.since, tt.limit)
			if len(ops) != tt.wantN {
				t.Errorf("OpsSince(%d, %d) = %d ops, want %d", tt.since, tt.limit, len(ops), tt.wantN)
				continue
			}
			if ops == nil {
				t.Errorf("OpsSince(%d, %d) = nil, want an empty slice", tt.since, tt.limit)
			}
			for i, op := range ops {
				if op.Seq != tt.wantFirst+int64(i) {
					t.Errorf("OpsSince(%d, %d)[%d].Seq = %d, want %d", tt.since, tt.limit, i, op.Seq, tt.wantFirst+int64(i))
				}
			}
		}
	})
}

func TestMigrationsTwiceIsNoOp(t *testing.T) {
	t.Parallel()
	storetest.Dialects(t, func(t *testing.T, cfg store.Config) {
		ctx := context.Background()
		s1, err := store.Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		room := mustCreateRoom(t, s1, "survives")
		mustAppend(t, s1, store.Append{RoomID: room.ID, Writes: []store.AppendWrite{{Ops: makeOps("a", 2)}}})
		if err := s1.Close(); err != nil {
			t.Fatal(err)
		}

		s2 := mustOpen(t, cfg)
		if err := s2.Ready(ctx); err != nil {
			t.Errorf("Ready after second Open: %v", err)
		}
		got, err := s2.GetRoom(ctx, room.ID)
		if err != nil || got.Version != 2 {
			t.Errorf("room after second Open = %+v, %v", got, err)
		}
		var applied int
		if err := rawDB(t, cfg).QueryRowContext(ctx, `SELECT count(*) FROM goose_db_version WHERE version_id > 0`).Scan(&applied); err != nil {
			t.Fatal(err)
		}
		if want := len(migrationFiles(t)); applied != want {
			t.Errorf("goose_db_version has %d applied migrations, want %d", applied, want)
		}
	})
}

func TestNewerSchemaRefused(t *testing.T) {
	t.Parallel()
	storetest.Dialects(t, func(t *testing.T, cfg store.Config) {
		ctx := context.Background()
		s := mustOpen(t, cfg)
		if err := s.Ready(ctx); err != nil {
			t.Fatalf("Ready: %v", err)
		}

		// A newer LiveShare migrated this database: one version past the
		// newest embedded migration.
		files := migrationFiles(t)
		newest, _ := strconv.Atoi(strings.SplitN(files[len(files)-1], "_", 2)[0])
		db := rawDB(t, cfg)
		insert := fmt.Sprintf(`INSERT INTO goose_db_version (version_id, is_applied) VALUES (%d, true)`, newest+1)
		if cfg.DatabaseURL == "" {
			insert = fmt.Sprintf(`INSERT INTO goose_db_version (version_id, is_applied) VALUES (%d, 1)`, newest+1)
		}
		if _, err := db.ExecContext(ctx, insert); err != nil {
			t.Fatal(err)
		}

		if err := s.Ready(ctx); err == nil {
			t.Error("Ready on a newer schema succeeded")
		}
		_, err := store.Open(ctx, cfg)
		if err == nil {
			t.Fatal("Open on a newer schema succeeded")
		}
		if want := fmt.Sprintf("database schema version %d is newer than this binary knows (%d): upgrade LiveShare", newest+1, newest); !strings.Contains(err.Error(), want) {
			t.Errorf("Open error = %q, want it to say %q", err, want)
		}
	})
}

func TestTimestampsUTC(t *testing.T) {
	t.Parallel()
	storetest.Dialects(t, func(t *testing.T, cfg store.Config) {
		ctx := context.Background()
		if cfg.DatabaseURL != "" {
			// A session time zone far from UTC must not leak into results.
			u, err := url.Parse(cfg.DatabaseURL)
			if err != nil {
				t.Fatal(err)
			}
			q := u.Query()
			q.Set("timezone", "Asia/Kathmandu")
			u.RawQuery = q.Encode()
			cfg.DatabaseURL = u.String()
		}
		s := mustOpen(t, cfg)

		before := time.Now().Add(-time.Second)
		room := mustCreateRoom(t, s, "t")
		mustAppend(t, s, store.Append{RoomID: room.ID, Writes: []store.AppendWrite{{Ops: makeOps("a", 1)}}})
		after := time.Now().Add(time.Second)

		got, err := s.GetRoom(ctx, room.ID)
		if err != nil {
			t.Fatal(err)
		}
		ops := mustOpsSince(t, s, room.ID, 0, 0)
		listed, _, err := s.ListRooms(ctx, 1, "")
		if err != nil || len(listed) != 1 {
			t.Fatalf("ListRooms = %v, %v", listed, err)
		}
		for name, ts := range map[string]time.Time{
			"created room created_at": room.CreatedAt,
			"room created_at":         got.CreatedAt,
			"room updated_at":         got.UpdatedAt,
			"listed room created_at":  listed[0].CreatedAt,
			"op created_at":           ops[0].CreatedAt,
		} {
			if ts.Location() != time.UTC {
				t.Errorf("%s = %v, not in UTC", name, ts)
			}
			if ts.Before(before) || ts.After(after) {
				t.Errorf("%s = %v, want between %v and %v", name, ts, before, after)
			}
			if ts.Nanosecond()%1000 != 0 {
				t.Errorf("%s = %v, finer than microseconds", name, ts)
			}
		}
		if !got.CreatedAt.Equal(room.CreatedAt) || got.CreatedAt != room.CreatedAt {
			t.Errorf("created_at read back as %v, created as %v", got.CreatedAt, room.CreatedAt)
		}
	})
}

// A group of writes is one commit: consecutive seqs in the order of the
// writes, each write's client id on its ops, each key recording its own
// write's result.
func TestAppendGroup(t *testing.T) {
	t.Parallel()
	storetest.Dialects(t, func(t *testing.T, cfg store.Config) {
		ctx := context.Background()
		s := mustOpen(t, cfg)
		room := mustCreateRoom(t, s, "r")
		mustAppend(t, s, store.Append{RoomID: room.ID, Writes: []store.AppendWrite{{Ops: makeOps("a", 2)}}})

		res := mustAppend(t, s, store.Append{RoomID: room.ID, ExpectedVersion: 2, ElementCount: 7, Writes: []store.AppendWrite{
			{Ops: makeOps("b", 3), ClientID: "bob", IdempotencyKey: "kb"},
			{Ops: makeOps("c", 1), ClientID: "carol"},
			{Ops: makeOps("d", 2), ClientID: "dan", IdempotencyKey: "kd"},
		}})
		if res.Version != 8 || res.Applied != 6 {
			t.Fatalf("group = %+v, want version 8, 6 applied", res)
		}
		ops := mustOpsSince(t, s, room.ID, 2, 0)
		wantClients := []string{"bob", "bob", "bob", "carol", "dan", "dan"}
		for i, op := range ops {
			if op.Seq != int64(3+i) || op.ClientID != wantClients[i] || !op.CreatedAt.Equal(res.CreatedAt) {
				t.Errorf("op %d = seq %d, client %q, at %v; want %d, %q, %v", i, op.Seq, op.ClientID, op.CreatedAt, 3+i, wantClients[i], res.CreatedAt)
			}
		}
		got, err := s.IdempotentResults(ctx, room.ID, []string{"kb", "kd", "unused", ""})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got["kb"].Version != 5 || got["kb"].Applied != 3 || got["kd"].Version != 8 || got["kd"].Applied != 2 {
			t.Errorf("IdempotentResults = %+v; want kb at 5 (3 ops), kd at 8 (2 ops)", got)
		}
		if v, pruned, err := s.RoomVersion(ctx, room.ID); err != nil || v != 8 || pruned != 0 {
			t.Errorf("RoomVersion = %d, %d, %v; want 8, 0", v, pruned, err)
		}
		if r := mustGetRoom(t, s, room.ID); r.ElementCount != 7 {
			t.Errorf("element_count = %d, want 7", r.ElementCount)
		}

		// A group with a key still in use is refused whole.
		_, err = s.AppendOps(ctx, store.Append{RoomID: room.ID, ExpectedVersion: 8, Writes: []store.AppendWrite{
			{Ops: makeOps("e", 1)}, {Ops: makeOps("f", 1), IdempotencyKey: "kd"},
		}})
		if !errors.Is(err, store.ErrIdempotencyKeyUsed) {
			t.Fatalf("group reusing a live key: %v, want ErrIdempotencyKeyUsed", err)
		}
		if v, _, _ := s.RoomVersion(ctx, room.ID); v != 8 {
			t.Errorf("version after a refused group = %d, want 8", v)
		}
		// A write without ops is a caller's bug.
		if _, err := s.AppendOps(ctx, store.Append{RoomID: room.ID, ExpectedVersion: 8, Writes: []store.AppendWrite{{Ops: makeOps("g", 1)}, {}}}); err == nil {
			t.Error("a group with an empty write succeeded")
		}

		for _, id := range []string{uuid.NewString(), "nope"} {
			if _, _, err := s.RoomVersion(ctx, id); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("RoomVersion(%q) error = %v, want ErrNotFound", id, err)
			}
		}
		other := mustCreateRoom(t, s, "other")
		versions, err := s.RoomVersions(ctx, []string{room.ID, other.ID, uuid.NewString(), "nope"})
		if err != nil || len(versions) != 2 || versions[room.ID] != 8 || versions[other.ID] != 0 {
			t.Errorf("RoomVersions = %v, %v; want the two rooms at 8 and 0", versions, err)
		}
	})
}
