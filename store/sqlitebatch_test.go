package store_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/liveshare/liveshare/store"
	"github.com/liveshare/liveshare/store/storetest"
)

// TestSQLiteRoomsShareACommit: group commits of different rooms that queue
// while one is in flight commit in one SQLite transaction, and each still
// gets its own outcome: a moved version, a used key or a missing room
// refuses that group alone, and changes nothing of it, while its
// neighbours commit.
func TestSQLiteRoomsShareACommit(t *testing.T) {
	t.Parallel()
	s := mustOpen(t, storetest.Config(t, "sqlite"))
	ctx := context.Background()
	ids := make([]string, 5)
	for i := range ids {
		r := mustCreateRoom(t, s, "r")
		ids[i] = r.ID
		mustAppend(t, s, store.Append{RoomID: r.ID, ExpectedVersion: 0, ElementCount: 1,
			Writes: []store.AppendWrite{{Ops: makeOps("first", 1), IdempotencyKey: "used"}}})
	}
	type call struct {
		name string
		a    store.Append
		want func(store.AppendResult, error) bool
	}
	ok := func(res store.AppendResult, err error) bool {
		return err == nil && res.Version == 2 && res.Applied == 1
	}
	calls := []call{
		{"lead (taken before the others queue)", store.Append{RoomID: ids[0], ExpectedVersion: 1, Writes: []store.AppendWrite{{Ops: makeOps("a", 1)}}}, ok},
		{"accepted", store.Append{RoomID: ids[1], ExpectedVersion: 1, Writes: []store.AppendWrite{{Ops: makeOps("b", 1), IdempotencyKey: "kb"}}}, ok},
		{"moved version", store.Append{RoomID: ids[2], ExpectedVersion: 0, Writes: []store.AppendWrite{{Ops: makeOps("c", 1)}}},
			func(_ store.AppendResult, err error) bool {
				var m *store.VersionMismatchError
				return errors.As(err, &m) && m.Current == 1
			}},
		{"used key", store.Append{RoomID: ids[3], ExpectedVersion: 1, Writes: []store.AppendWrite{{Ops: makeOps("d", 1), IdempotencyKey: "used"}}},
			func(_ store.AppendResult, err error) bool { return errors.Is(err, store.ErrIdempotencyKeyUsed) }},
		{"missing room", store.Append{RoomID: "00000000-0000-4000-8000-000000000000", ExpectedVersion: 1, Writes: []store.AppendWrite{{Ops: makeOps("e", 1)}}},
			func(_ store.AppendResult, err error) bool { return errors.Is(err, store.ErrNotFound) }},
		{"accepted after the refusals", store.Append{RoomID: ids[4], ExpectedVersion: 1, Writes: []store.AppendWrite{{Ops: makeOps("f", 1)}}}, ok},
	}

	release := store.HoldWriteTurn(s)
	var wg sync.WaitGroup
	results := make([]store.AppendResult, len(calls))
	errs := make([]error, len(calls))
	start := func(i int) {
		wg.Go(func() { results[i], errs[i] = s.AppendOps(ctx, calls[i].a) })
	}
	// The first call leads: it waits for the turn with its own job alone;
	// the rest queue behind it and are committed together after it.
	start(0)
	waitFor(t, "the leader to wait for its turn", func() bool { return store.QueuedCommits(s) == 0 })
	time.Sleep(20 * time.Millisecond) // let it reach the turn
	for i := 1; i < len(calls); i++ {
		start(i)
	}
	waitFor(t, "five commits to queue", func() bool { return store.QueuedCommits(s) == len(calls)-1 })
	release()
	wg.Wait()

	for i, c := range calls {
		if !c.want(results[i], errs[i]) {
			t.Errorf("%s: got %+v, %v", c.name, results[i], errs[i])
		}
	}
	wantVersion := []int64{2, 2, 1, 1, 2}
	for i, id := range ids {
		v, _, err := s.RoomVersion(ctx, id)
		if err != nil || v != wantVersion[i] {
			t.Errorf("room %d: version %d, %v; want %d", i, v, err, wantVersion[i])
		}
		if ops := mustOpsSince(t, s, id, 0, 0); int64(len(ops)) != wantVersion[i] {
			t.Errorf("room %d: %d ops in the log, want %d", i, len(ops), wantVersion[i])
		}
	}
	if got, err := s.IdempotentResults(ctx, ids[1], []string{"kb"}); err != nil || got["kb"].Version != 2 {
		t.Errorf("key kb of the accepted group: %+v, %v; want version 2", got, err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
