package snapshot

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/liveshare/liveshare/graph"
	"github.com/liveshare/liveshare/metrics"
	"github.com/liveshare/liveshare/room"
	"github.com/liveshare/liveshare/store"
)

// Triggers: why a snapshot was taken (DESIGN.md section 4).
const (
	TriggerInterval  = "interval"
	TriggerManual    = "manual"
	TriggerShutdown  = "shutdown"
	TriggerThreshold = "threshold"
	TriggerIdle      = "idle"
	TriggerClear     = "clear"
)

var (
	// ErrTooLarge: the encoded snapshot is over the configured maximum; it
	// was not stored and the room keeps its op log.
	ErrTooLarge = errors.New("snapshot larger than the maximum")
	// ErrUnchanged: the room did not move since its last snapshot, and the
	// trigger only snapshots rooms that moved.
	ErrUnchanged = errors.New("room unchanged since its last snapshot")
)

// Store is what snapshots need of persistence; *store.Store satisfies it.
type Store interface {
	InsertSnapshot(ctx context.Context, n store.NewSnapshot, keep int) (store.SnapshotMeta, int64, error)
	ListSnapshots(ctx context.Context, roomID string) ([]store.SnapshotMeta, error)
	GetSnapshot(ctx context.Context, roomID, id string) (store.Snapshot, error)
	LatestSnapshots(ctx context.Context, roomID string, n int) ([]store.Snapshot, error)
	RoomSnapshotStats(ctx context.Context, roomID string) (store.RoomSnapshotStats, error)
	SnapshotTotals(ctx context.Context) (store.SnapshotTotals, error)
}

// Config tunes snapshots (DESIGN.md section 7).
type Config struct {
	Interval time.Duration // how often the scheduler looks for changed rooms
	Keep     int           // snapshots kept per room, in the database and in memory
	MaxBytes int64         // largest encoded snapshot stored
	Logger   *slog.Logger
	Metrics  *metrics.Metrics // nil records nothing
}

// StateBudget is the most a room's graph.SizeBound may reach so that its
// snapshot always fits maxBytes: the bound is over the uncompressed
// payload, and the rest leaves room for the header, the arrays' and the
// compressor's framing (zstd stores incompressible blocks raw, with a few
// bytes per 128 KiB).
func StateBudget(maxBytes int64) int64 {
	return maxBytes - 4096 - maxBytes/256
}

// Registry holds one Manager per room and runs the scheduler. It satisfies
// room.Snapshots: rooms restore from it at load and ask it for snapshots.
type Registry struct {
	store Store
	cfg   Config
	log   *slog.Logger
	due   chan *room.Room // rooms that gathered SnapshotEveryOps ops

	mu       sync.Mutex
	managers map[string]*Manager

	stats Totals
}

// Totals counts what the registry did since the process started.
type Totals struct {
	Taken    atomic.Int64
	Failures atomic.Int64
	LastRun  atomic.Int64 // unix nanoseconds of the scheduler's last pass
}

