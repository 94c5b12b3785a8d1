package room

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/liveshare/liveshare/graph"
	"github.com/liveshare/liveshare/metrics"
	"github.com/liveshare/liveshare/store"
)

// replayPage is how many logged ops a load or a catch-up reads per query.
const replayPage = 5000

// DefaultQueueSize is the default bound of a subscriber's event queue.
const DefaultQueueSize = 256

// Defaults of Options' timeouts.
const (
	DefaultLoadTimeout   = 30 * time.Second
	DefaultCommitTimeout = 30 * time.Second
)

// ErrClosed is returned once the Manager is closed (the process stops).
var ErrClosed = fmt.Errorf("rooms are closed: %w", ErrUnavailable)

// Options configure a Manager.
type Options struct {
	// IdleTimeout is how long a room stays in memory after its last use.
	// Zero means rooms are never evicted.
	IdleTimeout time.Duration
	// QueueSize bounds each subscriber's queue of events; a subscriber whose
	// queue is full is cut off. Zero means DefaultQueueSize.
	QueueSize int
	// StateBudget is the most a room's graph.SizeBound may reach; writes
	// past it are refused. Zero means no limit.
	StateBudget int64
	// Snapshots restores rooms at load and takes snapshots on their
	// behalf; nil means rooms load from the op log alone.
	Snapshots Snapshots
	// SnapshotEveryOps is how many ops after its last snapshot a room asks
	// Snapshots for one (Due); zero means never.
	SnapshotEveryOps int64
	// Shared says other processes may write to the database (PostgreSQL):
	// reads then check the room's version in the database first, and a
	// refusal is confirmed against it. Without it this process is the
	// database's only writer (SQLite) and its rooms in memory are current.
	Shared bool
	// LoadTimeout bounds a room's load, CommitTimeout each round of a
	// room's sequencer (a group commit with its catch-ups). Zero means the
	// defaults.
	LoadTimeout, CommitTimeout time.Duration
	// Events learns of every commit and deletion, to tell other instances;
	// Presence of every join and leave. Nil for a process that shares its
	// database with none.
	Events   Events
	Presence PresenceSink
	Logger   *slog.Logger
	// Metrics records commits, room loads and slow subscribers; nil
	// records nothing.
	Metrics *metrics.Metrics
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Events learns what other instances must hear of: every commit (the
// room's new version) and deletion. Its methods must not block.
type Events interface {
	Committed(roomID string, version int64)
	Deleted(roomID string)
}

// Manager holds the live rooms of this process, loading each on first use.
// Its lock guards the map of rooms only and is never held across IO or
// while another lock is taken.
type Manager struct {
	store Store
	opts  Options
	log   *slog.Logger

	mu    sync.Mutex
	rooms map[string]*loading

	// work counts the goroutines the Manager owns: loads and sequencers.
	// workMu orders Add against Close's Wait; it is a leaf lock.
	workMu sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// loading is a room being loaded or loaded; done is closed when room or err
// is set.
type loading struct {
	done chan struct{}
	room *Room
	err  error
	// forgotten is set when the room was deleted while it loaded.
	forgotten atomic.Bool
}

// NewManager returns a Manager over st.
func NewManager(st Store, opts Options) *Manager {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = DefaultQueueSize
	}
	if opts.LoadTimeout <= 0 {
		opts.LoadTimeout = DefaultLoadTimeout
	}
	if opts.CommitTimeout <= 0 {
		opts.CommitTimeout = DefaultCommitTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Manager{store: st, opts: opts, log: opts.Logger, rooms: make(map[string]*loading)}
}

// startWork counts a goroutine of the Manager's; false once it is closed.
func (m *Manager) startWork() bool {
	m.workMu.Lock()
	defer m.workMu.Unlock()
	if m.closed {
		return false
	}
	m.wg.Add(1)
	return true
}

// Close stops taking work and waits for the loads and commits in flight.
// Call it once nothing calls the Manager any more (the HTTP server is shut
// down).
func (m *Manager) Close() {
	m.workMu.Lock()
	m.closed = true
	m.workMu.Unlock()
	m.wg.Wait()
}

// Get returns the live room id, loading it from the store if it is not in
// memory. Concurrent Gets of the same room share one load, which runs with
// its own deadline (LoadTimeout); each caller waits at most until its ctx
// ends (ErrUnavailable). It returns an error wrapping store.ErrNotFound for
// a room that does not exist.
func (m *Manager) Get(ctx context.Context, id string) (*Room, error) {
	for {
		m.mu.Lock()
		l, ok := m.rooms[id]
		if !ok {
			l = &loading{done: make(chan struct{})}
			m.rooms[id] = l
		}
		m.mu.Unlock()
		if !ok {
			if !m.startWork() {
				m.drop(id, l)
				return nil, ErrClosed
			}
			// The load must not die with this caller's request: others may
			// wait for it. It keeps the request's values (its id in logs).
			go m.runLoad(context.WithoutCancel(ctx), id, l)
		}

		select {
		case <-l.done:
		case <-ctx.Done():
			return nil, fmt.Errorf("room %s: waiting for its load: %w", id, unavailable(ctx.Err()))
		}
		if l.err != nil {
			return nil, l.err
		}
		switch gone := l.room.goneErr(); {
		case gone == nil:
			l.room.touch(m.opts.Now())
			return l.room, nil
		case errors.Is(gone, errEvicted):
			m.drop(id, l) // left memory: load it again
		default:
			return nil, gone
		}
	}
}

// drop removes l from the map if it is still the room's entry.
func (m *Manager) drop(id string, l *loading) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.rooms[id] == l {
		delete(m.rooms, id)
	}
}

func (m *Manager) runLoad(ctx context.Context, id string, l *loading) {
	defer m.wg.Done()
	ctx, cancel := context.WithTimeout(ctx, m.opts.LoadTimeout)
	defer cancel()
	l.room, l.err = m.load(ctx, id)
	if l.err != nil && ctx.Err() != nil && !errors.Is(l.err, ErrUnavailable) {
		// Cut short by its deadline: the database did not answer in time.
		// Drivers do not all say so (lib/pq answers "canceling statement").
		l.err = fmt.Errorf("room %s: load did not finish within %s: %w", id, m.opts.LoadTimeout, unavailable(l.err))
	}
	if l.err != nil {
		m.drop(id, l)
	}
	close(l.done)
	// Forget sets forgotten before it looks at done; this looks at
	// forgotten after closing done: one of the two sees the other.
	if l.room != nil && l.forgotten.Load() {
		l.room.markDeleted()
	}
}

// Fresh returns the live room id at least at the version the database has
// for it now, so that a read reflects every op acknowledged before it
// began, whichever instance acknowledged it. Without Options.Shared it is
// Get.
func (m *Manager) Fresh(ctx context.Context, id string) (*Room, error) {
	r, err := m.Get(ctx, id)
	if err != nil || !m.opts.Shared {
		return r, err
	}
	version, _, err := m.store.RoomVersion(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		m.forgetDeleted(r)
		return nil, err
	}
	if err != nil {
		if ctx.Err() != nil {
			err = unavailable(err)
		}
		return nil, fmt.Errorf("room %s: read its version: %w", id, err)
	}
	if err := r.Sync(ctx, version); err != nil {
		return nil, err
	}
	return r, nil
}

// Apply applies w to the room id (see Room.Apply), loading the room if
// needed and following it if it is evicted meanwhile.
func (m *Manager) Apply(ctx context.Context, id string, w Write) (WriteResult, error) {
	for {
		r, err := m.Get(ctx, id)
		if err != nil {
			return WriteResult{}, err
		}
		res, err := r.Apply(ctx, w)
		if !errors.Is(err, errEvicted) {
			return res, err
		}
	}
}

// Subscribe subscribes to the room id (see Room.Subscribe), loading the
// room if needed, current with the database (Fresh), and following it if
// it is evicted meanwhile. The presence id and owner that WithPresence put
// in ctx name the subscriber for SetPresenceState.
func (m *Manager) Subscribe(ctx context.Context, id, name string) (*Room, Join, error) {
	for {
		r, err := m.Fresh(ctx, id)
		if err != nil {
			return nil, Join{}, err
		}
		j, err := r.subscribe(name, presenceFrom(ctx))
		if !errors.Is(err, errEvicted) {
			return r, j, err
		}
	}
}

// loadedState is a room's state read from the store: its newest snapshot
// that verifies and the ops after it.
type loadedState struct {
	g        *graph.Graph
	version  int64
	snapshot Restored // Graph nil: none
	// ops are the ops replayed after the snapshot, and snapshotEvent the
	// data of the snapshot event of its state, when asked for.
	ops           []LoggedOp
	snapshotEvent []byte
	firstOpAt     time.Time
}

// loadState reads the room's state from the store. forSubscribers keeps
// what subscribers of a reloaded room are sent: the snapshot's event and
// the replayed ops.
func (m *Manager) loadState(ctx context.Context, id string, forSubscribers bool) (loadedState, error) {
	var lastErr error
	// A snapshot stored by another instance meanwhile may prune the ops
	// after the one read: then read again.
	for range 3 {
		st, err := m.tryLoadState(ctx, id, forSubscribers)
		if !errors.Is(err, errLogMoved) {
			return st, err
		}
		lastErr = err
	}
	return loadedState{}, lastErr
}

var errLogMoved = errors.New("the op log was pruned while it was read")

func (m *Manager) tryLoadState(ctx context.Context, id string, forSubscribers bool) (loadedState, error) {
	st := loadedState{g: graph.New()}
	if snaps := m.opts.Snapshots; snaps != nil {
		restored, ok, err := snaps.Restore(ctx, id)
		if err != nil {
			return st, fmt.Errorf("load room %s: %w", id, err)
		}
		if ok {
			st.g, st.version, st.snapshot = restored.Graph, restored.Version, restored
		}
	}
	_, prunedThrough, err := m.store.RoomVersion(ctx, id)
	if err != nil {
		return st, fmt.Errorf("load room %s: %w", id, err)
	}
	if st.version < prunedThrough {
		if st.snapshot.Graph != nil {
			return st, errLogMoved
		}
		return st, fmt.Errorf("load room %s: no usable snapshot, and the op log starts after version %d: %w",
			id, prunedThrough, ErrUnrecoverable)
	}
	if forSubscribers && st.snapshot.Graph != nil {
		if st.snapshotEvent, err = snapshotEventData(st.snapshot); err != nil {
			return st, fmt.Errorf("load room %s: %w", id, err)
		}
	}
	for {
		recs, err := m.store.OpsSince(ctx, id, st.version, replayPage)
		if errors.Is(err, store.ErrSealOpen) {
			// No snapshot can stand in for an op: the load stops here.
			return st, fmt.Errorf("load room %s: %w: %w", id, ErrUnrecoverable, err)
		}
		if err != nil {
			return st, fmt.Errorf("load room %s: %w", id, err)
		}
		if len(recs) > 0 && recs[0].Seq != st.version+1 {
			return st, errLogMoved
		}
		ops, err := decodeLoggedOps(id, st.version, recs)
		if err != nil {
			return st, fmt.Errorf("load: %w", err)
		}
		for _, op := range ops {
			if err := st.g.Apply([]graph.Op{op.Op}); err != nil {
				return st, fmt.Errorf("load room %s: replay logged op %d: %w", id, op.Seq, err)
			}
			st.version = op.Seq
		}
		if len(ops) > 0 && st.firstOpAt.IsZero() {
			st.firstOpAt = ops[0].CreatedAt
		}
		if forSubscribers {
			st.ops = append(st.ops, ops...)
		}
		if len(recs) < replayPage {
			return st, nil
		}
	}
}

// decodeLoggedOps decodes the logged ops a load or a catch-up replays,
// which must follow version from. They were parsed strictly and validated before they were
// committed, and Apply validates each again as it replays it, so they are
// decoded with graph.DecodeLogged rather than ParseOp: replaying the 5k
// ops after a snapshot was dominated by parsing them twice.
func decodeLoggedOps(roomID string, from int64, recs []store.OpRecord) ([]LoggedOp, error) {
	ops := make([]LoggedOp, 0, len(recs))
	for _, rec := range recs {
		if rec.Seq != from+1 {
			return nil, fmt.Errorf("room %s: op log has seq %d after version %d", roomID, rec.Seq, from)
		}
		op, err := graph.DecodeLogged(rec.Op)
		if err != nil {
			return nil, fmt.Errorf("room %s: logged op %d: %w", roomID, rec.Seq, err)
		}
		ops = append(ops, LoggedOp{Seq: rec.Seq, Op: op, Raw: rec.Op, ClientID: rec.ClientID, CreatedAt: rec.CreatedAt})
		from = rec.Seq
	}
	return ops, nil
}

// snapshotEventData is the data of the snapshot event of a restored state.
func snapshotEventData(r Restored) ([]byte, error) {
	state := r.Graph.State()
	state.Sort()
	id, at := r.SnapshotID, r.CreatedAt.UTC()
	data, err := json.Marshal(SnapshotData{SnapshotID: &id, Version: r.Version, CreatedAt: &at,
		ElementCount: len(state.Nodes) + len(state.Edges), State: state})
	if err != nil {
		return nil, fmt.Errorf("encode snapshot event: %w", err)
	}
	return data, nil
}

func (m *Manager) load(ctx context.Context, id string) (*Room, error) {
	began := time.Now()
	if _, err := m.store.GetRoom(ctx, id); err != nil {
		return nil, fmt.Errorf("load room %s: %w", id, err)
	}
	st, err := m.loadState(ctx, id, false)
	if err != nil {
		return nil, err
	}
	r := &Room{id: id, m: m, hub: newHub(id, m.opts.QueueSize, m.opts.Metrics, m.opts.Presence), g: st.g, version: st.version,
		snapVersion: st.snapshot.Version}
	r.hub.version = st.version
	if !st.firstOpAt.IsZero() {
		r.markDirtyLocked(st.firstOpAt)
	}
	r.touch(m.opts.Now())
	m.opts.Metrics.RoomLoaded(time.Since(began))
	from := "op log"
	if st.snapshot.Graph != nil {
		from = fmt.Sprintf("snapshot at version %d", st.snapshot.Version)
	}
	m.log.InfoContext(ctx, "room loaded", "room_id", id, "version", r.version, "from", from,
		"ops_replayed", r.version-st.snapshot.Version, "elements", r.g.ElementCount(), "duration", time.Since(began))
	return r, nil
}

// Forget drops a deleted room from memory: later writes and subscriptions
// through a Room value still held by a request fail with ErrDeleted, and
// its subscribers get room_deleted. It never waits, not even for a load in
// flight (which marks its room deleted when it ends).
func (m *Manager) Forget(id string) {
	m.mu.Lock()
	l, ok := m.rooms[id]
	delete(m.rooms, id)
	m.mu.Unlock()
	if ok {
		l.forgotten.Store(true)
		select {
		case <-l.done:
			if l.room != nil {
				l.room.markDeleted()
			}
		default:
		}
	}
	if m.opts.Snapshots != nil {
		m.opts.Snapshots.Forget(id)
	}
	if m.opts.Events != nil {
		m.opts.Events.Deleted(id)
	}
}

// forgetDeleted forgets r, found deleted by another instance.
func (m *Manager) forgetDeleted(r *Room) {
	m.mu.Lock()
	if l, ok := m.rooms[r.id]; ok && l.room == r {
		delete(m.rooms, r.id)
	}
	m.mu.Unlock()
	r.markDeleted()
	if m.opts.Snapshots != nil {
		m.opts.Snapshots.Forget(r.id)
	}
}

// RoomDeleted tells the manager that another instance deleted room id.
func (m *Manager) RoomDeleted(id string) {
	if r, ok := m.Loaded(id); ok {
		m.forgetDeleted(r)
	}
}

// SetRemotePresence replaces the room's subscribers through other
// instances, if the room is in memory.
func (m *Manager) SetRemotePresence(id string, users []User) {
	if r, ok := m.Loaded(id); ok {
		r.hub.setRemote(users)
	}
}

// LocalPresence lists the room's subscribers through this instance (none
// when it is not in memory).
func (m *Manager) LocalPresence(id string) []User {
	if r, ok := m.Loaded(id); ok {
		return r.hub.local()
	}
	return nil
}

// Loaded returns the room if it is in memory, without loading it.
func (m *Manager) Loaded(id string) (*Room, bool) {
	m.mu.Lock()
	l, ok := m.rooms[id]
	m.mu.Unlock()
	if !ok {
		return nil, false
	}
	select {
	case <-l.done:
		return l.room, l.room != nil
	default:
		return nil, false
	}
}

// SnapshotLag returns, over the rooms in memory, the most ops a room has
// after its newest snapshot and the longest a room has had a change that no
// snapshot holds. It satisfies metrics.Rooms.
func (m *Manager) SnapshotLag() (versions int64, behind time.Duration) {
	now := m.opts.Now()
	for _, r := range m.Live() {
		v, d := r.snapshotLag(now)
		versions, behind = max(versions, v), max(behind, d)
	}
	return versions, behind
}

// Len returns how many rooms are in memory.
func (m *Manager) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.rooms)
}

