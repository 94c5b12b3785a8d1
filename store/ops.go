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
	"github.com/lib/pq"
)

// Append is a group of writes to commit to a room's log in one transaction:
// the room's sequencer gathers the requests that arrived while its previous
// commit was in flight and commits them together.
type Append struct {
	RoomID string
	// ExpectedVersion is the version the caller's in-memory state is at; the
	// ops get seqs ExpectedVersion+1 … ExpectedVersion+(all ops), in the
	// order of Writes.
	ExpectedVersion int64
	Writes          []AppendWrite
	// ElementCount is the room's element count after the whole group.
	ElementCount int64
}

// AppendWrite is one request's ops within a group.
type AppendWrite struct {
	// Ops are validated, encoded ops, stored byte for byte.
	Ops      []json.RawMessage
	ClientID string
	// IdempotencyKey, when not "", records this write's own result (the
	// version after its last op, and its op count) under the key.
	IdempotencyKey string
	// Audit, when not nil, is recorded in the group's transaction, with
	// the room and the version after this write's last op: the write
	// commits only if its audit row does (a restore is one such write).
	Audit *AuditEntry
}

// AppendResult is the outcome of a commit, or of one write in it.
type AppendResult struct {
	Version int64 // the room's version after the ops
	Applied int   // how many ops were appended
	// CreatedAt is the time recorded for the ops, exactly as OpsSince will
	// return it (zero for an IdempotentResult).
	CreatedAt time.Time
}

// AppendOps commits a group of writes to the room's log in one transaction:
// all of it or nothing. It returns
//   - ErrNotFound when the room does not exist;
//   - *VersionMismatchError when the room is not at a.ExpectedVersion
//     (nothing is checked or written then, idempotency keys included);
//   - ErrIdempotencyKeyUsed when one of the writes' keys was used on the room
//     within the last 24 h. The caller looks keys up first (IdempotentResults)
//     after it reached ExpectedVersion; since every write that records a key
//     also moves the version, this only happens when the two raced.
//
// A nil error means the group is committed (durable). On PostgreSQL the
// commit is one prepared statement, one round trip.
func (s *Store) AppendOps(ctx context.Context, a Append) (AppendResult, error) {
	res, err := s.appendOps(ctx, a)
	s.noteWrite(err)
	if err != nil {
		return AppendResult{}, fmt.Errorf("append ops to room %s: %w", a.RoomID, err)
	}
	return res, nil
}

// groupRows flattens a group into the columns of its op and key rows.
type groupRows struct {
	ops, clientIDs []string
	// sealed holds the sealed payloads (ops then holds ""), keyID the key
	// they are sealed with; both empty when nothing is sealed.
	sealed      [][]byte
	keyID       string
	keys        []string
	keyVersions []int64
	keyApplied  []int64
	audits      []AuditEntry
}

// flatten seals each op, when sl has keys, bound to its room and seq.
func flatten(a Append, roomID string, sl *sealer) (groupRows, int, error) {
	var g groupRows
	n := 0
	for _, w := range a.Writes {
		n += len(w.Ops)
	}
	if n == 0 {
		return g, 0, errors.New("no ops")
	}
	g.ops, g.clientIDs = make([]string, 0, n), make([]string, 0, n)
	if sl.ring != nil {
		g.sealed = make([][]byte, 0, n)
	}
	version := a.ExpectedVersion
	for wi, w := range a.Writes {
		if len(w.Ops) == 0 {
			return g, 0, fmt.Errorf("write %d has no ops", wi)
		}
		for i, op := range w.Ops {
			if len(op) == 0 {
				return g, 0, fmt.Errorf("write %d: op %d is empty", wi, i)
			}
			g.clientIDs = append(g.clientIDs, w.ClientID)
			if sl.ring == nil {
				// Bound as a string: text on both sides, stored byte for byte.
				g.ops = append(g.ops, string(op))
				continue
			}
			seq := a.ExpectedVersion + int64(len(g.clientIDs))
			sealed, keyID, err := sl.seal(op, opAD(roomID, seq))
			if err != nil {
				return g, 0, fmt.Errorf("seal op %d: %w", seq, err)
			}
			g.ops, g.sealed, g.keyID = append(g.ops, ""), append(g.sealed, sealed), keyID
		}
		version += int64(len(w.Ops))
		if w.Audit != nil {
			if err := checkAudit(w.Audit); err != nil {
				return g, 0, fmt.Errorf("write %d: %w", wi, err)
			}
			a, v := *w.Audit, version
			a.Version = &v
			g.audits = append(g.audits, a)
		}
		if w.IdempotencyKey != "" {
			g.keys = append(g.keys, w.IdempotencyKey)
			g.keyVersions = append(g.keyVersions, version)
			g.keyApplied = append(g.keyApplied, int64(len(w.Ops)))
		}
	}
	return g, n, nil
}

