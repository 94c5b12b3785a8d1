package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
)

// Append is a batch of ops to commit to a room's log.
type Append struct {
	RoomID string
	// ExpectedVersion is the version the caller's in-memory state is at; the
	// ops get seqs ExpectedVersion+1 … ExpectedVersion+len(Ops).
	ExpectedVersion int64
	// Ops are validated, encoded ops, stored byte for byte.
	Ops      []json.RawMessage
	ClientID string
	// IdempotencyKey, when not "", records the result under this key.
	IdempotencyKey string
	// ElementCount is the room's element count after these ops.
	ElementCount int64
}

// AppendResult is the outcome of an AppendOps.
type AppendResult struct {
	Version int64 // the room's version after the ops
	Applied int   // how many ops were appended
	// CreatedAt is the time recorded for the ops, exactly as OpsSince will
	// return it (zero for an IdempotentResult).
	CreatedAt time.Time
}

// opsPerInsert bounds the rows of one INSERT, far below both dialects' limits
// on bound parameters (5 per row).
const opsPerInsert = 200

// AppendOps commits a batch to the room's log in one transaction, with the
// room row locked: all of it or nothing. It returns
//   - ErrNotFound when the room does not exist;
//   - ErrIdempotencyKeyUsed when a.IdempotencyKey was used on the room within
//     the last 24 h (checked before the version: the key is the definitive
//     answer to a retry);
//   - *VersionMismatchError when the room is not at a.ExpectedVersion.
//
// A nil error means the batch is committed (durable).
func (s *Store) AppendOps(ctx context.Context, a Append) (AppendResult, error) {
	res, err := s.appendOps(ctx, a)
	if err != nil {
		return AppendResult{}, fmt.Errorf("append ops to room %s: %w", a.RoomID, err)
	}
	return res, nil
}

func (s *Store) appendOps(ctx context.Context, a Append) (AppendResult, error) {
	id, ok := canonicalID(a.RoomID)
	if !ok {
		return AppendResult{}, ErrNotFound
	}
	if len(a.Ops) == 0 {
		return AppendResult{}, errors.New("no ops")
	}
	for i, op := range a.Ops {
		if len(op) == 0 {
			return AppendResult{}, fmt.Errorf("op %d is empty", i)
		}
	}
	now := s.clock()
	res := AppendResult{Version: a.ExpectedVersion + int64(len(a.Ops)), Applied: len(a.Ops),
		CreatedAt: now.UTC().Truncate(time.Microsecond)}
	err := s.transact(ctx, func(tx *sqlx.Tx) error {
		current, err := s.lockRoom(ctx, tx, id)
		if err != nil {
			return err
		}
		if a.IdempotencyKey != "" {
			if err := s.insertIdempotencyKey(ctx, tx, id, a.IdempotencyKey, res, now); err != nil {
				return err
			}
		}
		if current != a.ExpectedVersion {
			return &VersionMismatchError{Current: current}
		}
		if err := s.insertOps(ctx, tx, id, a.ExpectedVersion+1, a.Ops, a.ClientID, now); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, tx.Rebind(
			`UPDATE rooms SET version = ?, element_count = ?, updated_at = ? WHERE id = ?`),
			res.Version, a.ElementCount, s.timeArg(now), id)
		if err != nil {
			return fmt.Errorf("update room: %w", err)
		}
		return nil
	})
	if err != nil {
		return AppendResult{}, err
	}
	return res, nil
}

// lockRoom returns the room's version, with the row locked until the end of
// the transaction. SQLite needs no row lock: the transaction began IMMEDIATE,
// holding the database's write lock.
//
// On PostgreSQL the lock is FOR NO KEY UPDATE: it excludes other AppendOps
// (and InsertSnapshot's trimming) on the room, but not the FOR KEY SHARE
// lock that inserting a snapshot row takes through its foreign key, so a
// snapshot being written does not hold up the room's writers.
func (s *Store) lockRoom(ctx context.Context, e sqlx.ExtContext, id string) (int64, error) {
	query := `SELECT version FROM rooms WHERE id = ?`
	if s.dialect == dialectPostgres {
		query += ` FOR NO KEY UPDATE`
	}
	var version int64
	err := e.QueryRowxContext(ctx, e.Rebind(query), id).Scan(&version)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("lock room: %w", err)
	}
	return version, nil
}

