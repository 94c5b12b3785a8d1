package room

// The hub's queue bound and presence order are tested here, inside the
// package: through a Room they would need a store and could not set a
// small byte bound.

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/r3labs/sse/v2"

	"github.com/liveshare/liveshare/graph"
	"github.com/liveshare/liveshare/internal/sseframe"
)

// batchOf is one committed add_node op whose event data is about size bytes.
func batchOf(seq int64, size int) Batch {
	raw := json.RawMessage(fmt.Sprintf(`{"op":"add_node","node":{"id":"n%d","data":{"pad":%q}}}`, seq, strings.Repeat("x", size)))
	return Batch{Version: seq, Committed: time.Now(),
		Ops: []LoggedOp{{Seq: seq, Op: graph.Op{Kind: graph.OpAddNode}, Raw: raw, ClientID: "c"}}}
}

// TestQueueBoundInBytes: a subscriber is cut off as slow when what it has
// not yet sent passes the byte bound, though its queue has room for more
// events; an event alone is taken whatever its size; Sent frees the room.
func TestQueueBoundInBytes(t *testing.T) {
	h := newHub("r", 100, nil, nil)
	h.queueBytes = 1000
	reader, _ := h.add("reader", time.Now(), presenceAs{})
	slow, _ := h.add("slow", time.Now(), presenceAs{})

	h.publish(batchOf(1, 2000)) // over the bound, but alone in both queues
	m := <-reader.C
	if m.Size() <= h.queueBytes {
		t.Fatalf("the first event is %d bytes, want more than the bound %d", m.Size(), h.queueBytes)
	}
	reader.Sent(m)
	if slow.Reason() != "" {
		t.Fatalf("a lone large event cut the subscriber off: %q", slow.Reason())
	}
	h.publish(batchOf(2, 300))
	if slow.Reason() != "slow" {
		t.Errorf("a second event behind 2000 unsent bytes: reason %q, want slow", slow.Reason())
	}
	for seq := int64(2); seq <= 10; seq++ {
		if seq > 2 {
			h.publish(batchOf(seq, 300))
		}
		m := <-reader.C
		if m.Seq != seq {
			t.Fatalf("reader got seq %d, want %d", m.Seq, seq)
		}
		reader.Sent(m)
	}
	if reader.Reason() != "" || reader.queued.Load() != 0 {
		t.Errorf("a reader that keeps up: reason %q, %d bytes counted, want none", reader.Reason(), reader.queued.Load())
	}
}

// TestOpsEventFramedOnce: an ops event's frame is the SSE event of its
// data, and its Data and Entries are slices of that frame, not copies.
func TestOpsEventFramedOnce(t *testing.T) {
	h := newHub("r", 10, nil, nil)
	s, _ := h.add("a", time.Now(), presenceAs{})
	b := batchOf(7, 10)
	b.Ops = append(b.Ops, batchOf(8, 10).Ops...)
	b.Version = 8
	h.publish(b)
	m := <-s.C
	want := sseframe.Append(nil, &sse.Event{ID: []byte("8"), Event: []byte(EventOps), Data: m.Data})
	if string(m.Frame) != string(want) {
		t.Errorf("frame %q, want %q", m.Frame, want)
	}
	var data struct {
		Version int64 `json:"version"`
		Ops     []struct {
			Seq int64 `json:"seq"`
		} `json:"ops"`
	}
	if err := json.Unmarshal(m.Data, &data); err != nil || data.Version != 8 || len(data.Ops) != 2 || data.Ops[0].Seq != 7 || m.First != 7 {
		t.Errorf("data %s (%v), first %d: want version 8 with ops 7 and 8", m.Data, err, m.First)
	}
	if &m.Data[0] != &m.Frame[len("id: 8\ndata: ")] || &m.Entries[0] != &m.Data[len(`{"version":8,"ops":[`)] {
		t.Error("Data and Entries are not slices of Frame")
	}
	if string(OpsData([]*Message{{Entries: m.Entries[:len(m.Entries)/2]}, m})) == "" {
		t.Error("no merged data")
	}
}

// TestPresenceListsTheOldest: a presence event lists the oldest
// MaxPresenceUsers of the local and remote users together, oldest first,
// and counts them all; GET …/presence lists all in the same order.
func TestPresenceListsTheOldest(t *testing.T) {
	h := newHub("r", 10, nil, nil)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var subs []*Subscription
	// Local users at even seconds, added out of order; remote ones at odd.
	for _, i := range []int{4, 0, 2, 8, 6} {
		for k := range 30 {
			s, _ := h.add(fmt.Sprintf("l%d-%d", i, k), t0.Add(time.Duration(i*30+k)*time.Second*2), presenceAs{})
			subs = append(subs, s)
		}
	}
	var remote []User
	for i := range 40 {
		remote = append(remote, User{ID: fmt.Sprintf("r%03d", 39-i), Name: "remote", ConnectedAt: t0.Add(time.Duration(2*(39-i)+1) * time.Second)})
	}
	h.setRemote(remote)
	subs[0].Close()

	all := h.users()
	if len(all) != 150-1+40 {
		t.Fatalf("%d users, want 189", len(all))
	}
	for i := 1; i < len(all); i++ {
		if compareUsers(all[i-1], all[i]) >= 0 {
			t.Fatalf("users %d and %d out of order: %v, %v", i-1, i, all[i-1], all[i])
		}
	}
	_, _, data := h.presenceEvent()
	var ev presenceData
	if err := json.Unmarshal(data, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Count != len(all) || len(ev.Users) != MaxPresenceUsers {
		t.Fatalf("presence counts %d and lists %d, want %d and %d", ev.Count, len(ev.Users), len(all), MaxPresenceUsers)
	}
	for i, u := range ev.Users {
		if u.ID != all[i].ID {
			t.Fatalf("presence user %d is %s, want %s", i, u.ID, all[i].ID)
		}
	}
}
