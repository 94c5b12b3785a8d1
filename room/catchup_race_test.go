package room_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/liveshare/liveshare/graph"
	"github.com/liveshare/liveshare/room"
	"github.com/liveshare/liveshare/store"
	"github.com/liveshare/liveshare/store/storetest"
)

// racingStore is instance B's store: when armed, its next RoomVersion
// first lets instance A commit, as if A's commit landed between B's read
// of the op log and its read of the room's version.
type racingStore struct {
	*store.Store
	mu     sync.Mutex
	before func()
}

func (s *racingStore) RoomVersion(ctx context.Context, id string) (int64, int64, error) {
	s.mu.Lock()
	f := s.before
	s.before = nil
	s.mu.Unlock()
	if f != nil {
		f()
	}
	return s.Store.RoomVersion(ctx, id)
}

// A room catching up that finds nothing new in the log, and then the room
// past its version because another instance committed in between, must
// read the log again, not take the ops for pruned and reload: a reload
// without a snapshot republished every op from seq 1 to its subscribers.
// Found by TestPropGroupsEqualSequentialApplication with two instances.
func TestCatchUpRacingACommitPublishesEachOpOnce(t *testing.T) {
	storetest.Dialects(t, func(t *testing.T, cfg store.Config) {
		ctx := context.Background()
		stA := openStore(t, cfg)
		stB := &racingStore{Store: openStore(t, cfg)}
		id := mustRoom(t, stA)
		mA := room.NewManager(stA, room.Options{Shared: true})
		mB := room.NewManager(stB, room.Options{Shared: true, QueueSize: 100})
		t.Cleanup(func() { mA.Close(); mB.Close() })
		if _, err := mA.Apply(ctx, id, room.Write{Ops: []graph.Op{addNode("a1")}}); err != nil {
			t.Fatal(err)
		}
		_, join, err := mB.Subscribe(ctx, id, "watcher")
		if err != nil || join.Version != 1 {
			t.Fatalf("B subscribed at version %d: %v", join.Version, err)
		}

		var raced error
		stB.mu.Lock()
		stB.before = func() { _, raced = mA.Apply(ctx, id, room.Write{Ops: []graph.Op{addNode("a2")}}) }
		stB.mu.Unlock()
		// A base version past the room's makes B catch up to it first:
		// it reads the log (nothing after 1), then the version (2, A
		// committed meanwhile).
		base := int64(5)
		_, err = mB.Apply(ctx, id, room.Write{Ops: []graph.Op{addNode("b")}, BaseVersion: &base})
		if raced != nil {
			t.Fatal(raced)
		}
		if err == nil {
			t.Fatal("a write with base_version 5 was accepted at version 2")
		}
		rB, err := mB.Fresh(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if got := rB.Version(); got != 2 {
			t.Fatalf("B at version %d, want 2", got)
		}
		var events []string
		for len(join.Sub.C) > 0 {
			m := <-join.Sub.C
			events = append(events, fmt.Sprintf("%s@%d..%d", m.Event, m.First, m.Seq))
		}
		if got, want := fmt.Sprint(events), "[ops@2..2]"; got != want {
			t.Fatalf("B's subscriber, which joined at version 1, got %s, want %s", got, want)
		}
	})
}