func (s *Store) appendOps(ctx context.Context, a Append) (AppendResult, error) {
	id, ok := canonicalID(a.RoomID)
	if !ok {
		return AppendResult{}, ErrNotFound
	}
	rows, n, err := flatten(a, id, s.keys.forRoom(id))
	if err != nil {
		return AppendResult{}, err
	}
	now := s.clock()
	res := AppendResult{Version: a.ExpectedVersion + int64(n), Applied: n, CreatedAt: now}
	for i := range rows.audits {
		rows.audits[i].RoomID = id
	}
	if s.dialect == dialectPostgres && len(rows.audits) > 0 {
		// A write with an audit row: the group statement and the row in
		// one transaction. Such writes are rare (restores), so the extra
		// round trips cost nothing that matters.
		err = s.transact(ctx, func(tx *sqlx.Tx) error {
			if len(rows.keys) > 0 {
				if err := s.clearExpiredKeys(ctx, tx, id, rows.keys, now); err != nil {
					return err
				}
			}
			if err := s.appendPostgres(ctx, id, a, rows, res, tx); err != nil {
				return err
			}
			return s.insertAudit(ctx, tx, rows.audits...)
		})
	} else if s.dialect == dialectPostgres {
		// Rooms committing at the same time share a transaction and its
		// flush (sharedCommits); alone, the statement is the transaction.
		err = s.commitShared(ctx, id, &pgGroup{id: id, a: a, rows: rows, res: res}, nil)
		if isUniqueViolation(err) && len(rows.keys) > 0 {
			// A key of the group is still recorded: expired (the statement
			// does not replace those), or used by a racing writer.
			err = s.transact(ctx, func(tx *sqlx.Tx) error {
				if err := s.clearExpiredKeys(ctx, tx, id, rows.keys, now); err != nil {
					return err
				}
				return s.appendPostgres(ctx, id, a, rows, res, tx)
			})
		}
	} else if len(rows.audits) == 0 {
		// Rooms committing at the same time share a transaction and its
		// flush (sharedCommits).
		err = s.commitShared(ctx, id, nil, func(ctx context.Context, tx *sqlx.Tx) error {
			if len(rows.keys) > 0 {
				if err := s.clearExpiredKeys(ctx, tx, id, rows.keys, now); err != nil {
					return err
				}
			}
			return s.appendSQLite(ctx, tx, id, a, rows, res)
		})
	} else {
		err = s.transact(ctx, func(tx *sqlx.Tx) error {
			if len(rows.keys) > 0 {
				if err := s.clearExpiredKeys(ctx, tx, id, rows.keys, now); err != nil {
					return err
				}
			}
			if err := s.appendSQLite(ctx, tx, id, a, rows, res); err != nil {
				return err
			}
			return s.insertAudit(ctx, tx, rows.audits...)
		})
	}
	if isUniqueViolation(err) {
		return AppendResult{}, ErrIdempotencyKeyUsed
	}
	if err != nil {
		return AppendResult{}, err
	}
	return res, nil
}

// appendPostgresQuery commits a group in one statement: the room row is
// updated only at the expected version (which locks it until the commit), and
// the ops and keys are inserted only when it was. The last column reads the
// version as of the statement's start, to tell a missing room (NULL) from a
// moved one.
const appendPostgresQuery = `
WITH r AS (
  UPDATE rooms SET version = $3, element_count = $4, updated_at = $5
   WHERE id = $1 AND version = $2
  RETURNING id
), o AS (
  INSERT INTO ops (room_id, seq, op, client_id, created_at, key_id, sealed)
  SELECT r.id, $2 + t.n, t.op, t.client_id, $5, $11, t.sealed
    FROM r, unnest($6::text[], $7::text[], $12::bytea[]) WITH ORDINALITY AS t(op, client_id, sealed, n)
), k AS (
  INSERT INTO idempotency_keys (room_id, key, version, applied, created_at)
  SELECT r.id, t.key, t.version, t.applied, $5
    FROM r, unnest($8::text[], $9::bigint[], $10::integer[]) AS t(key, version, applied)
)
SELECT EXISTS (SELECT 1 FROM r), (SELECT version FROM rooms WHERE id = $1)`

