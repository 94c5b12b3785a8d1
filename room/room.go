package room

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/liveshare/liveshare/graph"
	"github.com/liveshare/liveshare/store"
)

// Store is what rooms need of persistence; *store.Store satisfies it.
type Store interface {
	GetRoom(ctx context.Context, id string) (store.Room, error)
	AppendOps(ctx context.Context, a store.Append) (store.AppendResult, error)
	IdempotentResults(ctx context.Context, roomID string, keys []string) (map[string]store.AppendResult, error)
	OpsSince(ctx context.Context, roomID string, since int64, limit int) ([]store.OpRecord, error)
	RoomVersion(ctx context.Context, roomID string) (version, prunedThrough int64, err error)
}

// LoggedOp is one committed op as it stands in the op log.
type LoggedOp struct {
	Seq       int64
	Op        graph.Op
	Raw       json.RawMessage // Op as committed
	ClientID  string
	CreatedAt time.Time
}

// Batch is a run of consecutive committed ops of one room.
type Batch struct {
	RoomID  string
	Version int64 // the seq of the last op in Ops
	Ops     []LoggedOp
	// Committed is when this process saw the batch committed (wall clock
	// with a monotonic reading), for the commit-to-write delay.
	Committed time.Time
}

// Write is one request to change a room.
type Write struct {
	Ops            []graph.Op
	ClientID       string
	BaseVersion    *int64 // when set, the write is refused unless it would follow this version
	IdempotencyKey string
	// Audit, when not nil, is recorded in the transaction that commits
	// the write, with the version after it: the write happens only if
	// its audit row is written. Such a write is committed in a group of
	// its own, so that a row that cannot be written fails no other
	// writer's request.
	Audit *store.AuditEntry
}

// WriteResult is the answer to a Write.
type WriteResult struct {
	Version  int64
	Applied  int
	Replayed bool // the idempotency key was seen before: this is the first answer again, nothing was applied
}

// ConflictError is returned when a Write's BaseVersion is not the version
// it would follow.
type ConflictError struct {
	Current int64
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("room is at version %d", e.Current)
}

// TooLargeError is returned when a write would take the room's state past
// its budget: the snapshot of the room could then not be stored.
type TooLargeError struct {
	Size, Budget int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("the room's state would take up to %d bytes, over its budget of %d", e.Size, e.Budget)
}

var (
	// ErrDeleted is returned by a Room that was deleted while it was in use.
	ErrDeleted = errors.New("room deleted")
	// ErrUnrecoverable is returned when a room can be loaded neither from a
	// snapshot nor from its op log, which was pruned: every stored snapshot
	// failed to verify.
	ErrUnrecoverable = errors.New("room cannot be recovered")
	// ErrUnavailable wraps the failures that a retry may cure: the
	// database did not answer in time, or the caller gave up waiting for
	// the room. Nothing was applied, or the write's outcome is unknown and
	// its Idempotency-Key tells on retry.
	ErrUnavailable = errors.New("room unavailable")
	// errEvicted is returned by a Room that left memory while a caller held
	// it; the Manager's methods then fetch the room again.
	errEvicted = errors.New("room evicted")
)

// Restored is a room's state read back from its newest stored snapshot that
// verifies.
type Restored struct {
	Graph      *graph.Graph
	Version    int64
	SnapshotID string
	CreatedAt  time.Time
}

// Snapshots is what rooms need of snapshots; *snapshot.Registry satisfies it.
type Snapshots interface {
	// Restore returns the room's state from its newest stored snapshot
	// that verifies; ok is false when there is none.
	Restore(ctx context.Context, roomID string) (r Restored, ok bool, err error)
	// Due tells, without blocking, that r gathered SnapshotEveryOps ops
	// since its last snapshot.
	Due(r *Room)
	// Evicting snapshots r, which changed since its last snapshot, before
	// it leaves memory.
	Evicting(ctx context.Context, r *Room)
	// Forget drops what is kept in memory for a room that left memory or
	// was deleted.
	Forget(roomID string)
}

// Room is one live room: its graph at its version, the subscribers it
// publishes committed ops to, and the sequencer that commits its writes.
//
// Concurrency contract: only the room's sequencer changes the graph and the
// version, and it holds mu only while it applies ops in memory, never
// across database IO or a publication. Readers take mu shared (Version) or
// briefly exclusive to freeze the graph (State, Capture), so they never see
// a state that is not committed.
// Publication is ordered by the sequencer, which is one goroutine at a
// time; the hub registers subscribers at the version it last published.
type Room struct {
	id string
	m  *Manager

	hub *hub

	mu      sync.RWMutex
	g       *graph.Graph
	version int64
	// snapVersion is the version of the room's newest stored snapshot.
	snapVersion int64
	duePending  bool // Due was called and no snapshot was recorded since
	// dirtySince is when the room first moved past snapVersion (zero
	// while a snapshot holds its version): the snapshot lag in time.
	dirtySince time.Time

	seq sequencer

	lastUsed atomic.Int64 // unix nanoseconds; read by the manager's eviction loop
}

