package store

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
)

// Audit actions (DESIGN.md 9.5).
const (
	AuditSnapshotList    = "snapshot_list"
	AuditSnapshotRead    = "snapshot_read"
	AuditSnapshotLatest  = "snapshot_latest"
	AuditSnapshotCreate  = "snapshot_create"
	AuditSnapshotRestore = "snapshot_restore"
	AuditSnapshotsClear  = "snapshots_clear"
	AuditRoomCreate      = "room_create"
	AuditRoomDelete      = "room_delete"
	AuditRoomRename      = "room_rename"
	AuditMemberSet       = "member_set"
	AuditMemberRemove    = "member_remove"
	AuditSessionCreate   = "session_create"
)

// AuditActions lists every action, in the order of DESIGN.md 9.5.
var AuditActions = []string{
	AuditSnapshotList, AuditSnapshotRead, AuditSnapshotLatest, AuditSnapshotCreate,
	AuditSnapshotRestore, AuditSnapshotsClear, AuditRoomCreate, AuditRoomDelete,
	AuditRoomRename, AuditMemberSet, AuditMemberRemove, AuditSessionCreate,
}

// Audit outcomes: done, refused by authorization (401/403/404), or refused
// by a rate limit (429).
const (
	OutcomeOK      = "ok"
	OutcomeDenied  = "denied"
	OutcomeLimited = "limited"
)

// AuditEntry is one row of the audit log. RoomID and SnapshotID are "" and
// Version and Bytes nil where the action has none.
type AuditEntry struct {
	ID         int64
	At         time.Time // zero: the store's clock when it is written
	Subject    string
	Address    string
	Action     string
	RoomID     string
	SnapshotID string
	Version    *int64
	Bytes      *int64
	Outcome    string
	RequestID  string
	Detail     string
}

// AuditFilter selects rows of the audit log.
type AuditFilter struct {
	RoomID string // "": every room's rows, and those of no room
	Action string // "": every action
	Limit  int    // page size; <= 0 means 50
	Cursor string // "" for the first page; else a next cursor of ListAudit
}

const auditColumns = `id, at, subject, address, action, room_id, snapshot_id, version, bytes, outcome, request_id, detail`

// insertAudit writes entries with e, inside the caller's transaction when
// e is one: the rows of a change commit or roll back with it.
func (s *Store) insertAudit(ctx context.Context, e sqlx.ExtContext, entries ...AuditEntry) error {
	if len(entries) == 0 {
		return nil
	}
	now := s.clock()
	// Rows per statement, far below SQLite's limit on bound parameters
	// (12 per row).
	const perInsert = 500
	for start := 0; start < len(entries); start += perInsert {
		batch := entries[start:min(start+perInsert, len(entries))]
		var b strings.Builder
		b.WriteString(`INSERT INTO audit_log (at, subject, address, action, room_id, snapshot_id, version, bytes, outcome, request_id, detail) VALUES `)
		args := make([]any, 0, 11*len(batch))
		for i, a := range batch {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
			at := a.At
			if at.IsZero() {
				at = now
			}
			args = append(args, s.timeArg(at.UTC().Truncate(time.Microsecond)), a.Subject, a.Address, a.Action,
				uuidArg(a.RoomID), uuidArg(a.SnapshotID), a.Version, a.Bytes, a.Outcome, a.RequestID, a.Detail)
		}
		if _, err := e.ExecContext(ctx, e.Rebind(b.String()), args...); err != nil {
			return fmt.Errorf("insert %d audit rows: %w", len(batch), err)
		}
	}
	return nil
}

// uuidArg is a room or snapshot id as a column value: NULL for none, and
// for anything that is no UUID (which no room has).
func uuidArg(id string) any {
	key, ok := canonicalID(id)
	if !ok {
		return nil
	}
	return key
}

// InsertAudit records entries in one transaction: all or none.
func (s *Store) InsertAudit(ctx context.Context, entries []AuditEntry) error {
	if len(entries) == 0 {
		return nil
	}
	err := s.transact(ctx, func(tx *sqlx.Tx) error { return s.insertAudit(ctx, tx, entries...) })
	if err != nil {
		return fmt.Errorf("record audit: %w", err)
	}
	return nil
}

