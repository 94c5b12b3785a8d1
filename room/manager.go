package room

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/liveshare/liveshare/graph"
	"github.com/liveshare/liveshare/metrics"
)

// replayPage is how many logged ops a load reads per query.
const replayPage = 5000

// DefaultQueueSize is the default bound of a subscriber's event queue.
const DefaultQueueSize = 256

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
	Logger           *slog.Logger
	// Metrics records commits, room loads and slow subscribers; nil
	// records nothing.
	Metrics *metrics.Metrics
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Manager holds the live rooms of this process, loading each on first use.
type Manager struct {
	store Store
	opts  Options
	log   *slog.Logger

	mu    sync.Mutex
	rooms map[string]*loading
}

// loading is a room being loaded or loaded; done is closed when room or err is set.
type loading struct {
	done chan struct{}
	room *Room
	err  error
}

// NewManager returns a Manager over st.
func NewManager(st Store, opts Options) *Manager {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = DefaultQueueSize
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Manager{store: st, opts: opts, log: opts.Logger, rooms: make(map[string]*loading)}
}

// Get returns the live room id, loading it from the store if it is not in
// memory. Concurrent Gets of the same room share one load. It returns an
// error wrapping store.ErrNotFound for a room that does not exist.
func (m *Manager) Get(ctx context.Context, id string) (*Room, error) {
	m.mu.Lock()
	l, ok := m.rooms[id]
	if !ok {
		l = &loading{done: make(chan struct{})}
		m.rooms[id] = l
		m.mu.Unlock()
		// The load must not die with the first caller's request context:
		// others may be waiting for it.
		l.room, l.err = m.load(context.WithoutCancel(ctx), id)
		if l.err != nil {
			m.mu.Lock()
			if m.rooms[id] == l {
				delete(m.rooms, id)
			}
			m.mu.Unlock()
		}
		close(l.done)
	} else {
		m.mu.Unlock()
	}

	select {
	case <-l.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if l.err != nil {
		return nil, l.err
	}
	l.room.touch(m.opts.Now())
	return l.room, nil
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
// room if needed and following it if it is evicted meanwhile.
func (m *Manager) Subscribe(ctx context.Context, id, name string) (*Room, Join, error) {
	for {
		r, err := m.Get(ctx, id)
		if err != nil {
			return nil, Join{}, err
		}
		j, err := r.Subscribe(name)
		if !errors.Is(err, errEvicted) {
			return r, j, err
		}
	}
}

func (m *Manager) load(ctx context.Context, id string) (*Room, error) {
	start := m.opts.Now()
	began := time.Now()
	info, err := m.store.GetRoom(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("load room %s: %w", id, err)
	}
	r := &Room{id: id, store: m.store, hub: newHub(m.opts.QueueSize, m.opts.Metrics), now: m.opts.Now,
		budget: m.opts.StateBudget, snapshots: m.opts.Snapshots, everyOps: m.opts.SnapshotEveryOps,
		metrics: m.opts.Metrics, g: graph.New()}
	from := "op log"
	if m.opts.Snapshots != nil {
		g, version, err := m.opts.Snapshots.Restore(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("load room %s: %w", id, err)
		}
		if g != nil {
			r.g, r.version, r.snapVersion = g, version, version
			from = fmt.Sprintf("snapshot at version %d", version)
		}
	}
	if r.version < info.PrunedThrough {
		return nil, fmt.Errorf("load room %s: no usable snapshot, and the op log starts after version %d: %w",
			id, info.PrunedThrough, ErrUnrecoverable)
	}
	replayed := 0
	for {
		recs, err := m.store.OpsSince(ctx, id, r.version, replayPage)
		if err != nil {
			return nil, fmt.Errorf("load room %s: %w", id, err)
		}
		for _, rec := range recs {
			if _, err := r.replayLocked(rec); err != nil {
				return nil, fmt.Errorf("load: %w", err)
			}
			r.markDirtyLocked(rec.CreatedAt)
		}
		replayed += len(recs)
		if len(recs) < replayPage {
			break
		}
	}
	r.touch(m.opts.Now())
	m.opts.Metrics.RoomLoaded(time.Since(began))
	m.log.InfoContext(ctx, "room loaded", "room_id", id, "version", r.version, "from", from, "ops_replayed", replayed,
		"elements", r.g.ElementCount(), "duration", m.opts.Now().Sub(start))
	return r, nil
}

// Forget drops a deleted room from memory; later writes through a Room value
// still held by a request fail with ErrDeleted.
func (m *Manager) Forget(id string) {
	m.mu.Lock()
	l, ok := m.rooms[id]
	delete(m.rooms, id)
	m.mu.Unlock()
	if ok {
		<-l.done
		if l.room != nil {
			l.room.markDeleted()
		}
	}
	if m.opts.Snapshots != nil {
		m.opts.Snapshots.Forget(id)
	}
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
func (m *Manager) EvictIdle(ctx context.Context) int {
	if m.opts.IdleTimeout <= 0 {
		return 0
	}
	cutoff := m.opts.Now().Add(-m.opts.IdleTimeout).UnixNano()
	var idle []*Room
	for _, r := range m.Live() {
		if r.lastUsed.Load() < cutoff && r.Subscribers() == 0 {
			idle = append(idle, r)
		}
	}
	n := 0
	for _, r := range idle {
		if m.opts.Snapshots != nil && r.Changed() {
			m.opts.Snapshots.Evicting(ctx, r)
		}
		m.mu.Lock()
		evicted := false
		if l, ok := m.rooms[r.id]; ok && l.room == r && r.evictIfIdle(cutoff) {
			delete(m.rooms, r.id)
			evicted = true
			n++
		}
		m.mu.Unlock()
		if evicted && m.opts.Snapshots != nil {
			// Its snapshots' cache goes too; a later load reads them again.
			m.opts.Snapshots.Forget(r.id)
		}
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
