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

// ErrMemberNotFound: RemoveMember was asked to remove a subject that is not
// a member of the room.
var ErrMemberNotFound = errors.New("member not found")

// Member is a subject given a role in a room.
type Member struct {
	Subject   string
	Role      string // viewer, editor or owner
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Access is what decides who may do what in a room: the subject that
// created it ("" when made in open mode) and the roles of its members by
// subject.
type Access struct {
	CreatedBy string
	Members   map[string]string
}

// CreateRoomBy creates an empty room owned by createdBy, the subject of the
// token that asked for it ("" in open mode: nobody owns it by creation).
func (s *Store) CreateRoomBy(ctx context.Context, name, createdBy string) (Room, error) {
	now := s.clock()
	r := Room{ID: uuid.NewString(), Name: name, CreatedAt: now, UpdatedAt: now}
	_, err := s.execWrite(ctx,
		`INSERT INTO rooms (id, name, version, element_count, created_at, updated_at, created_by) VALUES (?, ?, 0, 0, ?, ?, ?)`,
		r.ID, r.Name, s.timeArg(now), s.timeArg(now), createdBy)
	if err != nil {
		return Room{}, fmt.Errorf("create room: %w", err)
	}
	return r, nil
}

// RoomAccess returns the room's creator and members in one read, or
// ErrNotFound.
func (s *Store) RoomAccess(ctx context.Context, roomID string) (Access, error) {
	key, ok := canonicalID(roomID)
	if !ok {
		return Access{}, fmt.Errorf("room access %s: %w", roomID, ErrNotFound)
	}
	// One statement: the room row, joined to its members when it has any.
	rows, err := s.db.QueryContext(ctx, s.db.Rebind(
		`SELECT r.created_by, m.subject, m.role FROM rooms r LEFT JOIN room_members m ON m.room_id = r.id WHERE r.id = ?`), key)
	if err != nil {
		return Access{}, fmt.Errorf("room access %s: %w", roomID, err)
	}
	defer rows.Close()
	a := Access{Members: map[string]string{}}
	found := false
	for rows.Next() {
		var subject, role sql.NullString
		if err := rows.Scan(&a.CreatedBy, &subject, &role); err != nil {
			return Access{}, fmt.Errorf("room access %s: %w", roomID, err)
		}
		found = true
		if subject.Valid {
			a.Members[subject.String] = role.String
		}
	}
	if err := rows.Err(); err != nil {
		return Access{}, fmt.Errorf("room access %s: %w", roomID, err)
	}
	if !found {
		return Access{}, fmt.Errorf("room access %s: %w", roomID, ErrNotFound)
	}
	return a, nil
}

// Members lists the room's members by subject, or returns ErrNotFound.
func (s *Store) Members(ctx context.Context, roomID string) ([]Member, error) {
	key, ok := canonicalID(roomID)
	if !ok {
		return nil, fmt.Errorf("members of %s: %w", roomID, ErrNotFound)
	}
	if err := s.roomExists(ctx, s.db, key); err != nil {
		return nil, fmt.Errorf("members of %s: %w", roomID, err)
	}
	rows, err := s.db.QueryContext(ctx, s.db.Rebind(
		`SELECT subject, role, created_at, updated_at FROM room_members WHERE room_id = ? ORDER BY subject`), key)
	if err != nil {
		return nil, fmt.Errorf("members of %s: %w", roomID, err)
	}
	defer rows.Close()
	members := []Member{}
	for rows.Next() {
		var m Member
		if err := rows.Scan(&m.Subject, &m.Role, timeDest(&m.CreatedAt), timeDest(&m.UpdatedAt)); err != nil {
			return nil, fmt.Errorf("members of %s: %w", roomID, err)
		}
		members = append(members, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("members of %s: %w", roomID, err)
	}
	return members, nil
}

// SetMember gives subject role (viewer, editor or owner) in the room,
// replacing any role it had, and reports whether the subject is new to the
// room. ErrNotFound when the room does not exist. audit, when not nil, is
// recorded in the same transaction: the role changes only if the row is
// written.
func (s *Store) SetMember(ctx context.Context, roomID, subject, role string, audit *AuditEntry) (created bool, err error) {
	key, ok := canonicalID(roomID)
	if !ok {
		return false, fmt.Errorf("set member of %s: %w", roomID, ErrNotFound)
	}
	if err := checkAudit(audit); err != nil {
		return false, fmt.Errorf("set member of %s: %w", roomID, err)
	}
	now := s.timeArg(s.clock())
	err = s.transact(ctx, func(tx *sqlx.Tx) error {
		if err := s.roomExists(ctx, tx, key); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, tx.Rebind(
			`UPDATE room_members SET role = ?, updated_at = ? WHERE room_id = ? AND subject = ?`), role, now, key, subject)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 0 {
			created = true
			_, err = tx.ExecContext(ctx, tx.Rebind(
				`INSERT INTO room_members (room_id, subject, role, created_at, updated_at) VALUES (?, ?, ?, ?, ?)`), key, subject, role, now, now)
			if err != nil {
				return err
			}
		}
		return s.insertAuditFor(ctx, tx, key, audit)
	})
	if err != nil {
		return false, fmt.Errorf("set member %q of %s: %w", subject, roomID, err)
	}
	return created, nil
}

// RemoveMember takes subject's role in the room away: ErrNotFound when the
// room does not exist, ErrMemberNotFound when subject is not a member.
// audit, when not nil, is recorded in the same transaction.
func (s *Store) RemoveMember(ctx context.Context, roomID, subject string, audit *AuditEntry) error {
	key, ok := canonicalID(roomID)
	if !ok {
		return fmt.Errorf("remove member of %s: %w", roomID, ErrNotFound)
	}
	if err := checkAudit(audit); err != nil {
		return fmt.Errorf("remove member of %s: %w", roomID, err)
	}
	err := s.transact(ctx, func(tx *sqlx.Tx) error {
		if err := s.roomExists(ctx, tx, key); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, tx.Rebind(`DELETE FROM room_members WHERE room_id = ? AND subject = ?`), key, subject)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 0 {
			return ErrMemberNotFound
		}
		return s.insertAuditFor(ctx, tx, key, audit)
	})
	if err != nil {
		return fmt.Errorf("remove member %q of %s: %w", subject, roomID, err)
	}
	return nil
}

