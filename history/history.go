// Package history reads a room's past (DESIGN.md section 11): the graph at
// any version still reachable, from the newest stored snapshot at or
// before it plus the logged ops up to it. What stays reachable is decided
// where snapshots are stored (store.Retention): checkpoints kept for hours
// and days, and the op log kept back to the oldest of them.
package history

import (
	"context"
	"errors"
	"fmt"

	"github.com/liveshare/liveshare/graph"
	"github.com/liveshare/liveshare/snapshot"
	"github.com/liveshare/liveshare/store"
)

var (
	// ErrGone: the version is no longer reachable (the snapshots and ops
	// that held it were pruned).
	ErrGone = errors.New("history no longer kept")
	// ErrAhead: the version is past the room's version.
	ErrAhead = errors.New("version past the room's version")
)

// Store is what reading history needs of persistence; *store.Store
// satisfies it.
type Store interface {
	RoomVersion(ctx context.Context, roomID string) (version, prunedThrough int64, err error)
	SnapshotMetasAtOrBefore(ctx context.Context, roomID string, version int64, limit int) ([]store.SnapshotMeta, error)
	GetSnapshot(ctx context.Context, roomID, id string) (store.Snapshot, error)
	OpsSince(ctx context.Context, roomID string, since int64, limit int) ([]store.OpRecord, error)
}

// BlobFunc reads one stored snapshot with its data; snapshot.Registry.Get
// (which serves recent ones from memory) and store.Store.GetSnapshot are
// both one.
type BlobFunc func(ctx context.Context, roomID, id string) (store.Snapshot, error)

// Reader reads rooms' past states. It keeps nothing between calls and is
// safe for concurrent use.
type Reader struct {
	store Store
	blob  BlobFunc
}

// NewReader returns a reader over st; blob reads snapshots (nil:
// st.GetSnapshot).
func NewReader(st Store, blob BlobFunc) *Reader {
	if blob == nil {
		blob = st.GetSnapshot
	}
	return &Reader{store: st, blob: blob}
}

// opsPage bounds the op rows read and applied at a time.
const opsPage = 1000

// baseCandidates is how many snapshots at or before a version are tried,
// newest first, when one does not verify.
const baseCandidates = 3

// StateAt returns the room's graph at version, sorted by id. Errors:
// store.ErrNotFound for an unknown room, ErrAhead past its version, ErrGone
// when the version is no longer reachable.
func (rd *Reader) StateAt(ctx context.Context, roomID string, version int64) (graph.State, error) {
	g, err := rd.graphAt(ctx, roomID, version)
	if err != nil {
		return graph.State{}, fmt.Errorf("state of room %s at version %d: %w", roomID, version, err)
	}
	// The graph is this call's alone: its elements are handed out without
	// the copy of every data object that State makes.
	s := g.Elements()
	s.Sort()
	return s, nil
}

// StatesAt returns the room's graphs at versions a and b, sorted by id, as
// two StateAt calls would. When no stored snapshot lies between the two,
// the log is replayed once: from the base of the older version on to the
// newer one, which halves the cost of a diff between two past versions.
func (rd *Reader) StatesAt(ctx context.Context, roomID string, a, b int64) (graph.State, graph.State, error) {
	lo, hi := min(a, b), max(a, b)
	g, err := rd.graphAt(ctx, roomID, lo)
	if err != nil {
		return graph.State{}, graph.State{}, fmt.Errorf("state of room %s at version %d: %w", roomID, lo, err)
	}
	// Elements shares the Data bytes, which the graph never changes in
	// place: replaying on past lo leaves this state as it is.
	loState := g.Elements()
	loState.Sort()
	metas, err := rd.store.SnapshotMetasAtOrBefore(ctx, roomID, hi, 1)
	if err != nil {
		return graph.State{}, graph.State{}, fmt.Errorf("snapshots of room %s: %w", roomID, err)
	}
	var hiState graph.State
	if len(metas) > 0 && metas[0].Version > lo {
		// A snapshot nearer hi than lo is: start from it instead.
		if hiState, err = rd.StateAt(ctx, roomID, hi); err != nil {
			return graph.State{}, graph.State{}, err
		}
	} else {
		if err := rd.replay(ctx, roomID, g, lo, hi); err != nil {
			return graph.State{}, graph.State{}, fmt.Errorf("state of room %s at version %d: %w", roomID, hi, err)
		}
		hiState = g.Elements()
		hiState.Sort()
	}
	if a > b {
		return hiState, loState, nil
	}
	return loState, hiState, nil
}

