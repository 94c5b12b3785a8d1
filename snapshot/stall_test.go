package snapshot_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/liveshare/liveshare/graph"
	"github.com/liveshare/liveshare/room"
	"github.com/liveshare/liveshare/snapshot"
	"github.com/liveshare/liveshare/store"
	"github.com/liveshare/liveshare/store/storetest"
)

// stallingBlobs is a store whose snapshot reads wait, as a call on a stuck
// database connection does, until release is closed or their context ends.
type stallingBlobs struct {
	snapshot.Store
	release chan struct{}
}

func (s stallingBlobs) GetSnapshot(ctx context.Context, roomID, id string) (store.Snapshot, error) {
	select {
	case <-s.release:
		return s.Store.GetSnapshot(ctx, roomID, id)
	case <-ctx.Done():
		return store.Snapshot{}, fmt.Errorf("get snapshot %s: %w", id, ctx.Err())
	}
}

// TestStartEventHonoursDeadline: while the newest snapshot's blob cannot be
// read, new subscribers of the room give up at their deadline (or when
// they leave) instead of waiting for the shared build of the event with no
// end; once the database answers, the event is built.
func TestStartEventHonoursDeadline(t *testing.T) {
	ctx := context.Background()
	st := storetest.Open(t, "sqlite")
	info, err := st.CreateRoom(ctx, "stalled blobs")
	if err != nil {
		t.Fatal(err)
	}
	m := room.NewManager(st, room.Options{})
	t.Cleanup(m.Close)
	if _, err := m.Apply(ctx, info.ID, room.Write{Ops: []graph.Op{{Kind: graph.OpAddNode, Node: &graph.Node{ID: "a"}}}}); err != nil {
		t.Fatal(err)
	}
	r, err := m.Get(ctx, info.ID)
	if err != nil {
		t.Fatal(err)
	}
	cfg := snapshot.Config{Interval: time.Hour, Keep: 3, MaxBytes: 1 << 20}
	if _, err := snapshot.NewRegistry(st, cfg).Take(ctx, r, snapshot.TriggerManual); err != nil {
		t.Fatal(err)
	}

	stalled := stallingBlobs{Store: st, release: make(chan struct{})}
	t.Cleanup(func() {
		select {
		case <-stalled.release:
		default:
			close(stalled.release)
		}
	})
	reg := snapshot.NewRegistry(stalled, cfg) // a fresh process: nothing cached
	const deadline = 300 * time.Millisecond
	for i := range 2 { // the first starts the build, the second joins it
		done := make(chan error, 1)
		start := time.Now()
		go func() {
			sctx, cancel := context.WithTimeout(ctx, deadline)
			defer cancel()
			_, _, err := reg.StartEvent(sctx, info.ID)
			done <- err
		}()
		select {
		case err := <-done:
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("subscriber %d: StartEvent: %v, want its deadline", i, err)
			}
			if took := time.Since(start); took < deadline {
				t.Errorf("subscriber %d gave up after %s, before its deadline", i, took)
			}
		case <-time.After(deadline + 5*time.Second):
			t.Fatalf("subscriber %d: StartEvent still waits %s past its deadline", i, 5*time.Second)
		}
	}

	close(stalled.release)
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, version, err := reg.StartEvent(sctx, info.ID); err != nil || version != 1 {
		t.Fatalf("StartEvent once the database answers: version %d, %v", version, err)
	}
}