// appendPostgres runs appendPostgresQuery, prepared once per connection,
// through tx when one is given.
func (s *Store) appendPostgres(ctx context.Context, id string, a Append, g groupRows, res AppendResult, tx ...*sqlx.Tx) error {
	stmt := s.appendStmt
	if len(tx) > 0 {
		stmt = tx[0].StmtxContext(ctx, stmt)
	}
	var (
		applied bool
		current sql.NullInt64
	)
	err := stmt.QueryRowxContext(ctx, id, a.ExpectedVersion, res.Version, a.ElementCount, res.CreatedAt,
		pq.Array(g.ops), pq.Array(g.clientIDs), pq.Array(g.keys), pq.Array(g.keyVersions), pq.Array(g.keyApplied),
		// An empty sealed array pads with NULLs: the ops are plain.
		g.keyID, pq.ByteaArray(append([][]byte{}, g.sealed...)),
	).Scan(&applied, &current)
	switch {
	case err != nil:
		return fmt.Errorf("commit: %w", err)
	case applied:
		return nil
	case !current.Valid:
		return ErrNotFound
	default:
		// current may still read ExpectedVersion: the writer that moved the
		// room committed after this statement's snapshot was taken.
		return &VersionMismatchError{Current: current.Int64}
	}
}

// appendSQLite commits a group inside tx, which holds SQLite's write lock.
// Its statements are prepared once (sqliteStmts), so that the lock is held
// for their execution only.
func (s *Store) appendSQLite(ctx context.Context, tx *sqlx.Tx, id string, a Append, g groupRows, res AppendResult) error {
	upd, err := s.sqliteStmt(ctx, tx, stmtUpdateRoom)
	if err != nil {
		return fmt.Errorf("update room: %w", err)
	}
	result, err := upd.ExecContext(ctx, res.Version, a.ElementCount, s.timeArg(res.CreatedAt), id, a.ExpectedVersion)
	if err != nil {
		return fmt.Errorf("update room: %w", err)
	}
	if n, err := result.RowsAffected(); err != nil {
		return fmt.Errorf("update room: %w", err)
	} else if n == 0 {
		var current int64
		err := tx.QueryRowxContext(ctx, `SELECT version FROM rooms WHERE id = ?`, id).Scan(&current)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("read room: %w", err)
		}
		return &VersionMismatchError{Current: current}
	}
	if err := s.insertOps(ctx, tx, id, a.ExpectedVersion+1, g, res.CreatedAt); err != nil {
		return err
	}
	if len(g.keys) == 0 {
		return nil
	}
	ins, err := s.sqliteStmt(ctx, tx, stmtInsertKey)
	if err != nil {
		return fmt.Errorf("insert idempotency key: %w", err)
	}
	for i, key := range g.keys {
		if _, err := ins.ExecContext(ctx, id, key, g.keyVersions[i], g.keyApplied[i], s.timeArg(res.CreatedAt)); err != nil {
			return fmt.Errorf("insert idempotency key: %w", err)
		}
	}
	return nil
}

// The statements of a SQLite group commit, by key in sqliteStmts: an
// insert of n ops has key n (1 … opsPerInsert).
const (
	stmtUpdateRoom = -1 - iota
	stmtInsertKey
)

func sqliteQuery(key int) string {
	switch key {
	case stmtUpdateRoom:
		return `UPDATE rooms SET version = ?, element_count = ?, updated_at = ? WHERE id = ? AND version = ?`
	case stmtInsertKey:
		return `INSERT INTO idempotency_keys (room_id, key, version, applied, created_at) VALUES (?, ?, ?, ?, ?)`
	}
	var b strings.Builder
	b.WriteString(`INSERT INTO ops (room_id, seq, op, client_id, created_at, key_id, sealed) VALUES `)
	for i := range key {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(?, ?, ?, ?, ?, ?, ?)")
	}
	return b.String()
}

