package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

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
	// TriggerCheckpoint marks a snapshot kept for history beside the
	// newest Keep (Config.Hourly, Config.Daily).
	TriggerCheckpoint = store.TriggerCheckpoint
)

var (
	// ErrTooLarge: the encoded snapshot is over the configured maximum; it
	// was not stored and the room keeps its op log.
	ErrTooLarge = errors.New("snapshot larger than the maximum")
	// ErrUnchanged: the room did not move since its last snapshot, and the
	// trigger only snapshots rooms that moved; or another instance
	// snapshotted it just now.
	ErrUnchanged = errors.New("room unchanged since its last snapshot")
)

// Store is what snapshots need of persistence; *store.Store satisfies it.
type Store interface {
	InsertSnapshot(ctx context.Context, n store.NewSnapshot, keep int) (store.SnapshotMeta, int64, error)
	InsertSnapshotRetaining(ctx context.Context, n store.NewSnapshot, ret store.Retention) (store.SnapshotMeta, int64, error)
	LatestCheckpointMeta(ctx context.Context, roomID string) (store.SnapshotMeta, bool, error)
	ClearSnapshots(ctx context.Context, n store.NewSnapshot) (store.SnapshotMeta, int64, error)
	ListSnapshots(ctx context.Context, roomID string) ([]store.SnapshotMeta, error)
	SnapshotMetas(ctx context.Context, roomID string, limit int) ([]store.SnapshotMeta, error)
	LatestSnapshotMeta(ctx context.Context, roomID string) (store.SnapshotMeta, error)
	GetSnapshot(ctx context.Context, roomID, id string) (store.Snapshot, error)
	GetSnapshotMeta(ctx context.Context, roomID, id string) (store.SnapshotMeta, error)
	RoomSnapshotStats(ctx context.Context, roomID string) (store.RoomSnapshotStats, error)
	SnapshotTotals(ctx context.Context) (store.SnapshotTotals, error)
}

// DefaultCacheBytes bounds what a Registry keeps in memory by default.
const DefaultCacheBytes = 64 << 20

// DefaultTakeTimeout bounds by default each snapshot a Registry takes on its
// own.
const DefaultTakeTimeout = 30 * time.Second

// Config tunes snapshots (DESIGN.md section 7).
type Config struct {
	Interval time.Duration // how often the scheduler looks for changed rooms
	Keep     int           // snapshots kept per room
	MaxBytes int64         // largest encoded snapshot stored
	// CacheBytes bounds what is kept in memory: the blobs this process
	// stored for its live rooms, and the events built from stored
	// snapshots that new subscribers share. Zero means DefaultCacheBytes.
	CacheBytes int64
	// TakeTimeout bounds each snapshot taken on the registry's own
	// initiative (interval, threshold, idle, shutdown), so that a room whose
	// database calls hang holds up neither the scheduler's other rooms nor
	// the eviction of others; it also bounds the shared build of a start
	// event, which no single subscriber's context may end. Zero means
	// DefaultTakeTimeout.
	TakeTimeout time.Duration
	// Shared says other instances may snapshot the same rooms: the
	// scheduler then skips a room another instance snapshotted within the
	// interval.
	Shared bool
	// Hourly and Daily keep history (DESIGN.md section 11): a snapshot the
	// registry takes on its own becomes a checkpoint when the room has none
	// yet in the current hour (Hourly > 0) or day (Daily > 0, Hourly 0),
	// and the store keeps one checkpoint per hour for Hourly and one per
	// day for Daily, with the ops after them. Both 0: no checkpoints, ops
	// pruned to the oldest of the newest Keep snapshots.
	Hourly, Daily time.Duration
	// Now is the clock checkpoints are due by; nil means time.Now. It
	// should be the store's clock (store.Config.Now), which stamps them.
	Now     func() time.Time
	Logger  *slog.Logger
	Metrics *metrics.Metrics // nil records nothing
}

// StateBudget is the most a room's graph.SizeBound may reach so that its
// snapshot always fits maxBytes: the bound is over the uncompressed
// payload, and the rest leaves room for the header, the arrays' and the
// compressor's framing (zstd stores incompressible blocks raw, with a few
// bytes per 128 KiB).
func StateBudget(maxBytes int64) int64 {
	return maxBytes - 4096 - maxBytes/256
}

