package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
)

// ErrSnapshotNotFound: the room has no snapshot with that id.
var ErrSnapshotNotFound = errors.New("snapshot not found")

// SnapshotMeta is a stored snapshot without its data.
type SnapshotMeta struct {
	ID           string
	RoomID       string
	Version      int64 // the room's version the snapshot's state is at
	CreatedAt    time.Time
	SizeBytes    int64 // len(data)
	ElementCount int64
	Trigger      string
	Format       int
}

// Snapshot is a stored snapshot with its data.
type Snapshot struct {
	SnapshotMeta
	Data []byte
}

// NewSnapshot carries what InsertSnapshot stores; the id and created_at are
// made by the store (uuid v4, store clock).
type NewSnapshot struct {
	RoomID       string
	Version      int64
	ElementCount int64
	Trigger      string
	Format       int
	Data         []byte // stored byte for byte
}

// RoomSnapshotStats describes a room's snapshots.
type RoomSnapshotStats struct {
	Count      int64
	TotalBytes int64         // sum of size_bytes
	Latest     *SnapshotMeta // the newest; nil when there is none
}

// SnapshotTotals describes the snapshots of all rooms.
type SnapshotTotals struct {
	Rooms     int64 // rooms having at least one snapshot
	Snapshots int64
	Bytes     int64 // sum of size_bytes
}

const snapshotMetaColumns = `id, room_id, version, created_at, size_bytes, element_count, "trigger", format`

// snapshotOrder is newest first; id breaks ties so that the order, and so
// which snapshots are kept, is always the same.
const snapshotOrder = `ORDER BY version DESC, created_at DESC, id`

func scanSnapshotMeta(row scanner, extra ...any) (SnapshotMeta, error) {
	var m SnapshotMeta
	dest := append([]any{&m.ID, &m.RoomID, &m.Version, timeDest(&m.CreatedAt), &m.SizeBytes, &m.ElementCount, &m.Trigger, &m.Format}, extra...)
	err := row.Scan(dest...)
	return m, err
}

// InsertSnapshot stores a snapshot and, in the same transaction:
//   - deletes the room's snapshots beyond the newest keep (keep < 1 counts as
//     1), ordered by version DESC, created_at DESC, id; the new snapshot
//     itself is deleted when keep newer ones exist;
//   - prunes the op log: deletes the ops with seq <= the version of the
//     oldest snapshot still kept, and raises rooms.pruned_through to that
//     version (it never lowers it).
//
// So nothing a kept snapshot needs (the ops after its version) is pruned by
// it. It returns the new snapshot's meta and how many ops were pruned;
// ErrNotFound when the room does not exist (it may have been deleted
// meanwhile), and an error when n.Version is negative or beyond the room's
// version in the database.
//
// On PostgreSQL the data is written without blocking the room's AppendOps;
// only the trimming and pruning that follow take the room's row lock.
func (s *Store) InsertSnapshot(ctx context.Context, n NewSnapshot, keep int) (SnapshotMeta, int64, error) {
	meta, pruned, err := s.insertSnapshot(ctx, n, keep)
	if err != nil {
		return SnapshotMeta{}, 0, fmt.Errorf("insert snapshot of room %s: %w", n.RoomID, err)
	}
	return meta, pruned, nil
}