// EvictIdle drops the rooms not used since IdleTimeout ago and returns how
// many it dropped. A room that changed since its last snapshot is
// snapshotted first (Snapshots.Evicting); its ops are durable either way.
// It never holds the manager's lock while it waits for a room.
func (m *Manager) EvictIdle(ctx context.Context) int {
	if m.opts.IdleTimeout <= 0 {
		return 0
	}
	cutoff := m.opts.Now().Add(-m.opts.IdleTimeout).UnixNano()
	n := 0
	for _, r := range m.Live() {
		if r.lastUsed.Load() >= cutoff || r.LocalSubscribers() > 0 {
			continue
		}
		if m.opts.Snapshots != nil && r.Changed() {
			m.opts.Snapshots.Evicting(ctx, r)
		}
		if !r.evictIfIdle(cutoff) {
			continue
		}
		m.mu.Lock()
		if l, ok := m.rooms[r.id]; ok && l.room == r {
			delete(m.rooms, r.id)
		}
		m.mu.Unlock()
		if m.opts.Snapshots != nil {
			// Its snapshots' cache goes too; a later load reads them again.
			m.opts.Snapshots.Forget(r.id)
		}
		n++
	}
	return n
}

// Live returns the rooms in memory.
func (m *Manager) Live() []*Room {
	m.mu.Lock()
	defer m.mu.Unlock()
	rooms := make([]*Room, 0, len(m.rooms))
	for _, l := range m.rooms {
		select {
		case <-l.done:
			if l.room != nil {
				rooms = append(rooms, l.room)
			}
		default: // still loading
		}
	}
	return rooms
}

// Run evicts idle rooms until ctx is done. The caller owns the goroutine
// that runs it.
func (m *Manager) Run(ctx context.Context) {
	if m.opts.IdleTimeout <= 0 {
		<-ctx.Done()
		return
	}
	t := time.NewTicker(max(m.opts.IdleTimeout/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n := m.EvictIdle(ctx); n > 0 {
				m.log.Debug("evicted idle rooms", "count", n)
			}
		}
	}
}

// goneErr is the error the room refuses work with, nil while it is live.
func (r *Room) goneErr() error {
	r.seq.mu.Lock()
	defer r.seq.mu.Unlock()
	return r.seq.gone
}

// evictIfIdle makes the room refuse further use if nobody is subscribed, no
// work is queued or running and it was not used since cutoff; it reports
// whether it did.
func (r *Room) evictIfIdle(cutoff int64) bool {
	if r.lastUsed.Load() >= cutoff {
		return false
	}
	return r.leave(errEvicted, true)
}

// markDeleted makes every later write and subscription fail with
// ErrDeleted, and ends the subscriptions with a room_deleted event.
func (r *Room) markDeleted() {
	r.leave(ErrDeleted, false)
	r.hub.close(r.id)
}