// ID returns the room's id.
func (r *Room) ID() string { return r.id }

// Version returns the version of the room's state in memory.
func (r *Room) Version() int64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.version
}

// State returns a copy of the room's graph and the version it is at.
func (r *Room) State() (graph.State, int64) {
	view, version := r.Freeze()
	return view.State(), version
}

// Capture returns the room's state and version for a snapshot or a read,
// its elements in no particular order (sorting is left to the caller) and
// sharing their immutable data with the room. The room's lock is held only
// to freeze the graph, which costs the same whatever the room's size; the
// elements are copied out of the frozen view after the lock is released, so
// the sequencer never waits for a copy of a large room.
func (r *Room) Capture() (graph.State, int64) {
	view, version := r.Freeze()
	return view.Elements(), version
}

// Freeze returns a view of the room's graph that later writes never change,
// and its version: what a snapshot encodes straight from, without copying
// the elements out (see graph.Frozen). Freezing changes the graph's
// bookkeeping (its next writes copy the pieces they touch first), so it
// takes the lock exclusively, for a few hundred pointer copies.
func (r *Room) Freeze() (*graph.Frozen, int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.g.Freeze(), r.version
}

// Changed reports whether the room moved since its newest stored snapshot.
func (r *Room) Changed() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.version != r.snapVersion
}

// SnapshotStored records that a snapshot of the room at version is stored.
func (r *Room) SnapshotStored(version int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.snapVersion = max(r.snapVersion, version)
	r.duePending = false
	if r.snapVersion >= r.version {
		r.dirtySince = time.Time{}
	} else {
		// Ops were committed while the snapshot was taken: they are at
		// most this old (a slight under-estimate of the lag).
		r.dirtySince = r.m.opts.Now()
	}
}

// markDirtyLocked records that the room moved past its snapshot at at,
// unless it had already.
func (r *Room) markDirtyLocked(at time.Time) {
	if r.dirtySince.IsZero() && r.version != r.snapVersion {
		r.dirtySince = at
	}
}

// snapshotLag returns how many ops the room has after its newest snapshot
// and how long it has had them.
func (r *Room) snapshotLag(now time.Time) (int64, time.Duration) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.version == r.snapVersion || r.dirtySince.IsZero() {
		return max(r.version-r.snapVersion, 0), 0
	}
	return r.version - r.snapVersion, max(now.Sub(r.dirtySince), 0)
}

// SnapshotVersion returns the version of the newest stored snapshot known.
func (r *Room) SnapshotVersion() int64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.snapVersion
}

// ElementCount returns the number of nodes and edges in the room.
func (r *Room) ElementCount() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.g.ElementCount()
}

func (r *Room) touch(now time.Time) { r.lastUsed.Store(now.UnixNano()) }

// checkDue asks for a snapshot once the room gathered everyOps ops since its
// last one.
func (r *Room) checkDue() {
	snaps, every := r.m.opts.Snapshots, r.m.opts.SnapshotEveryOps
	if snaps == nil || every <= 0 {
		return
	}
	r.mu.Lock()
	due := !r.duePending && r.version-r.snapVersion >= every
	if due {
		r.duePending = true
	}
	r.mu.Unlock()
	if due {
		snaps.Due(r)
	}
}

// Join is where a new subscriber starts.
type Join struct {
	Sub *Subscription
	// Version is the room's version when the subscriber joined: every op
	// after it arrives on Sub.C, none before it. The subscriber reads the
	// rest (a snapshot, the op log) up to Version itself.
	Version int64
}

// Subscribe registers a subscriber named name (an anonymous name when
// empty), at the version the room last published: no committed op falls
// between what the subscriber reads up to Version and what it receives
// live.
func (r *Room) Subscribe(name string) (Join, error) {
	return r.subscribe(name, presenceAs{})
}

func (r *Room) subscribe(name string, as presenceAs) (Join, error) {
	// The sequencer's lock orders this against eviction, which must not
	// drop a room that just gained a subscriber.
	r.seq.mu.Lock()
	defer r.seq.mu.Unlock()
	if r.seq.gone != nil {
		return Join{}, r.seq.gone
	}
	sub, version := r.hub.add(name, r.m.opts.Now(), as)
	if sub == nil {
		return Join{}, ErrDeleted
	}
	return Join{Sub: sub, Version: version}, nil
}

// Presence lists who is subscribed to the room, oldest first.
func (r *Room) Presence() []User { return r.hub.users() }

// Subscribers returns how many subscribers the room has, through every
// instance.
func (r *Room) Subscribers() int {
	r.hub.mu.Lock()
	defer r.hub.mu.Unlock()
	return len(r.hub.subs) + len(r.hub.remote)
}

// LocalSubscribers returns how many subscribers the room has through this
// instance.
func (r *Room) LocalSubscribers() int { return r.hub.count() }