func (s *Store) insertSnapshot(ctx context.Context, n NewSnapshot, keep int) (SnapshotMeta, int64, error) {
	roomID, ok := canonicalID(n.RoomID)
	if !ok {
		return SnapshotMeta{}, 0, ErrNotFound
	}
	if n.Version < 0 {
		return SnapshotMeta{}, 0, fmt.Errorf("negative version %d", n.Version)
	}
	keep = max(keep, 1)
	data := n.Data
	if data == nil {
		data = []byte{} // NOT NULL: an empty snapshot is empty, not missing
	}
	now := s.clock()
	meta := SnapshotMeta{
		ID:           uuid.NewString(),
		RoomID:       roomID,
		Version:      n.Version,
		CreatedAt:    now,
		SizeBytes:    int64(len(data)),
		ElementCount: n.ElementCount,
		Trigger:      n.Trigger,
		Format:       n.Format,
	}
	var pruned int64
	err := s.transact(ctx, func(tx *sqlx.Tx) error {
		// The room must exist, and stay until the commit: FOR KEY SHARE
		// excludes DeleteRoom but not AppendOps.
		if _, _, err := s.readRoomForSnapshot(ctx, tx, roomID, "FOR KEY SHARE"); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, tx.Rebind(
			`INSERT INTO snapshots (`+snapshotMetaColumns+`, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
			meta.ID, meta.RoomID, meta.Version, s.timeArg(now), meta.SizeBytes, meta.ElementCount, meta.Trigger, meta.Format, data)
		if err != nil {
			return fmt.Errorf("insert: %w", err)
		}

		// Trimming and pruning take turns with AppendOps and other
		// InsertSnapshots on the room.
		version, prunedThrough, err := s.readRoomForSnapshot(ctx, tx, roomID, "FOR NO KEY UPDATE")
		if err != nil {
			return err
		}
		if n.Version > version {
			return fmt.Errorf("snapshot version %d is beyond the room's version %d", n.Version, version)
		}
		_, err = tx.ExecContext(ctx, tx.Rebind(
			`DELETE FROM snapshots WHERE room_id = ? AND id NOT IN (SELECT id FROM snapshots WHERE room_id = ? `+snapshotOrder+` LIMIT ?)`),
			roomID, roomID, keep)
		if err != nil {
			return fmt.Errorf("delete old snapshots: %w", err)
		}

		var oldestKept sql.NullInt64 // never NULL: keep >= 1
		if err := tx.QueryRowxContext(ctx, tx.Rebind(
			`SELECT min(version) FROM snapshots WHERE room_id = ?`), roomID).Scan(&oldestKept); err != nil {
			return fmt.Errorf("read oldest kept snapshot: %w", err)
		}
		oldest := oldestKept.Int64
		if !oldestKept.Valid || oldest <= prunedThrough {
			return nil // everything up to oldest is gone already
		}
		res, err := tx.ExecContext(ctx, tx.Rebind(
			`DELETE FROM ops WHERE room_id = ? AND seq <= ?`), roomID, oldest)
		if err != nil {
			return fmt.Errorf("prune ops: %w", err)
		}
		if pruned, err = res.RowsAffected(); err != nil {
			return fmt.Errorf("prune ops: %w", err)
		}
		_, err = tx.ExecContext(ctx, tx.Rebind(
			`UPDATE rooms SET pruned_through = ? WHERE id = ?`), oldest, roomID)
		if err != nil {
			return fmt.Errorf("update pruned_through: %w", err)
		}
		return nil
	})
	if err != nil {
		return SnapshotMeta{}, 0, err
	}
	return meta, pruned, nil
}

// readRoomForSnapshot returns the room's version and pruned_through, with the
// row locked in lockMode on PostgreSQL. SQLite needs no row lock: the
// transaction began IMMEDIATE, holding the database's write lock.
func (s *Store) readRoomForSnapshot(ctx context.Context, tx *sqlx.Tx, id, lockMode string) (version, prunedThrough int64, err error) {
	query := `SELECT version, pruned_through FROM rooms WHERE id = ?`
	if s.dialect == dialectPostgres {
		query += ` ` + lockMode
	}
	err = tx.QueryRowxContext(ctx, tx.Rebind(query), id).Scan(&version, &prunedThrough)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, ErrNotFound
	}
	if err != nil {
		return 0, 0, fmt.Errorf("read room: %w", err)
	}
	return version, prunedThrough, nil
}

// ListSnapshots returns the room's snapshots without data, newest first
// (version DESC, created_at DESC, id): an empty, non-nil slice for a room
// with none, or an unknown room (the caller checks the room exists).
func (s *Store) ListSnapshots(ctx context.Context, roomID string) ([]SnapshotMeta, error) {
	metas := []SnapshotMeta{}
	id, ok := canonicalID(roomID)
	if !ok {
		return metas, nil
	}
	rows, err := s.db.QueryContext(ctx, s.db.Rebind(
		`SELECT `+snapshotMetaColumns+` FROM snapshots WHERE room_id = ? `+snapshotOrder), id)
	if err != nil {
		return nil, fmt.Errorf("list snapshots of room %s: %w", roomID, err)
	}
	defer rows.Close()
	for rows.Next() {
		m, err := scanSnapshotMeta(rows)
		if err != nil {
			return nil, fmt.Errorf("list snapshots of room %s: %w", roomID, err)
		}
		metas = append(metas, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list snapshots of room %s: %w", roomID, err)
	}
	return metas, nil
}

// GetSnapshot returns the room's snapshot id with its data, or
// ErrSnapshotNotFound when the room has no snapshot with that id (including
// another room's snapshot, an unknown room, and an id that is no UUID).
func (s *Store) GetSnapshot(ctx context.Context, roomID, id string) (Snapshot, error) {
	rid, okRoom := canonicalID(roomID)
	sid, okID := canonicalID(id)
	if !okRoom || !okID {
		return Snapshot{}, fmt.Errorf("get snapshot %s of room %s: %w", id, roomID, ErrSnapshotNotFound)
	}
	var data []byte
	m, err := scanSnapshotMeta(s.db.QueryRowContext(ctx, s.db.Rebind(
		`SELECT `+snapshotMetaColumns+`, data FROM snapshots WHERE id = ? AND room_id = ?`), sid, rid), &data)
	if errors.Is(err, sql.ErrNoRows) {
		return Snapshot{}, fmt.Errorf("get snapshot %s of room %s: %w", id, roomID, ErrSnapshotNotFound)
	}
	if err != nil {
		return Snapshot{}, fmt.Errorf("get snapshot %s of room %s: %w", id, roomID, err)
	}
	return Snapshot{SnapshotMeta: m, Data: nonNil(data)}, nil
}

// LatestSnapshots returns up to n of the room's newest snapshots with their
// data, newest first (for loading a room, falling back to older ones when
// the newest does not verify). Empty, non-nil, when there are none or n < 1.
func (s *Store) LatestSnapshots(ctx context.Context, roomID string, n int) ([]Snapshot, error) {
	snaps := []Snapshot{}
	id, ok := canonicalID(roomID)
	if !ok || n < 1 {
		return snaps, nil
	}
	rows, err := s.db.QueryContext(ctx, s.db.Rebind(
		`SELECT `+snapshotMetaColumns+`, data FROM snapshots WHERE room_id = ? `+snapshotOrder+` LIMIT ?`), id, n)
	if err != nil {
		return nil, fmt.Errorf("read latest snapshots of room %s: %w", roomID, err)
	}
	defer rows.Close()
	for rows.Next() {
		var data []byte // database/sql copies into a *[]byte
		m, err := scanSnapshotMeta(rows, &data)
		if err != nil {
			return nil, fmt.Errorf("read latest snapshots of room %s: %w", roomID, err)
		}
		snaps = append(snaps, Snapshot{SnapshotMeta: m, Data: nonNil(data)})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read latest snapshots of room %s: %w", roomID, err)
	}
	return snaps, nil
}

// DeleteSnapshots deletes all of the room's snapshots and returns how many.
// rooms.pruned_through is not changed: pruned ops stay gone. LiveShare
// clears a room's snapshots with InsertSnapshot and keep 1 instead, which
// can never leave a pruned log without a snapshot.
func (s *Store) DeleteSnapshots(ctx context.Context, roomID string) (int64, error) {
	id, ok := canonicalID(roomID)
	if !ok {
		return 0, nil
	}
	res, err := s.db.ExecContext(ctx, s.db.Rebind(`DELETE FROM snapshots WHERE room_id = ?`), id)
	if err != nil {
		return 0, fmt.Errorf("delete snapshots of room %s: %w", roomID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("delete snapshots of room %s: %w", roomID, err)
	}
	return n, nil
}

// RoomSnapshotStats returns the count and total size of the room's
// snapshots and the newest one's meta (nil when none), read in one
// statement so they agree. An unknown room has none.
func (s *Store) RoomSnapshotStats(ctx context.Context, roomID string) (RoomSnapshotStats, error) {
	var st RoomSnapshotStats
	id, ok := canonicalID(roomID)
	if !ok {
		return st, nil
	}
	var count, total int64
	m, err := scanSnapshotMeta(s.db.QueryRowContext(ctx, s.db.Rebind(
		`SELECT `+snapshotMetaColumns+`, count(*) OVER (), CAST(sum(size_bytes) OVER () AS BIGINT)
		 FROM snapshots WHERE room_id = ? `+snapshotOrder+` LIMIT 1`), id), &count, &total)
	if errors.Is(err, sql.ErrNoRows) {
		return st, nil
	}
	if err != nil {
		return RoomSnapshotStats{}, fmt.Errorf("read snapshot stats of room %s: %w", roomID, err)
	}
	return RoomSnapshotStats{Count: count, TotalBytes: total, Latest: &m}, nil
}

// SnapshotTotals counts the snapshots of all rooms.
func (s *Store) SnapshotTotals(ctx context.Context) (SnapshotTotals, error) {
	var t SnapshotTotals
	err := s.db.QueryRowContext(ctx,
		`SELECT count(DISTINCT room_id), count(*), CAST(coalesce(sum(size_bytes), 0) AS BIGINT) FROM snapshots`).
		Scan(&t.Rooms, &t.Snapshots, &t.Bytes)
	if err != nil {
		return SnapshotTotals{}, fmt.Errorf("read snapshot totals: %w", err)
	}
	return t, nil
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
