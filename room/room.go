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
	"github.com/liveshare/liveshare/metrics"
	"github.com/liveshare/liveshare/store"
)

// Store is what rooms need of persistence; *store.Store satisfies it.
type Store interface {
	GetRoom(ctx context.Context, id string) (store.Room, error)
	AppendOps(ctx context.Context, a store.Append) (store.AppendResult, error)
	IdempotentResult(ctx context.Context, roomID, key string) (store.AppendResult, bool, error)
	OpsSince(ctx context.Context, roomID string, since int64, limit int) ([]store.OpRecord, error)
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
	BaseVersion    *int64 // when set, the write is refused unless the room is at this version
	IdempotencyKey string
}

// WriteResult is the answer to a Write.
type WriteResult struct {
	Version  int64
	Applied  int
	Replayed bool // the idempotency key was seen before: this is the first answer again, nothing was applied
}

// ConflictError is returned when a Write's BaseVersion is not the room's version.
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

// ErrDeleted is returned by a Room that was deleted while it was in use.
var ErrDeleted = errors.New("room deleted")

// ErrUnrecoverable is returned when a room can be loaded neither from a
// snapshot nor from its op log, which was pruned: every stored snapshot
// failed to verify.
var ErrUnrecoverable = errors.New("room cannot be recovered")