// sqliteStmt returns the statement of key, prepared once for the store
// (database/sql prepares it once on each connection) and bound to tx.
// Preparing costs SQLite about as much as running such a statement: done
// at every commit it was a good part of the time the write lock was held.
func (s *Store) sqliteStmt(ctx context.Context, tx *sqlx.Tx, key int) (*sqlx.Stmt, error) {
	s.sqliteMu.Lock()
	stmt, ok := s.sqliteStmts[key]
	s.sqliteMu.Unlock()
	if !ok {
		prepared, err := s.db.PreparexContext(ctx, sqliteQuery(key))
		if err != nil {
			return nil, fmt.Errorf("prepare: %w", err)
		}
		s.sqliteMu.Lock()
		if stmt, ok = s.sqliteStmts[key]; ok {
			_ = prepared.Close() // another commit prepared it meanwhile
		} else {
			if s.sqliteStmts == nil {
				s.sqliteStmts = make(map[int]*sqlx.Stmt)
			}
			s.sqliteStmts[key], stmt = prepared, prepared
		}
		s.sqliteMu.Unlock()
	}
	return tx.StmtxContext(ctx, stmt), nil
}

// clearExpiredKeys deletes the room's records of keys that expired, so that
// the keys can be used again.
func (s *Store) clearExpiredKeys(ctx context.Context, e sqlx.ExtContext, id string, keys []string, now time.Time) error {
	query, args, err := sqlx.In(`DELETE FROM idempotency_keys WHERE room_id = ? AND created_at <= ? AND key IN (?)`,
		id, s.timeArg(now.Add(-idempotencyTTL)), keys)
	if err != nil {
		return fmt.Errorf("delete expired idempotency keys: %w", err)
	}
	if _, err := e.ExecContext(ctx, e.Rebind(query), args...); err != nil {
		return fmt.Errorf("delete expired idempotency keys: %w", err)
	}
	return nil
}

// opsPerInsert bounds the rows of one SQLite INSERT, far below its limit on
// bound parameters (7 per row).
const opsPerInsert = 200

// insertOps inserts ops with consecutive seqs from firstSeq, opsPerInsert
// rows per statement.
func (s *Store) insertOps(ctx context.Context, tx *sqlx.Tx, id string, firstSeq int64, g groupRows, now time.Time) error {
	createdAt := s.timeArg(now)
	args := make([]any, 0, 7*min(len(g.ops), opsPerInsert))
	for start := 0; start < len(g.ops); start += opsPerInsert {
		end := min(start+opsPerInsert, len(g.ops))
		args = args[:0]
		for i := start; i < end; i++ {
			var sealed []byte // nil binds NULL: a plain op
			if g.sealed != nil {
				sealed = g.sealed[i]
			}
			args = append(args, id, firstSeq+int64(i), g.ops[i], g.clientIDs[i], createdAt, g.keyID, sealed)
		}
		stmt, err := s.sqliteStmt(ctx, tx, end-start)
		if err != nil {
			return fmt.Errorf("insert ops: %w", err)
		}
		if _, err := stmt.ExecContext(ctx, args...); err != nil {
			return fmt.Errorf("insert ops: %w", err)
		}
	}
	return nil
}

// IdempotentResult returns the stored result of key used on the room within
// the last 24 h; ok is false when there is none (including for an unknown
// room).
func (s *Store) IdempotentResult(ctx context.Context, roomID, key string) (res AppendResult, ok bool, err error) {
	found, err := s.IdempotentResults(ctx, roomID, []string{key})
	if err != nil {
		return AppendResult{}, false, err
	}
	res, ok = found[key]
	return res, ok, nil
}

