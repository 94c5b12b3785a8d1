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
	// Audit, when not nil, is recorded in the transaction that makes the
	// snapshot stored (ClearSnapshots only), with its id, version and size.
	Audit *AuditEntry
}

// RoomSnapshotStats describes a room's snapshots.
type RoomSnapshotStats struct {
	Count       int64
	Checkpoints int64         // of Count, those with trigger checkpoint
	TotalBytes  int64         // sum of size_bytes
	Latest      *SnapshotMeta // the newest; nil when there is none
}

// SnapshotTotals describes the snapshots of all rooms.
type SnapshotTotals struct {
	Rooms       int64 // rooms having at least one snapshot
	Snapshots   int64
	Checkpoints int64 // of Snapshots, those with trigger checkpoint
	Bytes       int64 // sum of size_bytes
}

const snapshotMetaColumns = `id, room_id, version, created_at, size_bytes, element_count, "trigger", format`

// snapshotOrder is newest first; versions are unique per room.
const snapshotOrder = `ORDER BY version DESC`

// ErrSnapshotExists: the room already has a snapshot at that version (taken
// by this or another instance), or one being stored there; nothing was
// stored.
var ErrSnapshotExists = errors.New("a snapshot at this version exists")

// SnapshotChunkBytes is the size of the pieces a snapshot is stored in: each
// piece is written by a transaction of its own, so that storing a large
// snapshot never holds SQLite's write lock, or flushes PostgreSQL's WAL ahead
// of a writer's commit, for more than one piece.
const SnapshotChunkBytes = 128 << 10

// staleClaim is how long a snapshot row that was never completed (its
// instance died while storing the pieces) holds its version.
const staleClaim = 10 * time.Minute

// opsPerPrune bounds the op rows one pruning transaction deletes.
const opsPerPrune = 500

func scanSnapshotMeta(row scanner, extra ...any) (SnapshotMeta, error) {
	var m SnapshotMeta
	dest := append([]any{&m.ID, &m.RoomID, &m.Version, timeDest(&m.CreatedAt), &m.SizeBytes, &m.ElementCount, &m.Trigger, &m.Format}, extra...)
	err := row.Scan(dest...)
	return m, err
}

// InsertSnapshot stores a snapshot and then:
//   - deletes the room's snapshots beyond the newest keep (keep < 1 counts as
//     1), newest by version; the new snapshot itself is deleted when keep
//     newer ones exist;
//   - prunes the op log: raises rooms.pruned_through to the version of the
//     oldest snapshot still kept (it never lowers it), and deletes the ops at
//     or below it.
//
// So nothing a kept snapshot needs (the ops after its version) is pruned by
// it. The snapshot counts as stored (listed, read, restored from) only once
// it is complete, in the one transaction that also trims and raises
// pruned_through; a larger one is written in SnapshotChunkBytes pieces before
// that, each in a short transaction. Pruned op rows are deleted afterwards in
// batches; nothing reads ops at or below pruned_through.
//
// It returns the new snapshot's meta and how many op rows were deleted;
// ErrSnapshotExists when the room has a snapshot at n.Version already (or one
// is being stored there); ErrNotFound when the room does not exist (it may
// have been deleted meanwhile); an error when n.Version is negative or beyond
// the room's version in the database.
func (s *Store) InsertSnapshot(ctx context.Context, n NewSnapshot, keep int) (SnapshotMeta, int64, error) {
	return s.InsertSnapshotRetaining(ctx, n, Retention{Keep: keep})
}

// InsertSnapshotRetaining is InsertSnapshot keeping what ret keeps: the
// newest ret.Keep snapshots and, besides them, the checkpoints ret.Hourly
// and ret.Daily hold (see Retention). The op log is pruned to the oldest
// snapshot kept, checkpoints included.
func (s *Store) InsertSnapshotRetaining(ctx context.Context, n NewSnapshot, ret Retention) (SnapshotMeta, int64, error) {
	meta, pruned, err := s.insertSnapshot(ctx, n, ret)
	if err != nil {
		return SnapshotMeta{}, 0, fmt.Errorf("insert snapshot of room %s: %w", n.RoomID, err)
	}
	return meta, pruned, nil
}