// Registry takes rooms' snapshots and serves them. It satisfies
// room.Snapshots: rooms restore from it at load and ask it for snapshots.
//
// What it reads from the store is always current (so another instance's
// snapshots are seen at once): metadata is read for every use, and a blob
// is read one at a time, from the cache when it is there. The cache is
// bounded in bytes and holds only what pays: blobs this process just stored
// for its live rooms, and the events new subscribers start from, each built
// once (one build at a time per snapshot) outside any lock that writers or
// subscribers wait on.
type Registry struct {
	store Store
	cfg   Config
	log   *slog.Logger
	due   chan *room.Room // rooms that gathered SnapshotEveryOps ops

	mu    sync.Mutex
	rooms map[string]*roomSnaps

	cache *byteLRU
	build singleflight.Group

	stats Totals
}

// roomSnaps is what a Registry keeps of one live room.
type roomSnaps struct {
	// taking is held for a whole snapshot: never two of one room at once
	// in this process (the store's one-row-per-version rule covers
	// several processes).
	taking     sync.Mutex
	lastEncode atomic.Int64 // nanoseconds
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
	if cfg.CacheBytes <= 0 {
		cfg.CacheBytes = DefaultCacheBytes
	}
	if cfg.TakeTimeout <= 0 {
		cfg.TakeTimeout = DefaultTakeTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Registry{store: st, cfg: cfg, log: cfg.Logger, due: make(chan *room.Room, 64),
		rooms: make(map[string]*roomSnaps), cache: newByteLRU(cfg.CacheBytes)}
}

func (reg *Registry) room(roomID string) *roomSnaps {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	rs, ok := reg.rooms[roomID]
	if !ok {
		rs = &roomSnaps{}
		reg.rooms[roomID] = rs
	}
	return rs
}

// Forget drops what is kept of a room that left memory or was deleted. It
// satisfies room.Snapshots.
func (reg *Registry) Forget(roomID string) {
	reg.mu.Lock()
	delete(reg.rooms, roomID)
	reg.mu.Unlock()
	reg.cache.dropRoom(roomID)
}

// CachedBytes returns how many bytes the cache holds.
func (reg *Registry) CachedBytes() int64 { return reg.cache.bytes() }

// Take snapshots r now. Every trigger but manual and clear returns
// ErrUnchanged for a room that did not move since its last snapshot. A
// manual snapshot of a room whose version already has one returns
// store.ErrSnapshotExists with a meta holding only that version. The room's
// writers wait only while its graph is frozen (a few hundred pointer
// copies); encoding and storing happen outside its lock.
func (reg *Registry) Take(ctx context.Context, r *room.Room, trigger string) (store.SnapshotMeta, error) {
	return reg.take(ctx, r, trigger, nil)
}

// take is Take; audit, for a clear, is recorded in its transaction.
func (reg *Registry) take(ctx context.Context, r *room.Room, trigger string, audit *store.AuditEntry) (store.SnapshotMeta, error) {
	rs := reg.room(r.ID())
	rs.taking.Lock()
	defer rs.taking.Unlock()
	if trigger == TriggerManual {
		// Asked again and again of a large room that did not change, a
		// manual snapshot would encode it each time only to find its
		// version stored: the store's newest snapshot tells first, in one
		// small read (whichever instance stored it).
		version := r.Version()
		if latest, err := reg.store.LatestSnapshotMeta(ctx, r.ID()); err == nil && latest.Version >= version {
			r.SnapshotStored(latest.Version)
			reg.cfg.Metrics.Snapshot(trigger, metrics.SnapshotUnchanged, 0, 0)
			return store.SnapshotMeta{RoomID: r.ID(), Version: version}, store.ErrSnapshotExists
		}
	}
	if trigger != TriggerManual && trigger != TriggerClear {
		if !r.Changed() {
			reg.cfg.Metrics.Snapshot(trigger, metrics.SnapshotUnchanged, 0, 0)
			return store.SnapshotMeta{}, ErrUnchanged
		}
		if reg.cfg.Shared && trigger == TriggerInterval && reg.takenElsewhere(ctx, r) {
			reg.cfg.Metrics.Snapshot(trigger, metrics.SnapshotUnchanged, 0, 0)
			return store.SnapshotMeta{}, ErrUnchanged
		}
	}
	if trigger != TriggerManual && trigger != TriggerClear && reg.checkpointDue(ctx, r.ID()) {
		trigger = TriggerCheckpoint
	}
	// The room's lock is held only to freeze its graph; the snapshot is
	// written from the frozen view, in id order, beside the writers.
	view, version := r.Freeze()
	start := time.Now()
	data, err := EncodeFrozen(view, version)
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
	n := store.NewSnapshot{RoomID: r.ID(), Version: version, ElementCount: int64(view.ElementCount()),
		Trigger: trigger, Format: FormatVersion, Data: data, Audit: audit}
	var (
		meta   store.SnapshotMeta
		pruned int64
	)
	switch {
	case trigger == TriggerClear:
		meta, pruned, err = reg.store.ClearSnapshots(ctx, n)
	case reg.keepsHistory():
		meta, pruned, err = reg.store.InsertSnapshotRetaining(ctx, n,
			store.Retention{Keep: reg.cfg.Keep, Hourly: reg.cfg.Hourly, Daily: reg.cfg.Daily})
	default:
		meta, pruned, err = reg.store.InsertSnapshot(ctx, n, reg.cfg.Keep)
	}
	if errors.Is(err, store.ErrSnapshotExists) {
		// This version is stored already, by another instance or before.
		r.SnapshotStored(version)
		reg.cfg.Metrics.Snapshot(trigger, metrics.SnapshotUnchanged, encodeTime, len(data))
		return store.SnapshotMeta{RoomID: r.ID(), Version: version}, err
	}
	if err != nil {
		reg.stats.Failures.Add(1)
		reg.cfg.Metrics.Snapshot(trigger, metrics.SnapshotFailed, encodeTime, len(data))
		return store.SnapshotMeta{}, fmt.Errorf("store snapshot of room %s: %w", r.ID(), err)
	}
	reg.cfg.Metrics.Snapshot(trigger, metrics.SnapshotStored, encodeTime, len(data))
	r.SnapshotStored(version)
	rs.lastEncode.Store(int64(encodeTime))
	// New subscribers start from this one: keep its bytes at hand.
	reg.cache.put(blobKey(meta.ID), r.ID(), store.Snapshot{SnapshotMeta: meta, Data: data}, int64(len(data)))
	reg.stats.Taken.Add(1)
	reg.log.InfoContext(ctx, "snapshot stored", "room_id", r.ID(), "version", version, "trigger", trigger,
		"size_bytes", len(data), "elements", meta.ElementCount, "encode", encodeTime, "ops_pruned", pruned)
	return meta, nil
}

func (reg *Registry) keepsHistory() bool { return reg.cfg.Hourly > 0 || reg.cfg.Daily > 0 }

// checkpointDue reports whether the room's next snapshot should be a
// checkpoint: history is kept and its newest checkpoint is from an earlier
// hour (or day, when only days are kept), or it has none. Should the store
// not answer, the snapshot stays an ordinary one; the next is asked again.
func (reg *Registry) checkpointDue(ctx context.Context, roomID string) bool {
	if !reg.keepsHistory() {
		return false
	}
	latest, ok, err := reg.store.LatestCheckpointMeta(ctx, roomID)
	if err != nil {
		reg.log.WarnContext(ctx, "checkpoint check failed", "room_id", roomID, "err", err)
		return false
	}
	if !ok {
		return true
	}
	now, at := reg.cfg.Now().UTC(), latest.CreatedAt.UTC()
	if reg.cfg.Hourly > 0 {
		return !at.Truncate(time.Hour).Equal(now.Truncate(time.Hour))
	}
	return at.YearDay() != now.YearDay() || at.Year() != now.Year()
}

// takenElsewhere reports whether the room's newest snapshot in the store
// already holds its version, or was stored (by another instance) within
// most of an interval: the room is then left for the next pass.
func (reg *Registry) takenElsewhere(ctx context.Context, r *room.Room) bool {
	latest, err := reg.store.LatestSnapshotMeta(ctx, r.ID())
	if err != nil {
		return false
	}
	if latest.Version >= r.Version() {
		r.SnapshotStored(latest.Version)
		return true
	}
	return time.Since(latest.CreatedAt) < reg.cfg.Interval*9/10
}

func blobKey(id string) string  { return "blob:" + id }
func eventKey(id string) string { return "event:" + id }

// blob returns a stored snapshot with its data: from the cache, or read
// from the store (one blob).
func (reg *Registry) blob(ctx context.Context, roomID, id string) (store.Snapshot, error) {
	if v, ok := reg.cache.get(blobKey(id)); ok {
		if s := v.(store.Snapshot); s.RoomID == roomID {
			return s, nil
		}
	}
	s, err := reg.store.GetSnapshot(ctx, roomID, id)
	if errors.Is(err, store.ErrSealOpen) {
		// Altered, or moved from another room or version: as unusable as
		// a snapshot whose checksum fails, and handled the same way.
		return store.Snapshot{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return s, err
}

// rejected logs and counts a stored snapshot passed over as unusable.
func (reg *Registry) rejected(ctx context.Context, roomID, id string, version int64, err error) {
	reason := metrics.SnapshotCorrupt
	if errors.Is(err, store.ErrSealOpen) {
		reason = metrics.SnapshotUnsealable
	}
	reg.cfg.Metrics.SnapshotRejected(reason)
	reg.log.ErrorContext(ctx, "stored snapshot rejected", "room_id", roomID, "snapshot_id", id,
		"version", version, "reason", reason, "err", err)
}

// Latest returns the room's newest stored snapshot whose header and
// checksum verify (an older one when the newest does not, as a load does);
// store.ErrSnapshotNotFound when it has none.
func (reg *Registry) Latest(ctx context.Context, roomID string) (store.Snapshot, error) {
	for attempt := 0; attempt < 3; attempt++ {
		metas, err := reg.store.SnapshotMetas(ctx, roomID, reg.cfg.Keep)
		if err != nil {
			return store.Snapshot{}, fmt.Errorf("read snapshots of room %s: %w", roomID, err)
		}
		trimmed := false
		for _, meta := range metas {
			s, err := reg.blob(ctx, roomID, meta.ID)
			if errors.Is(err, store.ErrSnapshotNotFound) {
				trimmed = true // by a newer one, meanwhile: read again
				break
			}
			if err == nil {
				err = Verify(s.Data)
			}
			if errors.Is(err, ErrMalformed) {
				reg.rejected(ctx, roomID, meta.ID, meta.Version, err)
				continue
			}
			if err != nil {
				return store.Snapshot{}, err
			}
			return s, nil
		}
		if !trimmed {
			break
		}
	}
	return store.Snapshot{}, fmt.Errorf("latest snapshot of room %s: %w", roomID, store.ErrSnapshotNotFound)
}

// Get returns one of the room's stored snapshots. Whether it is still
// stored is asked of the store (another instance may have trimmed it); its
// data comes from the cache when it is there.
func (reg *Registry) Get(ctx context.Context, roomID, id string) (store.Snapshot, error) {
	if _, err := reg.store.GetSnapshotMeta(ctx, roomID, id); err != nil {
		return store.Snapshot{}, err
	}
	return reg.blob(ctx, roomID, id)
}

// List returns the metadata of the room's snapshots, newest first.
func (reg *Registry) List(ctx context.Context, roomID string) ([]store.SnapshotMeta, error) {
	return reg.store.ListSnapshots(ctx, roomID)
}

// StartEvent returns the data of the snapshot event a new subscriber starts
// from, and its version: the room's newest stored snapshot that verifies
// (an older one when it does not, as a load does), or an empty state at
// version 0 when it has none. The event is built once per snapshot and
// shared by every subscriber that starts from it.
func (reg *Registry) StartEvent(ctx context.Context, roomID string) ([]byte, int64, error) {
	metas, err := reg.store.SnapshotMetas(ctx, roomID, reg.cfg.Keep)
	if err != nil {
		return nil, 0, fmt.Errorf("read snapshots of room %s: %w", roomID, err)
	}
	for _, meta := range metas {
		data, err := reg.snapshotEvent(ctx, meta)
		if errors.Is(err, ErrMalformed) {
			continue // logged by snapshotEvent, once
		}
		if errors.Is(err, store.ErrSnapshotNotFound) {
			return reg.StartEvent(ctx, roomID) // trimmed meanwhile
		}
		if err != nil {
			return nil, 0, err
		}
		return data, meta.Version, nil
	}
	data, err := json.Marshal(room.SnapshotData{State: graph.State{Nodes: []graph.Node{}, Edges: []graph.Edge{}}})
	return data, 0, err
}

// snapshotEvent returns the snapshot event data of one stored snapshot,
// built at most once at a time, and kept in the cache.
func (reg *Registry) snapshotEvent(ctx context.Context, meta store.SnapshotMeta) ([]byte, error) {
	key := eventKey(meta.ID)
	if v, ok := reg.cache.get(key); ok {
		if err, bad := v.(error); bad {
			return nil, err
		}
		return v.([]byte), nil
	}
	// The build is shared: it must not die with the subscriber that
	// started it, but it has a deadline of its own, and every subscriber
	// waits for it only until its own context ends.
	built := reg.build.DoChan(key, func() (any, error) {
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), reg.cfg.TakeTimeout)
		defer cancel()
		s, err := reg.blob(bctx, meta.RoomID, meta.ID)
		if err != nil && !errors.Is(err, ErrMalformed) {
			return nil, err
		}
		var (
			state   graph.State
			version int64
		)
		if err == nil {
			state, version, err = Decode(s.Data)
		}
		if err == nil && version != s.Version {
			err = fmt.Errorf("its data is at version %d: %w", version, ErrMalformed)
		}
		if err != nil {
			reg.rejected(ctx, meta.RoomID, meta.ID, meta.Version, err)
			// Remember the rejection, so that reconnecting subscribers do
			// not decode it again and again.
			reg.cache.put(key, meta.RoomID, err, 64)
			return nil, err
		}
		at := s.CreatedAt
		id := s.ID
		data, err := json.Marshal(room.SnapshotData{SnapshotID: &id, Version: version, CreatedAt: &at,
			ElementCount: len(state.Nodes) + len(state.Edges), State: state})
		if err != nil {
			return nil, fmt.Errorf("encode snapshot event: %w", err)
		}
		reg.cache.put(key, meta.RoomID, data, int64(len(data)))
		return data, nil
	})
	select {
	case res := <-built:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.([]byte), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("snapshot event of snapshot %s: %w", meta.ID, ctx.Err())
	}
}

// SharedEvent returns the event data cached under key for the room, or
// builds it with build, once at a time, and caches it: for events as
// expensive as a reset replayed to every reconnecting subscriber.
func (reg *Registry) SharedEvent(roomID, key string, build func() ([]byte, error)) ([]byte, error) {
	key = "shared:" + roomID + ":" + key
	if v, ok := reg.cache.get(key); ok {
		return v.([]byte), nil
	}
	v, err, _ := reg.build.Do(key, func() (any, error) {
		data, err := build()
		if err != nil {
			return nil, err
		}
		reg.cache.put(key, roomID, data, int64(len(data)))
		return data, nil
	})
	if err != nil {
		return nil, err
	}
	return v.([]byte), nil
}

// ResetEventKey names the event of a logged reset op for SharedEvent.
func ResetEventKey(seq int64) string { return "reset:" + strconv.FormatInt(seq, 10) }

// Restore returns the room's state from its newest stored snapshot that
// decodes and verifies, reading one blob at a time and logging each one
// rejected; ok is false when none does. It satisfies room.Snapshots.
func (reg *Registry) Restore(ctx context.Context, roomID string) (room.Restored, bool, error) {
	metas, err := reg.store.SnapshotMetas(ctx, roomID, reg.cfg.Keep)
	if err != nil {
		return room.Restored{}, false, fmt.Errorf("read snapshots of room %s: %w", roomID, err)
	}
	for _, meta := range metas {
		s, err := reg.blob(ctx, roomID, meta.ID)
		if errors.Is(err, store.ErrSnapshotNotFound) {
			continue // trimmed meanwhile: an older one may do, and the load checks pruning
		}
		if err != nil && !errors.Is(err, ErrMalformed) {
			return room.Restored{}, false, fmt.Errorf("read snapshot %s of room %s: %w", meta.ID, roomID, err)
		}
		var (
			g       *graph.Graph
			version int64
		)
		if err == nil {
			g, version, err = DecodeStored(s.Data)
		}
		if err == nil && version != s.Version {
			err = fmt.Errorf("its data is at version %d", version)
		}
		if err != nil {
			reg.rejected(ctx, roomID, meta.ID, meta.Version, err)
			continue
		}
		return room.Restored{Graph: g, Version: version, SnapshotID: s.ID, CreatedAt: s.CreatedAt}, true, nil
	}
	return room.Restored{}, false, nil
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
	ctx, cancel := context.WithTimeout(ctx, reg.cfg.TakeTimeout)
	defer cancel()
	_, err := reg.Take(ctx, r, trigger)
	switch {
	case err == nil, errors.Is(err, ErrUnchanged), errors.Is(err, ErrTooLarge), errors.Is(err, store.ErrSnapshotExists):
	case errors.Is(err, store.ErrNotFound):
		// Deleted meanwhile: nothing to keep.
	default:
		reg.log.ErrorContext(ctx, "snapshot failed", "room_id", r.ID(), "trigger", trigger, "err", err)
	}
}

// Clear deletes the room's snapshots and takes a fresh one (trigger clear),
// in one transaction, so that recovery stays possible. audit, when not nil,
// is recorded in that transaction, naming the fresh snapshot.
func (reg *Registry) Clear(ctx context.Context, r *room.Room, audit *store.AuditEntry) (store.SnapshotMeta, error) {
	meta, err := reg.take(ctx, r, TriggerClear, audit)
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
	out := RoomStats{RoomSnapshotStats: st}
	reg.mu.Lock()
	rs, ok := reg.rooms[roomID]
	reg.mu.Unlock()
	if ok {
		out.LastEncode = time.Duration(rs.lastEncode.Load())
	}
	return out, nil
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