// Snapshots is what rooms need of snapshots; *snapshot.Registry satisfies it.
type Snapshots interface {
	// Restore returns the room's graph from its newest stored snapshot
	// that verifies, or nil when there is none.
	Restore(ctx context.Context, roomID string) (g *graph.Graph, version int64, err error)
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

// errEvicted is returned by a Room that left memory while a caller held it;
// the Manager's methods then fetch the room again.
var errEvicted = errors.New("room evicted")

// maxCatchUps bounds how often one write catches up with other instances'
// writes before giving up; each catch-up means another writer won the race.
const maxCatchUps = 20

// Room is one live room: its graph at its version.
type Room struct {
	id     string
	store  Store
	hub    *hub
	now    func() time.Time
	budget int64 // the most graph.SizeBound may reach; 0 is no limit

	snapshots Snapshots // nil: no snapshots
	everyOps  int64     // ops after the last snapshot that make one due; 0: never
	metrics   *metrics.Metrics

	mu      sync.RWMutex
	g       *graph.Graph
	version int64
	deleted bool
	evicted bool // left the manager: writes and subscriptions go to a fresh load
	// snapVersion is the version of the room's newest stored snapshot.
	snapVersion int64
	duePending  bool // Due was called and no snapshot was recorded since
	// dirtySince is when the room first moved past snapVersion (zero
	// while a snapshot holds its version): the snapshot lag in time.
	dirtySince time.Time

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
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.g.State(), r.version
}

// Capture returns the room's state and version for a snapshot. Only the
// copy happens under the room's lock (element data is immutable and shared);
// sorting is left to the caller, outside it.
func (r *Room) Capture() (graph.State, int64) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.g.Elements(), r.version
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
		r.dirtySince = r.now()
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

// Apply validates w's ops against the room, commits them to the store as one
// transaction and only then makes them visible and publishes them. It returns
// a *graph.OpError for an invalid op, a *ConflictError for a stale
// BaseVersion, a *TooLargeError for a room that would outgrow its budget,
// store.ErrNotFound or ErrDeleted for a room that is gone; in every error
// case nothing was applied.
func (r *Room) Apply(ctx context.Context, w Write) (WriteResult, error) {
	if len(w.Ops) == 0 {
		return WriteResult{}, errors.New("apply to room: no ops")
	}
	raw := make([]json.RawMessage, len(w.Ops))
	for i := range w.Ops {
		b, err := json.Marshal(w.Ops[i])
		if err != nil {
			return WriteResult{}, fmt.Errorf("encode op %d for room %s: %w", i, r.id, err)
		}
		raw[i] = b
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.deleted:
		return WriteResult{}, ErrDeleted
	case r.evicted:
		return WriteResult{}, errEvicted
	}

	if w.IdempotencyKey != "" {
		res, ok, err := r.store.IdempotentResult(ctx, r.id, w.IdempotencyKey)
		if err != nil {
			return WriteResult{}, fmt.Errorf("look up idempotency key in room %s: %w", r.id, err)
		}
		if ok {
			return WriteResult{Version: res.Version, Applied: res.Applied, Replayed: true}, nil
		}
	}

	if w.BaseVersion != nil && *w.BaseVersion != r.version {
		// Another instance may have moved the room: be sure before refusing.
		if err := r.catchUpLocked(ctx); err != nil {
			return WriteResult{}, err
		}
	}

	for attempt := 0; ; attempt++ {
		if w.BaseVersion != nil && *w.BaseVersion != r.version {
			return WriteResult{}, &ConflictError{Current: r.version}
		}
		before := r.g.SizeBound()
		undo, err := r.g.ApplyUndoable(w.Ops)
		if err != nil {
			return WriteResult{}, err
		}
		// A room already over budget (the budget was lowered) may still
		// shrink; it may not grow.
		if size := r.g.SizeBound(); r.budget > 0 && size > r.budget && size > before {
			undo()
			return WriteResult{}, &TooLargeError{Size: size, Budget: r.budget}
		}
		commitStart := time.Now()
		res, err := r.store.AppendOps(ctx, store.Append{
			RoomID:          r.id,
			ExpectedVersion: r.version,
			Ops:             raw,
			ClientID:        w.ClientID,
			IdempotencyKey:  w.IdempotencyKey,
			ElementCount:    int64(r.g.ElementCount()),
		})
		if err == nil {
			r.metrics.Committed(len(w.Ops), time.Since(commitStart))
			r.commitLocked(res.Version, w.Ops, raw, w.ClientID, res.CreatedAt)
			return WriteResult{Version: res.Version, Applied: res.Applied}, nil
		}
		undo()

		var mismatch *store.VersionMismatchError
		switch {
		case errors.As(err, &mismatch) && attempt < maxCatchUps:
			if err := r.catchUpLocked(ctx); err != nil {
				return WriteResult{}, err
			}
		case errors.Is(err, store.ErrIdempotencyKeyUsed):
			// Another instance committed the same key first: answer its result.
			res, ok, lerr := r.store.IdempotentResult(ctx, r.id, w.IdempotencyKey)
			if lerr != nil || !ok {
				return WriteResult{}, fmt.Errorf("idempotency key raced in room %s: %w", r.id, errors.Join(err, lerr))
			}
			if cerr := r.catchUpLocked(ctx); cerr != nil {
				return WriteResult{}, cerr
			}
			return WriteResult{Version: res.Version, Applied: res.Applied, Replayed: true}, nil
		case errors.Is(err, store.ErrNotFound):
			// Deleted, maybe through another instance: end the streams here too.
			r.deleted = true
			r.hub.close(r.id)
			return WriteResult{}, err
		default:
			return WriteResult{}, fmt.Errorf("commit ops to room %s: %w", r.id, err)
		}
	}
}

// commitLocked advances the in-memory version past ops that are already
// applied to r.g and committed, and publishes them.
func (r *Room) commitLocked(version int64, ops []graph.Op, raw []json.RawMessage, clientID string, at time.Time) {
	b := Batch{RoomID: r.id, Version: version, Ops: make([]LoggedOp, len(ops)), Committed: time.Now()}
	first := version - int64(len(ops)) + 1
	for i, op := range ops {
		b.Ops[i] = LoggedOp{Seq: first + int64(i), Op: op, Raw: raw[i], ClientID: clientID, CreatedAt: at}
	}
	r.version = version
	r.markDirtyLocked(r.now())
	r.hub.publish(b)
	r.checkDueLocked()
}

// checkDueLocked asks for a snapshot once the room gathered everyOps ops
// since its last one.
func (r *Room) checkDueLocked() {
	if r.snapshots != nil && r.everyOps > 0 && !r.duePending && r.version-r.snapVersion >= r.everyOps {
		r.duePending = true
		r.snapshots.Due(r)
	}
}

// catchUpLocked applies ops that other writers committed after r.version.
func (r *Room) catchUpLocked(ctx context.Context) error {
	recs, err := r.store.OpsSince(ctx, r.id, r.version, 0)
	if err != nil {
		return fmt.Errorf("catch up room %s from version %d: %w", r.id, r.version, err)
	}
	if len(recs) == 0 {
		return nil
	}
	b := Batch{RoomID: r.id, Ops: make([]LoggedOp, 0, len(recs)), Committed: time.Now()}
	for _, rec := range recs {
		var lop LoggedOp
		if lop, err = r.replayLocked(rec); err != nil {
			break
		}
		b.Ops = append(b.Ops, lop)
	}
	// Publish what was applied even if a later op failed, or subscribers
	// would see a gap once the room moves on.
	b.Version = r.version
	r.markDirtyLocked(r.now())
	r.hub.publish(b)
	return err
}

// replayLocked applies one committed op from the log.
func (r *Room) replayLocked(rec store.OpRecord) (LoggedOp, error) {
	if rec.Seq != r.version+1 {
		return LoggedOp{}, fmt.Errorf("room %s: op log has seq %d after version %d", r.id, rec.Seq, r.version)
	}
	op, err := graph.ParseOp(rec.Op)
	if err != nil {
		return LoggedOp{}, fmt.Errorf("room %s: decode logged op %d: %w", r.id, rec.Seq, err)
	}
	if err := r.g.Apply([]graph.Op{op}); err != nil {
		return LoggedOp{}, fmt.Errorf("room %s: replay logged op %d: %w", r.id, rec.Seq, err)
	}
	r.version = rec.Seq
	return LoggedOp{Seq: rec.Seq, Op: op, Raw: rec.Op, ClientID: rec.ClientID, CreatedAt: rec.CreatedAt}, nil
}

// evictIfIdle marks the room evicted if nobody is subscribed and it was not
// used since cutoff; it reports whether it did.
func (r *Room) evictIfIdle(cutoff int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.hub.count() > 0 || r.lastUsed.Load() >= cutoff {
		return false
	}
	r.evicted = true
	return true
}

// markDeleted makes every later write and subscription fail with
// ErrDeleted, and ends the subscriptions with a room_deleted event.
func (r *Room) markDeleted() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.deleted = true
	r.hub.close(r.id)
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
// empty). Registration and the version it starts from are taken under the
// room's lock, so no committed op falls between what the subscriber reads
// up to Version and what it receives live.
func (r *Room) Subscribe(name string) (Join, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	switch {
	case r.deleted:
		return Join{}, ErrDeleted
	case r.evicted:
		return Join{}, errEvicted
	}
	sub := r.hub.add(name, r.now())
	if sub == nil {
		return Join{}, ErrDeleted
	}
	return Join{Sub: sub, Version: r.version}, nil
}

// Presence lists who is subscribed to the room, oldest first.
func (r *Room) Presence() []User { return r.hub.users() }

// Subscribers returns how many subscribers the room has.
func (r *Room) Subscribers() int { return r.hub.count() }