func (s *Store) insertSnapshot(ctx context.Context, n NewSnapshot, ret Retention) (SnapshotMeta, int64, error) {
	roomID, ok := canonicalID(n.RoomID)
	if !ok {
		return SnapshotMeta{}, 0, ErrNotFound
	}
	if n.Version < 0 {
		return SnapshotMeta{}, 0, fmt.Errorf("negative version %d", n.Version)
	}
	ret.Keep = max(ret.Keep, 1)
	now := s.clock()
	meta := SnapshotMeta{
		ID:           uuid.NewString(),
		RoomID:       roomID,
		Version:      n.Version,
		CreatedAt:    now,
		SizeBytes:    int64(len(n.Data)),
		ElementCount: n.ElementCount,
		Trigger:      n.Trigger,
		Format:       n.Format,
	}
	sealed, keyID, err := s.keys.forRoom(roomID).seal(n.Data, snapshotAD(roomID, meta.ID, n.Version))
	if err != nil {
		return SnapshotMeta{}, 0, fmt.Errorf("seal: %w", err)
	}
	chunks := splitChunks(sealed)

	// Claim the version with the first piece. The room must exist, and
	// stay until the commit: on PostgreSQL the foreign key takes FOR KEY
	// SHARE, which excludes DeleteRoom but not the room's writers.
	err = s.transact(ctx, func(tx *sqlx.Tx) error {
		version, _, err := s.readRoomForSnapshot(ctx, tx, roomID, "FOR KEY SHARE")
		if err != nil {
			return err
		}
		if n.Version > version {
			return fmt.Errorf("snapshot version %d is beyond the room's version %d", n.Version, version)
		}
		_, err = tx.ExecContext(ctx, tx.Rebind(`DELETE FROM snapshots WHERE room_id = ? AND NOT complete AND created_at < ?`),
			roomID, s.timeArg(now.Add(-staleClaim)))
		if err != nil {
			return fmt.Errorf("delete stale claims: %w", err)
		}
		_, err = tx.ExecContext(ctx, tx.Rebind(
			`INSERT INTO snapshots (`+snapshotMetaColumns+`, data, chunks, complete, key_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
			meta.ID, meta.RoomID, meta.Version, s.timeArg(now), meta.SizeBytes, meta.ElementCount, meta.Trigger, meta.Format,
			chunks[0], len(chunks), len(chunks) == 1, keyID)
		if isUniqueViolation(err) {
			return ErrSnapshotExists
		}
		if err != nil {
			return fmt.Errorf("insert: %w", err)
		}
		if len(chunks) == 1 {
			return s.completeSnapshot(ctx, tx, roomID, meta.ID, ret)
		}
		return nil
	})
	if err != nil {
		return SnapshotMeta{}, 0, err
	}
	if len(chunks) > 1 {
		if err := s.storeChunks(ctx, roomID, meta.ID, chunks, ret); err != nil {
			// Leave no half-stored claim on the version behind.
			_, _ = s.execWrite(context.WithoutCancel(ctx), `DELETE FROM snapshots WHERE id = ? AND NOT complete`, meta.ID)
			return SnapshotMeta{}, 0, err
		}
	}
	// The snapshot is stored and pruned_through raised: should deleting the
	// rows fail, the next snapshot of the room deletes them.
	pruned, _ := s.deletePrunedOps(ctx, roomID)
	return meta, pruned, nil
}

// ClearSnapshots replaces all of the room's snapshots with n, in one
// transaction: a crash can never leave the room with a pruned log and no
// snapshot. pruned_through is raised to n.Version and the ops at or below it
// are deleted. Unlike InsertSnapshot it writes the whole snapshot in that one
// transaction; clearing is a rare act of an owner.
func (s *Store) ClearSnapshots(ctx context.Context, n NewSnapshot) (SnapshotMeta, int64, error) {
	roomID, ok := canonicalID(n.RoomID)
	if !ok {
		return SnapshotMeta{}, 0, fmt.Errorf("clear snapshots of room %s: %w", n.RoomID, ErrNotFound)
	}
	if err := checkAudit(n.Audit); err != nil {
		return SnapshotMeta{}, 0, fmt.Errorf("clear snapshots of room %s: %w", n.RoomID, err)
	}
	now := s.clock()
	meta := SnapshotMeta{ID: uuid.NewString(), RoomID: roomID, Version: n.Version, CreatedAt: now,
		SizeBytes: int64(len(n.Data)), ElementCount: n.ElementCount, Trigger: n.Trigger, Format: n.Format}
	sealed, keyID, err := s.keys.forRoom(roomID).seal(n.Data, snapshotAD(roomID, meta.ID, n.Version))
	if err != nil {
		return SnapshotMeta{}, 0, fmt.Errorf("clear snapshots of room %s: seal: %w", n.RoomID, err)
	}
	chunks := splitChunks(sealed)
	err = s.transact(ctx, func(tx *sqlx.Tx) error {
		version, _, err := s.readRoomForSnapshot(ctx, tx, roomID, "FOR NO KEY UPDATE")
		if err != nil {
			return err
		}
		if n.Version < 0 || n.Version > version {
			return fmt.Errorf("snapshot version %d is not within the room's versions 0..%d", n.Version, version)
		}
		if _, err := tx.ExecContext(ctx, tx.Rebind(`DELETE FROM snapshots WHERE room_id = ?`), roomID); err != nil {
			return fmt.Errorf("delete snapshots: %w", err)
		}
		_, err = tx.ExecContext(ctx, tx.Rebind(
			`INSERT INTO snapshots (`+snapshotMetaColumns+`, data, chunks, complete, key_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
			meta.ID, meta.RoomID, meta.Version, s.timeArg(now), meta.SizeBytes, meta.ElementCount, meta.Trigger, meta.Format,
			chunks[0], len(chunks), true, keyID)
		if err != nil {
			return fmt.Errorf("insert: %w", err)
		}
		for i := 1; i < len(chunks); i++ {
			_, err := tx.ExecContext(ctx, tx.Rebind(`INSERT INTO snapshot_chunks (snapshot_id, idx, data) VALUES (?, ?, ?)`), meta.ID, i, chunks[i])
			if err != nil {
				return fmt.Errorf("insert piece %d of %d: %w", i+1, len(chunks), err)
			}
		}
		_, err = tx.ExecContext(ctx, tx.Rebind(`UPDATE rooms SET pruned_through = ? WHERE id = ? AND pruned_through < ?`),
			n.Version, roomID, n.Version)
		if err != nil {
			return fmt.Errorf("update pruned_through: %w", err)
		}
		if n.Audit == nil {
			return nil
		}
		a := *n.Audit
		a.SnapshotID, a.Version, a.Bytes = meta.ID, &meta.Version, &meta.SizeBytes
		return s.insertAuditFor(ctx, tx, roomID, &a)
	})
	if err != nil {
		return SnapshotMeta{}, 0, fmt.Errorf("clear snapshots of room %s: %w", n.RoomID, err)
	}
	pruned, _ := s.deletePrunedOps(ctx, roomID)
	return meta, pruned, nil
}

// splitChunks cuts data into pieces of at most SnapshotChunkBytes; there is
// always at least one, possibly empty (an empty snapshot is empty, not
// missing).
func splitChunks(data []byte) [][]byte {
	if len(data) == 0 {
		return [][]byte{{}}
	}
	var chunks [][]byte
	for len(data) > 0 {
		n := min(len(data), SnapshotChunkBytes)
		chunks = append(chunks, data[:n])
		data = data[n:]
	}
	return chunks
}

// storeChunks writes the pieces after the first, each in its own
// transaction, then completes the snapshot.
func (s *Store) storeChunks(ctx context.Context, roomID, id string, chunks [][]byte, ret Retention) error {
	for i := 1; i < len(chunks); i++ {
		_, err := s.execLazy(ctx, `INSERT INTO snapshot_chunks (snapshot_id, idx, data) VALUES (?, ?, ?)`,
			id, i, chunks[i])
		if err != nil {
			return fmt.Errorf("insert piece %d of %d: %w", i+1, len(chunks), err)
		}
	}
	return s.transact(ctx, func(tx *sqlx.Tx) error {
		return s.completeSnapshot(ctx, tx, roomID, id, ret)
	})
}

// completeSnapshot marks the snapshot stored, deletes the snapshots ret
// does not keep and raises pruned_through to the oldest kept one. It takes
// turns with the room's writers (the room row is locked) for a few small
// statements.
func (s *Store) completeSnapshot(ctx context.Context, tx *sqlx.Tx, roomID, id string, ret Retention) error {
	_, prunedThrough, err := s.readRoomForSnapshot(ctx, tx, roomID, "FOR NO KEY UPDATE")
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, tx.Rebind(`UPDATE snapshots SET complete = ? WHERE id = ?`), true, id); err != nil {
		return fmt.Errorf("complete: %w", err)
	}
	checkpointKept, err := s.trimSnapshots(ctx, tx, roomID, ret)
	if err != nil {
		return err
	}
	if ret.history() && !checkpointKept {
		return nil // see Retention: nothing is pruned before the first checkpoint
	}
	var oldestKept sql.NullInt64 // never NULL: this one is complete, and keep >= 1
	if err := tx.QueryRowxContext(ctx, tx.Rebind(
		`SELECT min(version) FROM snapshots WHERE room_id = ? AND complete`), roomID).Scan(&oldestKept); err != nil {
		return fmt.Errorf("read oldest kept snapshot: %w", err)
	}
	if !oldestKept.Valid || oldestKept.Int64 <= prunedThrough {
		return nil // everything up to it is pruned already
	}
	_, err = tx.ExecContext(ctx, tx.Rebind(`UPDATE rooms SET pruned_through = ? WHERE id = ?`), oldestKept.Int64, roomID)
	if err != nil {
		return fmt.Errorf("update pruned_through: %w", err)
	}
	return nil
}

// deletePrunedOps deletes the room's op rows at or below pruned_through, a
// batch per transaction, and returns how many it deleted.
func (s *Store) deletePrunedOps(ctx context.Context, roomID string) (int64, error) {
	var total int64
	for {
		res, err := s.execLazy(ctx, `DELETE FROM ops WHERE room_id = ? AND seq IN
			   (SELECT seq FROM ops WHERE room_id = ? AND seq <= (SELECT pruned_through FROM rooms WHERE id = ?) ORDER BY seq LIMIT ?)`,
			roomID, roomID, roomID, opsPerPrune)
		if err != nil {
			return total, fmt.Errorf("prune ops of room %s: %w", roomID, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, fmt.Errorf("prune ops of room %s: %w", roomID, err)
		}
		total += n
		if n < opsPerPrune {
			return total, nil
		}
	}
}

// execLazy runs one writing statement in its turn, in a transaction whose
// commit does not wait for the disk on PostgreSQL (synchronous_commit off):
// for the pieces of a snapshot written before the transaction that
// completes it, and for deleting op rows already pruned. A crash may lose
// such a commit, never reorder it: the synchronous commit that completes the
// snapshot flushes the log up to itself, pieces included (PostgreSQL,
// "Asynchronous Commit"), and rows a crash leaves behind at or below
// pruned_through are read by nothing and deleted by the next snapshot. The
// room's writers' commits then no longer queue behind a flush of the log
// per piece. SQLite sets its durability per connection, not per
// transaction: there it is execWrite.
func (s *Store) execLazy(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if s.dialect != dialectPostgres {
		return s.execWrite(ctx, query, args...)
	}
	var res sql.Result
	err := s.transact(ctx, func(tx *sqlx.Tx) error {
		if _, err := tx.ExecContext(ctx, `SET LOCAL synchronous_commit = off`); err != nil {
			return fmt.Errorf("set synchronous_commit: %w", err)
		}
		var err error
		res, err = tx.ExecContext(ctx, tx.Rebind(query), args...)
		return err
	})
	return res, err
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

// ListSnapshots returns the room's stored snapshots without data, newest
// first: an empty, non-nil slice for a room with none, or an unknown room
// (the caller checks the room exists).
func (s *Store) ListSnapshots(ctx context.Context, roomID string) ([]SnapshotMeta, error) {
	return s.SnapshotMetas(ctx, roomID, 0)
}

// SnapshotMetas returns up to limit (0: all) of the room's stored snapshots
// without data, newest first.
func (s *Store) SnapshotMetas(ctx context.Context, roomID string, limit int) ([]SnapshotMeta, error) {
	metas := []SnapshotMeta{}
	id, ok := canonicalID(roomID)
	if !ok {
		return metas, nil
	}
	query := `SELECT ` + snapshotMetaColumns + ` FROM snapshots WHERE room_id = ? AND complete ` + snapshotOrder
	args := []any{id}
	if limit > 0 {
		query += ` LIMIT ?`
		args = append(args, limit)
	}
	rows, err := s.db.QueryContext(ctx, s.db.Rebind(query), args...)
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

// LatestSnapshotMeta returns the meta of the room's newest stored snapshot,
// or ErrSnapshotNotFound when it has none.
func (s *Store) LatestSnapshotMeta(ctx context.Context, roomID string) (SnapshotMeta, error) {
	metas, err := s.SnapshotMetas(ctx, roomID, 1)
	if err != nil {
		return SnapshotMeta{}, err
	}
	if len(metas) == 0 {
		return SnapshotMeta{}, fmt.Errorf("latest snapshot of room %s: %w", roomID, ErrSnapshotNotFound)
	}
	return metas[0], nil
}

// GetSnapshotMeta returns the meta of the room's stored snapshot id, or
// ErrSnapshotNotFound, as GetSnapshot does but without reading its data.
func (s *Store) GetSnapshotMeta(ctx context.Context, roomID, id string) (SnapshotMeta, error) {
	rid, okRoom := canonicalID(roomID)
	sid, okID := canonicalID(id)
	if !okRoom || !okID {
		return SnapshotMeta{}, fmt.Errorf("get snapshot %s of room %s: %w", id, roomID, ErrSnapshotNotFound)
	}
	m, err := scanSnapshotMeta(s.db.QueryRowContext(ctx, s.db.Rebind(
		`SELECT `+snapshotMetaColumns+` FROM snapshots WHERE id = ? AND room_id = ? AND complete`), sid, rid))
	if errors.Is(err, sql.ErrNoRows) {
		return SnapshotMeta{}, fmt.Errorf("get snapshot %s of room %s: %w", id, roomID, ErrSnapshotNotFound)
	}
	if err != nil {
		return SnapshotMeta{}, fmt.Errorf("get snapshot %s of room %s: %w", id, roomID, err)
	}
	return m, nil
}

// GetSnapshot returns the room's stored snapshot id with its data (plain,
// opened when it is sealed), or ErrSnapshotNotFound when the room has no
// stored snapshot with that id (including another room's snapshot, an
// unknown room, and an id that is no UUID). A sealed snapshot that does not
// open is an error wrapping ErrSealOpen.
func (s *Store) GetSnapshot(ctx context.Context, roomID, id string) (Snapshot, error) {
	rid, okRoom := canonicalID(roomID)
	sid, okID := canonicalID(id)
	if !okRoom || !okID {
		return Snapshot{}, fmt.Errorf("get snapshot %s of room %s: %w", id, roomID, ErrSnapshotNotFound)
	}
	m, err := s.GetSnapshotMeta(ctx, rid, sid)
	if err != nil {
		return Snapshot{}, err
	}
	data, keyID, err := s.snapshotData(ctx, s.db, rid, sid, m.SizeBytes)
	if err != nil {
		return Snapshot{}, fmt.Errorf("get snapshot %s of room %s: %w", id, roomID, err)
	}
	if data, err = s.keys.forRoom(rid).open(data, keyID, snapshotAD(rid, sid, m.Version)); err != nil {
		return Snapshot{}, fmt.Errorf("get snapshot %s of room %s: %w", id, roomID, err)
	}
	return Snapshot{SnapshotMeta: m, Data: nonNil(data)}, nil
}

// snapshotDataQuery reads a stored snapshot's bytes, its key id and its
// pieces in one statement, so that they agree even while rekey rewrites
// them: the row comes first (idx 0), then the pieces in order.
const snapshotDataQuery = `
SELECT 0 AS idx, data, key_id, chunks FROM snapshots WHERE id = ? AND room_id = ? AND complete
UNION ALL
SELECT c.idx, c.data, '', 0 FROM snapshot_chunks c JOIN snapshots s ON s.id = c.snapshot_id
 WHERE c.snapshot_id = ? AND s.room_id = ? AND s.complete
ORDER BY idx`

// snapshotData returns the stored (possibly sealed) bytes of a complete
// snapshot, all its pieces joined, and the key id they are sealed with.
func (s *Store) snapshotData(ctx context.Context, q sqlx.QueryerContext, roomID, id string, size int64) (data []byte, keyID string, err error) {
	rows, err := q.QueryContext(ctx, s.db.Rebind(snapshotDataQuery), id, roomID, id, roomID)
	if err != nil {
		return nil, "", fmt.Errorf("read data: %w", err)
	}
	defer rows.Close()
	// Sealing adds a nonce and a tag to the plain size.
	data = make([]byte, 0, size+64)
	next, chunks := 0, 0
	for rows.Next() {
		var (
			idx    int
			piece  sql.RawBytes
			rowKey string
			n      int
		)
		if err := rows.Scan(&idx, &piece, &rowKey, &n); err != nil {
			return nil, "", fmt.Errorf("read data: %w", err)
		}
		if idx != next {
			return nil, "", fmt.Errorf("piece %d missing", next)
		}
		if idx == 0 {
			keyID, chunks = rowKey, n
		}
		data = append(data, piece...)
		next++
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("read data: %w", err)
	}
	if next == 0 {
		return nil, "", ErrSnapshotNotFound // trimmed since its meta was read
	}
	if next != chunks {
		return nil, "", fmt.Errorf("%d of %d pieces stored", next, chunks)
	}
	return data, keyID, nil
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
	res, err := s.execWrite(ctx, `DELETE FROM snapshots WHERE room_id = ?`, id)
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
	var count, checkpoints, total int64
	m, err := scanSnapshotMeta(s.db.QueryRowContext(ctx, s.db.Rebind(
		`SELECT `+snapshotMetaColumns+`, count(*) OVER (), CAST(sum(`+isCheckpoint+`) OVER () AS BIGINT), CAST(sum(size_bytes) OVER () AS BIGINT)
		 FROM snapshots WHERE room_id = ? AND complete `+snapshotOrder+` LIMIT 1`), id), &count, &checkpoints, &total)
	if errors.Is(err, sql.ErrNoRows) {
		return st, nil
	}
	if err != nil {
		return RoomSnapshotStats{}, fmt.Errorf("read snapshot stats of room %s: %w", roomID, err)
	}
	return RoomSnapshotStats{Count: count, Checkpoints: checkpoints, TotalBytes: total, Latest: &m}, nil
}

// SnapshotTotals counts the snapshots of all rooms.
func (s *Store) SnapshotTotals(ctx context.Context) (SnapshotTotals, error) {
	var t SnapshotTotals
	err := s.db.QueryRowContext(ctx, s.db.Rebind(
		`SELECT count(DISTINCT room_id), count(*), CAST(coalesce(sum(`+isCheckpoint+`), 0) AS BIGINT), CAST(coalesce(sum(size_bytes), 0) AS BIGINT)
		 FROM snapshots WHERE complete`)).
		Scan(&t.Rooms, &t.Snapshots, &t.Checkpoints, &t.Bytes)
	if err != nil {
		return SnapshotTotals{}, fmt.Errorf("read snapshot totals: %w", err)
	}
	return t, nil
}

// ignoreNoRows is err, or nil when err is sql.ErrNoRows.
func ignoreNoRows(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	return err
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