// IdempotentResults returns the stored results of those of keys that were
// used on the room within the last 24 h, in one query.
func (s *Store) IdempotentResults(ctx context.Context, roomID string, keys []string) (map[string]AppendResult, error) {
	found := make(map[string]AppendResult)
	id, valid := canonicalID(roomID)
	keys = nonEmpty(keys)
	if !valid || len(keys) == 0 {
		return found, nil
	}
	query, args, err := sqlx.In(`SELECT key, version, applied FROM idempotency_keys WHERE room_id = ? AND created_at > ? AND key IN (?)`,
		id, s.timeArg(s.clock().Add(-idempotencyTTL)), keys)
	if err != nil {
		return nil, fmt.Errorf("read idempotency keys of room %s: %w", roomID, err)
	}
	rows, err := s.db.QueryContext(ctx, s.db.Rebind(query), args...)
	if err != nil {
		return nil, fmt.Errorf("read idempotency keys of room %s: %w", roomID, err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			key string
			res AppendResult
		)
		if err := rows.Scan(&key, &res.Version, &res.Applied); err != nil {
			return nil, fmt.Errorf("read idempotency keys of room %s: %w", roomID, err)
		}
		found[key] = res
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read idempotency keys of room %s: %w", roomID, err)
	}
	return found, nil
}

func nonEmpty(keys []string) []string {
	out := keys[:0:0]
	for _, k := range keys {
		if k != "" {
			out = append(out, k)
		}
	}
	return out
}

// PruneIdempotencyKeys deletes the keys older than 24 h, which answer
// nothing any more, and returns how many it deleted.
func (s *Store) PruneIdempotencyKeys(ctx context.Context) (int64, error) {
	res, err := s.execWrite(ctx, `DELETE FROM idempotency_keys WHERE created_at <= ?`,
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
// of them (limit <= 0: all). An unknown room has no ops. Ops at or below the
// room's pruned_through may still be returned while their rows await
// deletion; callers compare with RoomVersion's prunedThrough.
func (s *Store) OpsSince(ctx context.Context, roomID string, since int64, limit int) ([]OpRecord, error) {
	ops := []OpRecord{}
	id, ok := canonicalID(roomID)
	if !ok {
		return ops, nil
	}
	query := `SELECT seq, op, client_id, created_at, key_id, sealed FROM ops WHERE room_id = ? AND seq > ? ORDER BY seq`
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
	sl := s.keys.forRoom(id)
	for rows.Next() {
		var (
			r      OpRecord
			op     []byte // database/sql copies into a *[]byte
			keyID  string
			sealed []byte
		)
		if err := rows.Scan(&r.Seq, &op, &r.ClientID, timeDest(&r.CreatedAt), &keyID, &sealed); err != nil {
			return nil, fmt.Errorf("read ops of room %s: %w", roomID, err)
		}
		if keyID != "" {
			if op, err = sl.open(sealed, keyID, opAD(id, r.Seq)); err != nil {
				return nil, fmt.Errorf("read ops of room %s: op %d: %w", roomID, r.Seq, err)
			}
		}
		r.Op = op
		ops = append(ops, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read ops of room %s: %w", roomID, err)
	}
	return ops, nil
}

// RoomVersion returns the room's version and pruned_through as the database
// has them now: what a read on any instance must reflect. ErrNotFound when the
// room does not exist.
func (s *Store) RoomVersion(ctx context.Context, roomID string) (version, prunedThrough int64, err error) {
	id, ok := canonicalID(roomID)
	if !ok {
		return 0, 0, fmt.Errorf("read version of room %s: %w", roomID, ErrNotFound)
	}
	err = s.versionStmt.QueryRowxContext(ctx, id).Scan(&version, &prunedThrough)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, fmt.Errorf("read version of room %s: %w", roomID, ErrNotFound)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("read version of room %s: %w", roomID, err)
	}
	return version, prunedThrough, nil
}

// RoomVersions returns the versions of those of ids that exist, in one
// query: an instance polls the rooms it holds with it.
func (s *Store) RoomVersions(ctx context.Context, ids []string) (map[string]int64, error) {
	out := make(map[string]int64, len(ids))
	keys := make([]string, 0, len(ids))
	for _, id := range ids {
		if k, ok := canonicalID(id); ok {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return out, nil
	}
	query, args := `SELECT id, version FROM rooms WHERE id = ANY($1::uuid[])`, []any{pq.Array(keys)}
	if s.dialect == dialectSQLite {
		var err error
		if query, args, err = sqlx.In(`SELECT id, version FROM rooms WHERE id IN (?)`, keys); err != nil {
			return nil, fmt.Errorf("read room versions: %w", err)
		}
	}
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("read room versions: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id      string
			version int64
		)
		if err := rows.Scan(&id, &version); err != nil {
			return nil, fmt.Errorf("read room versions: %w", err)
		}
		out[id] = version
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read room versions: %w", err)
	}
	return out, nil
}