// insertIdempotencyKey records res under key, replacing an expired record of
// the same key.
func (s *Store) insertIdempotencyKey(ctx context.Context, e sqlx.ExtContext, id, key string, res AppendResult, now time.Time) error {
	_, err := e.ExecContext(ctx, e.Rebind(
		`DELETE FROM idempotency_keys WHERE room_id = ? AND key = ? AND created_at <= ?`),
		id, key, s.timeArg(now.Add(-idempotencyTTL)))
	if err != nil {
		return fmt.Errorf("delete expired idempotency key: %w", err)
	}
	_, err = e.ExecContext(ctx, e.Rebind(
		`INSERT INTO idempotency_keys (room_id, key, version, applied, created_at) VALUES (?, ?, ?, ?, ?)`),
		id, key, res.Version, res.Applied, s.timeArg(now))
	if isUniqueViolation(err) {
		return ErrIdempotencyKeyUsed
	}
	if err != nil {
		return fmt.Errorf("insert idempotency key: %w", err)
	}
	return nil
}

// insertOps inserts ops with consecutive seqs from firstSeq.
func (s *Store) insertOps(ctx context.Context, e sqlx.ExtContext, id string, firstSeq int64, ops []json.RawMessage, clientID string, now time.Time) error {
	createdAt := s.timeArg(now)
	for start := 0; start < len(ops); start += opsPerInsert {
		end := min(start+opsPerInsert, len(ops))
		var b strings.Builder
		b.WriteString(`INSERT INTO ops (room_id, seq, op, client_id, created_at) VALUES `)
		args := make([]any, 0, 5*(end-start))
		for i := start; i < end; i++ {
			if i > start {
				b.WriteString(", ")
			}
			b.WriteString("(?, ?, ?, ?, ?)")
			// Bound as a string: text on both sides, stored byte for byte.
			args = append(args, id, firstSeq+int64(i), string(ops[i]), clientID, createdAt)
		}
		if _, err := e.ExecContext(ctx, e.Rebind(b.String()), args...); err != nil {
			return fmt.Errorf("insert ops: %w", err)
		}
	}
	return nil
}

// IdempotentResult returns the stored result of key used on the room within
// the last 24 h; ok is false when there is none (including for an unknown
// room).
func (s *Store) IdempotentResult(ctx context.Context, roomID, key string) (res AppendResult, ok bool, err error) {
	id, valid := canonicalID(roomID)
	if !valid || key == "" {
		return AppendResult{}, false, nil
	}
	err = s.db.QueryRowContext(ctx, s.db.Rebind(
		`SELECT version, applied FROM idempotency_keys WHERE room_id = ? AND key = ? AND created_at > ?`),
		id, key, s.timeArg(s.clock().Add(-idempotencyTTL))).Scan(&res.Version, &res.Applied)
	if errors.Is(err, sql.ErrNoRows) {
		return AppendResult{}, false, nil
	}
	if err != nil {
		return AppendResult{}, false, fmt.Errorf("read idempotency key of room %s: %w", roomID, err)
	}
	return res, true, nil
}

// PruneIdempotencyKeys deletes the keys older than 24 h, which answer
// nothing any more, and returns how many it deleted.
func (s *Store) PruneIdempotencyKeys(ctx context.Context) (int64, error) {
	res, err := s.db.ExecContext(ctx, s.db.Rebind(`DELETE FROM idempotency_keys WHERE created_at <= ?`),
		s.timeArg(s.clock().Add(-idempotencyTTL)))
	if err != nil {
		return 0, fmt.Errorf("prune idempotency keys: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("prune idempotency keys: %w", err)
	}
	return n, nil
}

// OpsSince returns the room's ops with seq > since, ascending, at most limit
// of them (limit <= 0: all). An unknown room has no ops.
func (s *Store) OpsSince(ctx context.Context, roomID string, since int64, limit int) ([]OpRecord, error) {
	ops := []OpRecord{}
	id, ok := canonicalID(roomID)
	if !ok {
		return ops, nil
	}
	query := `SELECT seq, op, client_id, created_at FROM ops WHERE room_id = ? AND seq > ? ORDER BY seq`
	args := []any{id, since}
	if limit > 0 {
		query += ` LIMIT ?`
		args = append(args, limit)
	}
	rows, err := s.db.QueryContext(ctx, s.db.Rebind(query), args...)
	if err != nil {
		return nil, fmt.Errorf("read ops of room %s: %w", roomID, err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			r  OpRecord
			op []byte // database/sql copies into a *[]byte
		)
		if err := rows.Scan(&r.Seq, &op, &r.ClientID, timeDest(&r.CreatedAt)); err != nil {
			return nil, fmt.Errorf("read ops of room %s: %w", roomID, err)
		}
		r.Op = op
		ops = append(ops, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read ops of room %s: %w", roomID, err)
	}
	return ops, nil
}