// NewRegistry returns a registry over st.
func NewRegistry(st Store, cfg Config) *Registry {
	if cfg.Keep <= 0 {
		cfg.Keep = 10
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Registry{store: st, cfg: cfg, log: cfg.Logger, due: make(chan *room.Room, 64), managers: make(map[string]*Manager)}
}

// Manager is one room's snapshots: it takes them one at a time and keeps
// the newest Keep in memory.
type Manager struct {
	roomID string

	// taking is held for a whole snapshot: never two of one room at once.
	// mu guards the rest and is never held for encoding or storing, so
	// subscribers starting from the cached snapshot do not wait for one.
	taking     sync.Mutex
	mu         sync.Mutex
	cache      []store.Snapshot
	cached     bool // cache holds the newest Keep stored snapshots
	lastEncode time.Duration
	// event is the newest snapshot's SSE event data, encoded once and
	// shared by every subscriber that starts from it.
	event   []byte
	eventID string
}

func (reg *Registry) manager(roomID string) *Manager {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	m, ok := reg.managers[roomID]
	if !ok {
		m = &Manager{roomID: roomID}
		reg.managers[roomID] = m
	}
	return m
}

// Reread makes the next use of the room's snapshots read them from the
// store again, for when another instance may have stored newer ones.
func (reg *Registry) Reread(roomID string) {
	m := reg.manager(roomID)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cached = false
}

// Forget drops a room's manager and its cached snapshots, for a room that
// left memory or was deleted. It satisfies room.Snapshots.
func (reg *Registry) Forget(roomID string) {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	delete(reg.managers, roomID)
}

// Take snapshots r now. Every trigger but manual and clear returns
// ErrUnchanged for a room that did not move since its last snapshot. The
// room's writers wait only while its elements are copied; sorting,
// encoding and storing happen outside its lock.
func (reg *Registry) Take(ctx context.Context, r *room.Room, trigger string) (store.SnapshotMeta, error) {
	m := reg.manager(r.ID())
	m.taking.Lock()
	defer m.taking.Unlock()
	return reg.take(ctx, m, r, trigger, reg.cfg.Keep)
}

// take snapshots r keeping keep snapshots; the caller holds m.taking.
func (reg *Registry) take(ctx context.Context, m *Manager, r *room.Room, trigger string, keep int) (store.SnapshotMeta, error) {
	if trigger != TriggerManual && trigger != TriggerClear && !r.Changed() {
		reg.cfg.Metrics.Snapshot(trigger, metrics.SnapshotUnchanged, 0, 0)
		return store.SnapshotMeta{}, ErrUnchanged
	}
	state, version := r.Capture()
	start := time.Now()
	state.Sort()
	data, err := Encode(state, version)
	encodeTime := time.Since(start)
	if err != nil {
		reg.stats.Failures.Add(1)
		reg.cfg.Metrics.Snapshot(trigger, metrics.SnapshotFailed, 0, 0)
		return store.SnapshotMeta{}, fmt.Errorf("snapshot room %s: %w", r.ID(), err)
	}
	if int64(len(data)) > reg.cfg.MaxBytes {
		reg.stats.Failures.Add(1)
		reg.cfg.Metrics.Snapshot(trigger, metrics.SnapshotTooLarge, encodeTime, len(data))
		reg.log.ErrorContext(ctx, "snapshot not stored: too large", "room_id", r.ID(), "version", version,
			"size_bytes", len(data), "max_bytes", reg.cfg.MaxBytes, "trigger", trigger)
		return store.SnapshotMeta{}, fmt.Errorf("snapshot room %s: %d bytes: %w", r.ID(), len(data), ErrTooLarge)
	}
	meta, pruned, err := reg.store.InsertSnapshot(ctx, store.NewSnapshot{
		RoomID: r.ID(), Version: version, ElementCount: int64(len(state.Nodes) + len(state.Edges)),
		Trigger: trigger, Format: FormatVersion, Data: data,
	}, keep)
	if err != nil {
		reg.stats.Failures.Add(1)
		reg.cfg.Metrics.Snapshot(trigger, metrics.SnapshotFailed, encodeTime, len(data))
		return store.SnapshotMeta{}, fmt.Errorf("store snapshot of room %s: %w", r.ID(), err)
	}
	reg.cfg.Metrics.Snapshot(trigger, metrics.SnapshotStored, encodeTime, len(data))
	r.SnapshotStored(version)
	m.mu.Lock()
	m.lastEncode = encodeTime
	m.remember(store.Snapshot{SnapshotMeta: meta, Data: data}, keep)
	m.mu.Unlock()
	reg.stats.Taken.Add(1)
	reg.log.InfoContext(ctx, "snapshot stored", "room_id", r.ID(), "version", version, "trigger", trigger,
		"size_bytes", len(data), "elements", meta.ElementCount, "encode", encodeTime, "ops_pruned", pruned)
	return meta, nil
}

// remember puts a stored snapshot into the cache in store order; m.mu is
// held.
func (m *Manager) remember(s store.Snapshot, keep int) {
	if !m.cached {
		return // loaded from the store on first use
	}
	for _, c := range m.cache {
		if c.ID == s.ID {
			return // the cache was read from the store after the insert
		}
	}
	m.cache = append(m.cache, s)
	slices.SortStableFunc(m.cache, func(a, b store.Snapshot) int {
		switch {
		case a.Version != b.Version:
			return cmp.Compare(b.Version, a.Version)
		case !a.CreatedAt.Equal(b.CreatedAt):
			return b.CreatedAt.Compare(a.CreatedAt)
		}
		return cmp.Compare(a.ID, b.ID)
	})
	if len(m.cache) > keep {
		m.cache = m.cache[:keep]
	}
}

// loadCacheLocked fills the cache from the store.
func (reg *Registry) loadCacheLocked(ctx context.Context, m *Manager) error {
	if m.cached {
		return nil
	}
	snaps, err := reg.store.LatestSnapshots(ctx, m.roomID, reg.cfg.Keep)
	if err != nil {
		return fmt.Errorf("read snapshots of room %s: %w", m.roomID, err)
	}
	m.cache, m.cached = snaps, true
	return nil
}

// Latest returns the room's newest stored snapshot, from memory when it can;
// store.ErrSnapshotNotFound when it has none.
func (reg *Registry) Latest(ctx context.Context, roomID string) (store.Snapshot, error) {
	m := reg.manager(roomID)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := reg.loadCacheLocked(ctx, m); err != nil {
		return store.Snapshot{}, err
	}
	if len(m.cache) == 0 {
		return store.Snapshot{}, store.ErrSnapshotNotFound
	}
	return m.cache[0], nil
}

// Get returns one of the room's snapshots, from memory when it can.
func (reg *Registry) Get(ctx context.Context, roomID, id string) (store.Snapshot, error) {
	m := reg.manager(roomID)
	m.mu.Lock()
	if err := reg.loadCacheLocked(ctx, m); err != nil {
		m.mu.Unlock()
		return store.Snapshot{}, err
	}
	for _, s := range m.cache {
		if s.ID == id {
			m.mu.Unlock()
			return s, nil
		}
	}
	m.mu.Unlock()
	return reg.store.GetSnapshot(ctx, roomID, id)
}

// List returns the metadata of the room's snapshots, newest first.
func (reg *Registry) List(ctx context.Context, roomID string) ([]store.SnapshotMeta, error) {
	return reg.store.ListSnapshots(ctx, roomID)
}

// StartEvent returns the data of the snapshot event a new subscriber starts
// from: the room's newest stored snapshot (or an empty state at version 0
// when it has none) and its version. The encoding is shared by every
// subscriber that starts from the same snapshot.
func (reg *Registry) StartEvent(ctx context.Context, roomID string) ([]byte, int64, error) {
	m := reg.manager(roomID)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := reg.loadCacheLocked(ctx, m); err != nil {
		return nil, 0, err
	}
	if len(m.cache) == 0 {
		data, err := json.Marshal(room.SnapshotData{State: graph.State{Nodes: []graph.Node{}, Edges: []graph.Edge{}}})
		return data, 0, err
	}
	latest := m.cache[0]
	if m.eventID != latest.ID {
		state, version, err := Decode(latest.Data)
		if err != nil {
			return nil, 0, fmt.Errorf("decode snapshot %s of room %s: %w", latest.ID, roomID, err)
		}
		id := latest.ID
		at := latest.CreatedAt
		data, err := json.Marshal(room.SnapshotData{SnapshotID: &id, Version: version, CreatedAt: &at,
			ElementCount: len(state.Nodes) + len(state.Edges), State: state})
		if err != nil {
			return nil, 0, fmt.Errorf("encode snapshot event: %w", err)
		}
		m.event, m.eventID = data, latest.ID
	}
	return m.event, latest.Version, nil
}

// Restore returns the room's graph from its newest stored snapshot that
// decodes and verifies, logging each one rejected; nil when none does. It
// satisfies room.Snapshots.
func (reg *Registry) Restore(ctx context.Context, roomID string) (*graph.Graph, int64, error) {
	m := reg.manager(roomID)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cached = false // the room is loading: read what is stored now
	if err := reg.loadCacheLocked(ctx, m); err != nil {
		return nil, 0, err
	}
	for i, s := range m.cache {
		g, version, err := DecodeGraph(s.Data)
		if err == nil && version != s.Version {
			err = fmt.Errorf("its data is at version %d", version)
		}
		if err != nil {
			reg.log.ErrorContext(ctx, "stored snapshot rejected", "room_id", roomID, "snapshot_id", s.ID,
				"version", s.Version, "err", err)
			continue
		}
		// Rejected snapshots stay out of the cache so nobody serves them.
		m.cache = m.cache[i:]
		return g, version, nil
	}
	m.cache = nil
	return nil, 0, nil
}

// Due asks the scheduler, without blocking, to snapshot r (trigger
// threshold). It satisfies room.Snapshots. When the queue is full the
// interval pass picks the room up.
func (reg *Registry) Due(r *room.Room) {
	select {
	case reg.due <- r:
	default:
	}
}

// Evicting snapshots r before it leaves memory (trigger idle). It satisfies
// room.Snapshots.
func (reg *Registry) Evicting(ctx context.Context, r *room.Room) {
	reg.takeLogged(ctx, r, TriggerIdle)
}

func (reg *Registry) takeLogged(ctx context.Context, r *room.Room, trigger string) {
	_, err := reg.Take(ctx, r, trigger)
	switch {
	case err == nil, errors.Is(err, ErrUnchanged), errors.Is(err, ErrTooLarge):
	case errors.Is(err, store.ErrNotFound):
		// Deleted meanwhile: nothing to keep.
	default:
		reg.log.ErrorContext(ctx, "snapshot failed", "room_id", r.ID(), "trigger", trigger, "err", err)
	}
}

// Clear deletes the room's snapshots, then takes a fresh one (trigger
// clear) so that recovery stays possible.
func (reg *Registry) Clear(ctx context.Context, r *room.Room) (store.SnapshotMeta, error) {
	m := reg.manager(r.ID())
	m.taking.Lock()
	defer m.taking.Unlock()
	// Keeping one in the transaction that inserts the fresh snapshot
	// deletes all the others with it: a crash can never leave the room
	// with a pruned log and no snapshot.
	meta, err := reg.take(ctx, m, r, TriggerClear, 1)
	if err != nil {
		return store.SnapshotMeta{}, fmt.Errorf("clear snapshots of room %s: %w", r.ID(), err)
	}
	return meta, nil
}

// RoomStats is a room's snapshot statistics.
type RoomStats struct {
	store.RoomSnapshotStats
	LastEncode time.Duration
}

// Stats returns the room's snapshot statistics.
func (reg *Registry) Stats(ctx context.Context, roomID string) (RoomStats, error) {
	st, err := reg.store.RoomSnapshotStats(ctx, roomID)
	if err != nil {
		return RoomStats{}, fmt.Errorf("snapshot stats of room %s: %w", roomID, err)
	}
	m := reg.manager(roomID)
	m.mu.Lock()
	defer m.mu.Unlock()
	return RoomStats{RoomSnapshotStats: st, LastEncode: m.lastEncode}, nil
}

// Totals returns the process's counters.
func (reg *Registry) Totals() *Totals { return &reg.stats }

// StoredTotals returns the totals over every room in the database.
func (reg *Registry) StoredTotals(ctx context.Context) (store.SnapshotTotals, error) {
	return reg.store.SnapshotTotals(ctx)
}

// Run is the scheduler: every Interval it snapshots, one after another,
// each live room that moved since its last snapshot (trigger interval), and
// between passes the rooms that gathered SnapshotEveryOps ops (trigger
// threshold). It returns when ctx is done; the caller owns its goroutine.
func (reg *Registry) Run(ctx context.Context, rooms *room.Manager) {
	t := time.NewTicker(reg.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-reg.due:
			reg.takeLogged(ctx, r, TriggerThreshold)
		case <-t.C:
			reg.SnapshotChanged(ctx, rooms, TriggerInterval)
			reg.stats.LastRun.Store(time.Now().UnixNano())
		}
	}
}

// SnapshotChanged snapshots every live room that moved since its last
// snapshot, one after another; shutdown calls it with TriggerShutdown.
func (reg *Registry) SnapshotChanged(ctx context.Context, rooms *room.Manager, trigger string) {
	for _, r := range rooms.Live() {
		if ctx.Err() != nil {
			return
		}
		if r.Changed() {
			reg.takeLogged(ctx, r, trigger)
		}
	}
}