// ListAudit returns a page of the audit log, newest first (by time, then
// by id), and the cursor of the next page ("" on the last). A cursor it did
// not make returns an error wrapping ErrInvalidCursor.
func (s *Store) ListAudit(ctx context.Context, f AuditFilter) (entries []AuditEntry, next string, err error) {
	limit := f.Limit
	if limit <= 0 {
		limit = defaultListLimit
	}
	query := `SELECT ` + auditColumns + ` FROM audit_log WHERE 1=1`
	var args []any
	if f.RoomID != "" {
		key, ok := canonicalID(f.RoomID)
		if !ok {
			return []AuditEntry{}, "", nil
		}
		query += ` AND room_id = ?`
		args = append(args, key)
	}
	if f.Action != "" {
		query += ` AND action = ?`
		args = append(args, f.Action)
	}
	if f.Cursor != "" {
		at, id, err := decodeAuditCursor(f.Cursor)
		if err != nil {
			return nil, "", fmt.Errorf("list audit: %w", err)
		}
		query += ` AND (at < ? OR (at = ? AND id < ?))`
		args = append(args, s.timeArg(at), s.timeArg(at), id)
	}
	query += ` ORDER BY at DESC, id DESC LIMIT ?`
	args = append(args, limit+1)
	rows, err := s.db.QueryContext(ctx, s.db.Rebind(query), args...)
	if err != nil {
		return nil, "", fmt.Errorf("list audit: %w", err)
	}
	defer rows.Close()
	entries = make([]AuditEntry, 0, min(limit+1, 64))
	for rows.Next() {
		var (
			a                 AuditEntry
			roomID, snapID    sql.NullString
			version, numBytes sql.NullInt64
		)
		if err := rows.Scan(&a.ID, timeDest(&a.At), &a.Subject, &a.Address, &a.Action, &roomID, &snapID,
			&version, &numBytes, &a.Outcome, &a.RequestID, &a.Detail); err != nil {
			return nil, "", fmt.Errorf("list audit: %w", err)
		}
		a.RoomID, a.SnapshotID = roomID.String, snapID.String
		if version.Valid {
			a.Version = &version.Int64
		}
		if numBytes.Valid {
			a.Bytes = &numBytes.Int64
		}
		entries = append(entries, a)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("list audit: %w", err)
	}
	if len(entries) > limit {
		entries = entries[:limit]
		last := entries[limit-1]
		next = encodeAuditCursor(last.At, last.ID)
	}
	return entries, next, nil
}

// An audit cursor is base64url("a<at unix micros>:<id>") of a page's last
// row; the "a" keeps room cursors and audit cursors apart.
func encodeAuditCursor(at time.Time, id int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("a" + strconv.FormatInt(at.UnixMicro(), 10) + ":" + strconv.FormatInt(id, 10)))
}

func decodeAuditCursor(cursor string) (time.Time, int64, error) {
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil || len(raw) < 2 || raw[0] != 'a' {
		return time.Time{}, 0, ErrInvalidCursor
	}
	micros, id, ok := strings.Cut(string(raw[1:]), ":")
	if !ok {
		return time.Time{}, 0, ErrInvalidCursor
	}
	us, err1 := strconv.ParseInt(micros, 10, 64)
	n, err2 := strconv.ParseInt(id, 10, 64)
	if err1 != nil || err2 != nil || n < 0 {
		return time.Time{}, 0, ErrInvalidCursor
	}
	return time.UnixMicro(us).UTC(), n, nil
}

// auditPrunePerDelete bounds the rows one pruning statement deletes, so
// that no prune holds SQLite's write lock for long.
const auditPrunePerDelete = 5000

// PruneAudit deletes the audit rows recorded before before, in batches,
// and returns how many it deleted.
func (s *Store) PruneAudit(ctx context.Context, before time.Time) (int64, error) {
	var total int64
	for {
		res, err := s.execWrite(ctx, `DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE at < ? LIMIT ?)`,
			s.timeArg(before.UTC()), auditPrunePerDelete)
		if err != nil {
			return total, fmt.Errorf("prune audit rows before %s: %w", before.Format(time.RFC3339), err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, fmt.Errorf("prune audit rows: %w", err)
		}
		total += n
		if n < auditPrunePerDelete {
			return total, nil
		}
	}
}

// errNoAudit is returned for a change asked to record an entry that lacks
// what every row needs; nothing is changed.
var errNoAudit = errors.New("audit entry without action or outcome")

// checkAudit reports whether a, when given, can be recorded.
func checkAudit(a *AuditEntry) error {
	if a != nil && (a.Action == "" || a.Outcome == "") {
		return errNoAudit
	}
	return nil
}