func (s *Store) roomExists(ctx context.Context, q sqlx.QueryerContext, key string) error {
	var one int
	err := q.QueryRowxContext(ctx, s.db.Rebind(`SELECT 1 FROM rooms WHERE id = ?`), key).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	return err
}

// ListRoomsFor is ListRooms restricted to the rooms subject may see: those
// it created, those it is a member of, and the ids in tokenRooms (the rooms
// its token names; ids that are not UUIDs are ignored).
func (s *Store) ListRoomsFor(ctx context.Context, subject string, tokenRooms []string, limit int, cursor string) ([]Room, string, error) {
	where := `(created_by = ? OR id IN (SELECT room_id FROM room_members WHERE subject = ?)`
	args := []any{subject, subject}
	ids := make([]string, 0, len(tokenRooms))
	for _, id := range tokenRooms {
		if key, ok := canonicalID(id); ok {
			ids = append(ids, key)
		}
	}
	if len(ids) > 0 {
		in, inArgs, err := sqlx.In(` OR id IN (?)`, ids)
		if err != nil {
			return nil, "", fmt.Errorf("list rooms of %q: %w", subject, err)
		}
		where += in
		args = append(args, inArgs...)
	}
	where += `)`
	rooms, next, err := s.listRooms(ctx, limit, cursor, where, args)
	if err != nil {
		return nil, "", fmt.Errorf("list rooms of %q: %w", subject, err)
	}
	return rooms, next, nil
}