func (rd *Reader) graphAt(ctx context.Context, roomID string, version int64) (*graph.Graph, error) {
	current, _, err := rd.store.RoomVersion(ctx, roomID)
	if err != nil {
		return nil, err
	}
	if version < 0 || version > current {
		return nil, fmt.Errorf("the room is at version %d: %w", current, ErrAhead)
	}
	// A snapshot listed may be trimmed by a newer one before its data is
	// read: list again, a few times.
	for attempt := 0; attempt < 3; attempt++ {
		g, base, trimmed, err := rd.base(ctx, roomID, version)
		if err != nil {
			return nil, err
		}
		if trimmed {
			continue
		}
		if err := rd.replay(ctx, roomID, g, base, version); err != nil {
			return nil, err
		}
		return g, nil
	}
	return nil, fmt.Errorf("its snapshots kept being replaced: %w", ErrGone)
}

// base returns the graph of the newest stored snapshot at or before
// version that decodes and verifies, and its version; an empty graph at 0
// when there is none (the ops from 1 on must then be kept). trimmed says
// a snapshot vanished between listing and reading.
func (rd *Reader) base(ctx context.Context, roomID string, version int64) (*graph.Graph, int64, bool, error) {
	metas, err := rd.store.SnapshotMetasAtOrBefore(ctx, roomID, version, baseCandidates)
	if err != nil {
		return nil, 0, false, err
	}
	for _, m := range metas {
		s, err := rd.blob(ctx, roomID, m.ID)
		if errors.Is(err, store.ErrSnapshotNotFound) {
			return nil, 0, true, nil
		}
		if errors.Is(err, snapshot.ErrMalformed) || errors.Is(err, store.ErrSealOpen) {
			continue // one that does not open: as corrupt as a bad checksum
		}
		if err != nil {
			return nil, 0, false, fmt.Errorf("read snapshot %s: %w", m.ID, err)
		}
		g, v, err := snapshot.DecodeStored(s.Data)
		if err != nil || v != m.Version {
			continue // a corrupt one: an older one, and more ops, may do
		}
		return g, v, false, nil
	}
	return graph.New(), 0, false, nil
}

// replay applies the logged ops after from up to to. Every one of them must
// still be logged: a gap means they were pruned (ErrGone).
func (rd *Reader) replay(ctx context.Context, roomID string, g *graph.Graph, from, to int64) error {
	for from < to {
		recs, err := rd.store.OpsSince(ctx, roomID, from, int(min(to-from, opsPage)))
		if err != nil {
			return err
		}
		if len(recs) == 0 {
			return fmt.Errorf("op %d is no longer logged: %w", from+1, ErrGone)
		}
		ops := make([]graph.Op, 0, len(recs))
		for _, rec := range recs {
			if rec.Seq != from+1 {
				return fmt.Errorf("op %d is no longer logged: %w", from+1, ErrGone)
			}
			op, err := graph.DecodeLogged(rec.Op)
			if err != nil {
				return fmt.Errorf("logged op %d: %w", rec.Seq, err)
			}
			ops = append(ops, op)
			from = rec.Seq
		}
		if err := g.Apply(ops); err != nil {
			return fmt.Errorf("replay logged ops up to %d: %w", from, err)
		}
	}
	return nil
}
