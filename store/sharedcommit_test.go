package store_test

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/liveshare/liveshare/store"
	"github.com/liveshare/liveshare/store/storetest"
)

// TestRoomsShareACommit: group commits of different rooms that queue
// while one is in flight commit in one transaction, and each still gets
// its own outcome: a moved version, a used key or a missing room refuses
// that group alone, and changes nothing of it, while its neighbours
// commit. On PostgreSQL a used key fails its statement, which ends the
// shared transaction: each group is then committed alone, with the same
// outcomes; without one, the accepted groups' ops are written by one
// transaction.
func TestRoomsShareACommit(t *testing.T) {
	t.Parallel()
	storetest.Dialects(t, func(t *testing.T, cfg store.Config) {
		for _, usedKey := range []bool{true, false} {
			name := "without a used key"
			if usedKey {
				name = "with a used key"
			}
			t.Run(name, func(t *testing.T) { testRoomsShareACommit(t, cfg, usedKey) })
		}
		// Sealed ops go through the same statements, with their own
		// columns.
		t.Run("sealed", func(t *testing.T) {
			testRoomsShareACommit(t, withKeys(cfg, mustKeyring(t, newKey(t, "k1"))), false)
		})
	})
}

func testRoomsShareACommit(t *testing.T, cfg store.Config, usedKey bool) {
	s := mustOpen(t, cfg)
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
	wantVersion := []int64{2, 2, 1, 1, 2}
	if !usedKey {
		calls[3].a.Writes[0].IdempotencyKey = "kd"
		calls[3].want, wantVersion[3] = ok, 2
	}

	// The leads (one per batch that may be in flight) wait for their turn
	// (SQLite) or their rooms' rows (PostgreSQL); the rest queue behind
	// them and are committed together after them.
	leads := store.BatchesInFlight(s)
	var release func()
	if cfg.DatabaseURL == "" {
		release = store.HoldWriteTurn(s)
	} else {
		release = storetest.HoldLocks(t, cfg, "SELECT 1 FROM rooms WHERE id IN ('"+ids[0]+"', '"+ids[1]+"') FOR NO KEY UPDATE")
	}
	var wg sync.WaitGroup
	results := make([]store.AppendResult, len(calls))
	errs := make([]error, len(calls))
	start := func(i int) {
		wg.Go(func() { results[i], errs[i] = s.AppendOps(ctx, calls[i].a) })
	}
	for i := range leads {
		start(i)
		waitFor(t, "a lead to take its job", func() bool { return store.QueuedCommits(s) == 0 })
		time.Sleep(20 * time.Millisecond) // let it reach the wait
	}
	for i := leads; i < len(calls); i++ {
		start(i)
	}
	waitFor(t, "the other commits to queue", func() bool { return store.QueuedCommits(s) == len(calls)-leads })
	release()
	wg.Wait()

	for i, c := range calls {
		if !c.want(results[i], errs[i]) {
			t.Errorf("%s: got %+v, %v", c.name, results[i], errs[i])
		}
	}
	for i, id := range ids {
		v, _, err := s.RoomVersion(ctx, id)
		if err != nil || v != wantVersion[i] {
			t.Errorf("room %d: version %d, %v; want %d", i, v, err, wantVersion[i])
		}
		if ops := mustOpsSince(t, s, id, 0, 0); int64(len(ops)) != wantVersion[i] {
			t.Errorf("room %d: %d ops in the log, want %d", i, len(ops), wantVersion[i])
		}
	}
	// Each accepted group's op reads back as written, with the time its
	// commit answered.
	for i, c := range calls {
		if errs[i] != nil {
			continue
		}
		ops := mustOpsSince(t, s, c.a.RoomID, 1, 0)
		if len(ops) != 1 || string(ops[0].Op) != string(c.a.Writes[0].Ops[0]) || ops[0].Seq != 2 ||
			!ops[0].CreatedAt.Equal(results[i].CreatedAt) {
			t.Errorf("%s: the log holds %+v after version 1; want its op at seq 2, written at %v", c.name, ops, results[i].CreatedAt)
		}
	}
	if got, err := s.IdempotentResults(ctx, ids[1], []string{"kb"}); err != nil || got["kb"].Version != 2 {
		t.Errorf("key kb of the accepted group: %+v, %v; want version 2", got, err)
	}
	if cfg.DatabaseURL != "" && !usedKey {
		// The queued groups' ops rows carry the id of the transaction
		// that wrote them (rooms 3 and 4; 0 and 1 led).
		db, err := sql.Open("postgres", cfg.DatabaseURL)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var txs int
		err = db.QueryRowContext(ctx, `SELECT count(DISTINCT xmin::text) FROM ops WHERE seq = 2 AND room_id = ANY($1)`,
			pq.Array([]string{ids[3], ids[4]})).Scan(&txs)
		if err != nil || txs != 1 {
			t.Errorf("the two queued accepted groups were written by %d transactions (%v), want 1", txs, err)
		}
		// A plain op has no sealed payload; a sealed one has no plain.
		var mixed int
		err = db.QueryRowContext(ctx, `SELECT count(*) FROM ops WHERE room_id = ANY($1) AND (key_id = '') <> (sealed IS NULL AND op <> '')`,
			pq.Array(ids)).Scan(&mixed)
		if err != nil || mixed != 0 {
			t.Errorf("%d ops rows mix plain and sealed columns (%v)", mixed, err)
		}
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

// TestInstancesShareCommitsWithoutDeadlocks: two instances on one
// PostgreSQL database commit batches of the same rooms, in whatever sets
// their writers queue; each batch locks its rooms in the order of their
// ids, so no two batches ever wait for each other in a cycle (PostgreSQL
// would abort one of them as a deadlock, after a second). Every write is
// in the log once.
func TestInstancesShareCommitsWithoutDeadlocks(t *testing.T) {
	t.Parallel()
	cfg := storetest.Config(t, "postgres")
	instances := []*store.Store{mustOpen(t, cfg), mustOpen(t, cfg)}
	ctx := context.Background()
	const rooms, writes = 16, 40
	ids := make([]string, rooms)
	for i := range ids {
		ids[i] = mustCreateRoom(t, instances[0], "r").ID
	}
	// One writer per room and instance: a room has one group in flight
	// per instance, as with its sequencer, and the two instances' writers
	// of a room race for its versions.
	var wg sync.WaitGroup
	for _, s := range instances {
		for _, id := range ids {
			wg.Go(func() {
				for range writes {
					for {
						v, _, err := s.RoomVersion(ctx, id)
						if err != nil {
							t.Errorf("room %s: version: %v", id, err)
							return
						}
						_, err = s.AppendOps(ctx, store.Append{RoomID: id, ExpectedVersion: v, ElementCount: 1,
							Writes: []store.AppendWrite{{Ops: makeOps("w", 1)}}})
						var moved *store.VersionMismatchError
						if errors.As(err, &moved) {
							continue
						}
						if err != nil {
							t.Errorf("room %s: append at %d: %v", id, v, err)
							return
						}
						break
					}
				}
			})
		}
	}
	wg.Wait()
	for _, id := range ids {
		if ops := mustOpsSince(t, instances[0], id, 0, 0); len(ops) != 2*writes {
			t.Errorf("room %s: %d ops in the log, want %d", id, len(ops), 2*writes)
		}
	}
	for i, s := range instances {
		shared, aborted := store.SharedBatches(s)
		t.Logf("instance %d: %d shared batches, %d refused", i, shared, aborted)
		if aborted != 0 {
			t.Errorf("instance %d: PostgreSQL refused %d of %d shared batches (deadlocks)", i, aborted, shared)
		}
		if shared == 0 {
			t.Errorf("instance %d: no shared batch: the test shows nothing", i)
		}
	}
}
