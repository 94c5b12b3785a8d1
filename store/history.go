package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// TriggerCheckpoint marks the snapshots Retention keeps for history
// (DESIGN.md section 11) beside the newest few.
const TriggerCheckpoint = "checkpoint"

// isCheckpoint is 1 for a checkpoint row and 0 otherwise, for sums. The
// trigger is a constant of ours, so it is written into the statement.
const isCheckpoint = `CASE WHEN "trigger" = '` + TriggerCheckpoint + `' THEN 1 ELSE 0 END`

// Retention says which of a room's snapshots are kept when a new one is
// stored.
//
//   - The newest Keep by version (Keep < 1 counts as 1).
//   - Of the checkpoints (trigger TriggerCheckpoint) created within Hourly
//     of now, the oldest of each clock hour (UTC); of those created within
//     Daily of now, the oldest of each UTC day.
//
// Hourly and Daily 0 keep no checkpoint beyond the newest Keep: the
// behaviour before history. Since ops are pruned back to the oldest kept
// snapshot, every version from the oldest kept checkpoint on stays
// reachable. With history kept, a room that has no checkpoint yet (its
// first scheduler pass has not come) has nothing pruned: a manual snapshot
// must not cut off the history its first checkpoint is about to hold.
type Retention struct {
	Keep   int
	Hourly time.Duration
	Daily  time.Duration
}

// kept returns the ids of metas (newest first by version) that r keeps at
// now.
func (r Retention) history() bool { return r.Hourly > 0 || r.Daily > 0 }

func (r Retention) kept(metas []SnapshotMeta, now time.Time) map[string]bool {
	kept := make(map[string]bool, len(metas))
	for i, m := range metas {
		if i < max(r.Keep, 1) {
			kept[m.ID] = true
		}
	}
	hours := make(map[time.Time]bool)
	days := make(map[time.Time]bool)
	// Oldest first, so that the oldest checkpoint of each hour or day
	// holds it: a later one of the same hour adds nothing to history that
	// the ops after the first do not hold.
	for i := len(metas) - 1; i >= 0; i-- {
		m := metas[i]
		if m.Trigger != TriggerCheckpoint {
			continue
		}
		at := m.CreatedAt.UTC()
		age := now.Sub(at)
		if r.Hourly > 0 && age < r.Hourly {
			if h := at.Truncate(time.Hour); !hours[h] {
				hours[h] = true
				kept[m.ID] = true
			}
		}
		if r.Daily > 0 && age < r.Daily {
			if d := time.Date(at.Year(), at.Month(), at.Day(), 0, 0, 0, 0, time.UTC); !days[d] {
				days[d] = true
				kept[m.ID] = true
			}
		}
	}
	return kept
}

// trimSnapshots deletes the room's complete snapshots that ret does not
// keep at the store's clock, and reports whether a checkpoint is among those
// kept; the caller holds the room's row.
func (s *Store) trimSnapshots(ctx context.Context, tx *sqlx.Tx, roomID string, ret Retention) (checkpointKept bool, err error) {
	rows, err := tx.QueryContext(ctx, tx.Rebind(
		`SELECT `+snapshotMetaColumns+` FROM snapshots WHERE room_id = ? AND complete `+snapshotOrder), roomID)
	if err != nil {
		return false, fmt.Errorf("read snapshots to trim: %w", err)
	}
	var metas []SnapshotMeta
	for rows.Next() {
		m, err := scanSnapshotMeta(rows)
		if err != nil {
			_ = rows.Close()
			return false, fmt.Errorf("read snapshots to trim: %w", err)
		}
		metas = append(metas, m)
	}
	if err := rows.Close(); err != nil {
		return false, fmt.Errorf("read snapshots to trim: %w", err)
	}
	if err := rows.Err(); err != nil {
		return false, fmt.Errorf("read snapshots to trim: %w", err)
	}
	kept := ret.kept(metas, s.clock())
	for _, m := range metas {
		if kept[m.ID] {
			checkpointKept = checkpointKept || m.Trigger == TriggerCheckpoint
			continue
		}
		if _, err := tx.ExecContext(ctx, tx.Rebind(`DELETE FROM snapshots WHERE id = ?`), m.ID); err != nil {
			return false, fmt.Errorf("delete old snapshot %s: %w", m.ID, err)
		}
	}
	return checkpointKept, nil
}

// SnapshotMetasAtOrBefore returns up to limit of the room's stored
// snapshots with version <= version, newest first, without data: where a
// read of the room at that version starts. An empty, non-nil slice when
// there is none.
func (s *Store) SnapshotMetasAtOrBefore(ctx context.Context, roomID string, version int64, limit int) ([]SnapshotMeta, error) {
	metas := []SnapshotMeta{}
	id, ok := canonicalID(roomID)
	if !ok {
		return metas, nil
	}
	rows, err := s.db.QueryContext(ctx, s.db.Rebind(
		`SELECT `+snapshotMetaColumns+` FROM snapshots WHERE room_id = ? AND complete AND version <= ? `+snapshotOrder+` LIMIT ?`),
		id, version, max(limit, 1))
	if err != nil {
		return nil, fmt.Errorf("list snapshots of room %s at or before version %d: %w", roomID, version, err)
	}
	defer rows.Close()
	for rows.Next() {
		m, err := scanSnapshotMeta(rows)
		if err != nil {
			return nil, fmt.Errorf("list snapshots of room %s at or before version %d: %w", roomID, version, err)
		}
		metas = append(metas, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list snapshots of room %s at or before version %d: %w", roomID, version, err)
	}
	return metas, nil
}

// LatestCheckpointMeta returns the meta of the room's newest stored
// checkpoint, ok false when it has none.
func (s *Store) LatestCheckpointMeta(ctx context.Context, roomID string) (m SnapshotMeta, ok bool, err error) {
	id, valid := canonicalID(roomID)
	if !valid {
		return SnapshotMeta{}, false, nil
	}
	rows, err := s.db.QueryContext(ctx, s.db.Rebind(
		`SELECT `+snapshotMetaColumns+` FROM snapshots WHERE room_id = ? AND complete AND "trigger" = ? `+snapshotOrder+` LIMIT 1`),
		id, TriggerCheckpoint)
	if err != nil {
		return SnapshotMeta{}, false, fmt.Errorf("latest checkpoint of room %s: %w", roomID, err)
	}
	defer rows.Close()
	if rows.Next() {
		if m, err = scanSnapshotMeta(rows); err != nil {
			return SnapshotMeta{}, false, fmt.Errorf("latest checkpoint of room %s: %w", roomID, err)
		}
		ok = true
	}
	if err := rows.Err(); err != nil {
		return SnapshotMeta{}, false, fmt.Errorf("latest checkpoint of room %s: %w", roomID, err)
	}
	return m, ok, nil
}
