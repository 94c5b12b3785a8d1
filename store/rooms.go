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

// defaultListLimit is the page size of ListRooms when it is given none.
const defaultListLimit = 50

const roomColumns = `id, name, version, element_count, pruned_through, created_at, updated_at`

type scanner interface{ Scan(dest ...any) error }

func scanRoom(row scanner) (Room, error) {
	var r Room
	err := row.Scan(&r.ID, &r.Name, &r.Version, &r.ElementCount, &r.PrunedThrough, timeDest(&r.CreatedAt), timeDest(&r.UpdatedAt))
	return r, err
}

// CreateRoom creates an empty room (version 0) with a new random UUID and
// no creator (open mode).
func (s *Store) CreateRoom(ctx context.Context, name string) (Room, error) {
	return s.CreateRoomBy(ctx, name, "")
}

// GetRoom returns the room, or ErrNotFound.
func (s *Store) GetRoom(ctx context.Context, id string) (Room, error) {
	key, ok := canonicalID(id)
	if !ok {
		return Room{}, fmt.Errorf("get room %s: %w", id, ErrNotFound)
	}
	r, err := scanRoom(s.db.QueryRowContext(ctx, s.db.Rebind(`SELECT `+roomColumns+` FROM rooms WHERE id = ?`), key))
	if errors.Is(err, sql.ErrNoRows) {
		return Room{}, fmt.Errorf("get room %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Room{}, fmt.Errorf("get room %s: %w", id, err)
	}
	return r, nil
}

// ListRooms returns up to limit rooms (50 when limit <= 0), newest first,
// after the position cursor names ("" for the first page). next is the cursor
// of the following page, "" on the last page. A cursor ListRooms did not make
// returns an error wrapping ErrInvalidCursor.
//
// Pagination is by key (created_at, id), so rooms created or deleted between
// pages neither repeat nor shift the pages.
func (s *Store) ListRooms(ctx context.Context, limit int, cursor string) (rooms []Room, next string, err error) {
	rooms, next, err = s.listRooms(ctx, limit, cursor, "", nil)
	if err != nil {
		return nil, "", fmt.Errorf("list rooms: %w", err)
	}
	return rooms, next, nil
}

// listRooms is ListRooms of the rooms that also match where (SQL with ?
// placeholders for args; "" for all rooms).
func (s *Store) listRooms(ctx context.Context, limit int, cursor, where string, args []any) (rooms []Room, next string, err error) {
	if limit <= 0 {
		limit = defaultListLimit
	}
	query := `SELECT ` + roomColumns + ` FROM rooms WHERE 1=1`
	if where != "" {
		query += ` AND ` + where
	}
	if cursor != "" {
		createdAt, id, err := decodeCursor(cursor)
		if err != nil {
			return nil, "", err
		}
		query += ` AND (created_at, id) < (?, ?)`
		args = append(args, s.timeArg(createdAt), id)
	}
	// One more than asked tells whether there is a next page.
	query += ` ORDER BY created_at DESC, id DESC LIMIT ?`
	args = append(args, limit+1)

	rows, err := s.db.QueryContext(ctx, s.db.Rebind(query), args...)
	if err != nil {
		return nil, "", err
	}
	defer rows.Close()
	rooms = make([]Room, 0, min(limit+1, 64))
	for rows.Next() {
		r, err := scanRoom(rows)
		if err != nil {
			return nil, "", err
		}
		rooms = append(rooms, r)
	}
	if err := rows.Err(); err != nil {
		return nil, "", err
	}
	if len(rooms) > limit {
		rooms = rooms[:limit]
		last := rooms[limit-1]
		next = encodeCursor(last.CreatedAt, last.ID)
	}
	return rooms, next, nil
}

// A cursor is base64url("<created_at unix micros>:<id>") of the last room of a page.
func encodeCursor(createdAt time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(createdAt.UnixMicro(), 10) + ":" + id))
}

func decodeCursor(cursor string) (time.Time, string, error) {
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return time.Time{}, "", ErrInvalidCursor
	}
	micros, id, ok := strings.Cut(string(raw), ":")
	if !ok {
		return time.Time{}, "", ErrInvalidCursor
	}
	us, err := strconv.ParseInt(micros, 10, 64)
	if err != nil {
		return time.Time{}, "", ErrInvalidCursor
	}
	id, ok = canonicalID(id)
	if !ok {
		return time.Time{}, "", ErrInvalidCursor
	}
	return time.UnixMicro(us).UTC(), id, nil
}

// DeleteRoom deletes the room with its ops, snapshots and idempotency keys, or returns
// ErrNotFound. audit, when not nil, is recorded in the same transaction (its
// RoomID set to the room's): the room is gone only if the row is written.
func (s *Store) DeleteRoom(ctx context.Context, id string, audit *AuditEntry) error {
	key, ok := canonicalID(id)
	if !ok {
		return fmt.Errorf("delete room %s: %w", id, ErrNotFound)
	}
	if err := checkAudit(audit); err != nil {
		return fmt.Errorf("delete room %s: %w", id, err)
	}
	err := s.transact(ctx, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, tx.Rebind(`DELETE FROM rooms WHERE id = ?`), key)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 0 {
			return ErrNotFound
		}
		return s.insertAuditFor(ctx, tx, key, audit)
	})
	if err != nil {
		return fmt.Errorf("delete room %s: %w", id, err)
	}
	return nil
}

// RenameRoom sets the room's name and returns the room, or ErrNotFound.
// audit, when not nil, is recorded in the same transaction.
func (s *Store) RenameRoom(ctx context.Context, id, name string, audit *AuditEntry) (Room, error) {
	key, ok := canonicalID(id)
	if !ok {
		return Room{}, fmt.Errorf("rename room %s: %w", id, ErrNotFound)
	}
	if err := checkAudit(audit); err != nil {
		return Room{}, fmt.Errorf("rename room %s: %w", id, err)
	}
	var r Room
	err := s.transact(ctx, func(tx *sqlx.Tx) error {
		// updated_at is the time of the last op (section 4): a rename
		// leaves it.
		res, err := tx.ExecContext(ctx, tx.Rebind(`UPDATE rooms SET name = ? WHERE id = ?`), name, key)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return ErrNotFound
		}
		if r, err = scanRoom(tx.QueryRowxContext(ctx, tx.Rebind(`SELECT `+roomColumns+` FROM rooms WHERE id = ?`), key)); err != nil {
			return err
		}
		return s.insertAuditFor(ctx, tx, key, audit)
	})
	if err != nil {
		return Room{}, fmt.Errorf("rename room %s: %w", id, err)
	}
	return r, nil
}

// insertAuditFor records audit, when not nil, as a row about the room.
func (s *Store) insertAuditFor(ctx context.Context, e sqlx.ExtContext, roomKey string, audit *AuditEntry) error {
	if audit == nil {
		return nil
	}
	a := *audit
	a.RoomID = roomKey
	return s.insertAudit(ctx, e, a)
}
