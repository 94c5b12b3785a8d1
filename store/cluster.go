package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/lib/pq"
)

// What several LiveShare instances on one PostgreSQL database share beside
// the rooms: a notification channel, and who is subscribed where
// (presence). The embedded SQLite database serves one process; these
// methods are for PostgreSQL only and return ErrNotShared on SQLite.

// ErrNotShared: the database is the embedded one, which one process uses.
var ErrNotShared = errors.New("the embedded database is not shared between processes")

// DatabaseURL returns the URL the store connected with ("" for SQLite), for
// the dedicated connection that listens for notifications.
func (s *Store) DatabaseURL() string { return s.url }

// NotifyChannel is the channel instances notify each other on. It names
// the schema when it is not public, so that separate schemas of one
// database (tests) do not hear each other.
func (s *Store) NotifyChannel() string { return s.channel }

func (s *Store) readChannel(ctx context.Context) error {
	var schema string
	if err := s.db.QueryRowContext(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return fmt.Errorf("read current schema: %w", err)
	}
	s.channel = channelFor(schema)
	return nil
}

// maxChannelLen is PostgreSQL's identifier limit (NAMEDATALEN-1): pg_notify
// refuses a longer channel name, while LISTEN would silently truncate it.
const maxChannelLen = 63

// channelFor names the notification channel of a schema. A schema name too
// long for a channel is replaced by a digest of it, so that instances still
// hear each other instead of falling back to polling.
func channelFor(schema string) string {
	if schema == "public" {
		return "liveshare"
	}
	name := "liveshare_" + schema
	if len(name) <= maxChannelLen {
		return name
	}
	sum := sha256.Sum256([]byte(schema))
	return "liveshare_" + hex.EncodeToString(sum[:16])
}

// notifyQuery sends notifications in one statement, prepared once. A
// NOTIFY makes its transaction commit a record of its own, and a commit
// waits for the disk by default: the notifications would cost the disk a
// flush for each that the op commits they follow already made. They need
// none (a notification is never kept across a restart: the others' polls
// find what a lost one would have told), so the transaction does not wait
// (set_config(…, true) holds for the statement's own transaction).
const notifyQuery = `SELECT pg_notify($1, p)
  FROM (SELECT set_config('synchronous_commit', 'off', true)) AS c, unnest($2::text[]) AS p`

// Notify sends payloads on the notification channel, in one statement.
func (s *Store) Notify(ctx context.Context, payloads []string) error {
	if s.dialect != dialectPostgres {
		return ErrNotShared
	}
	if len(payloads) == 0 {
		return nil
	}
	_, err := s.notifyStmt.ExecContext(ctx, s.channel, pq.Array(payloads))
	if err != nil {
		return fmt.Errorf("notify: %w", err)
	}
	return nil
}

// Heartbeat records that the instance is alive, registering it if it is
// not (first start, or other instances took it for dead): registered is
// then true and its presence rows are gone, to be written again.
func (s *Store) Heartbeat(ctx context.Context, instanceID string) (registered bool, err error) {
	if s.dialect != dialectPostgres {
		return false, ErrNotShared
	}
	err = s.db.QueryRowContext(ctx, `
		INSERT INTO instances (id, started_at, seen_at) VALUES ($1, now(), now())
		ON CONFLICT (id) DO UPDATE SET seen_at = now()
		RETURNING xmax = 0`, instanceID).Scan(&registered)
	if err != nil {
		return false, fmt.Errorf("heartbeat of instance %s: %w", instanceID, err)
	}
	return registered, nil
}

// RemoveInstance deletes the instance and its presence rows (a graceful
// stop).
func (s *Store) RemoveInstance(ctx context.Context, instanceID string) error {
	if s.dialect != dialectPostgres {
		return ErrNotShared
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM instances WHERE id = $1`, instanceID); err != nil {
		return fmt.Errorf("remove instance %s: %w", instanceID, err)
	}
	return nil
}

// ReapInstances deletes the instances not seen for deadAfter (they died
// without stopping) with their presence rows, and returns the rooms whose
// presence changed.
func (s *Store) ReapInstances(ctx context.Context, deadAfter time.Duration) ([]string, error) {
	if s.dialect != dialectPostgres {
		return nil, ErrNotShared
	}
	rows, err := s.db.QueryContext(ctx, `
		WITH dead AS (DELETE FROM instances WHERE seen_at < now() - $1 * interval '1 microsecond' RETURNING id)
		SELECT DISTINCT p.room_id FROM presence p JOIN dead ON p.instance_id = dead.id`, deadAfter.Microseconds())
	if err != nil {
		return nil, fmt.Errorf("reap dead instances: %w", err)
	}
	defer rows.Close()
	var rooms []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("reap dead instances: %w", err)
		}
		rooms = append(rooms, id)
	}
	return rooms, rows.Err()
}

// PresenceRow is one subscriber as the presence table holds it.
type PresenceRow struct {
	RoomID      string
	SubID       string
	InstanceID  string
	Name        string
	ConnectedAt time.Time
	State       string // JSON, "" when none
	PresenceID  string // the client's ?presence_id=, "" when none
	Owner       string // who may set State: the token's subject, "" in open mode
}

// PresenceKey names one subscriber's row.
type PresenceKey struct{ RoomID, SubID string }

// SyncPresence writes an instance's joins and leaves in one transaction.
// Presence is ephemeral: the commit does not wait for the disk.
func (s *Store) SyncPresence(ctx context.Context, instanceID string, joins []PresenceRow, leaves []PresenceKey) error {
	if s.dialect != dialectPostgres {
		return ErrNotShared
	}
	if len(joins) == 0 && len(leaves) == 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sync presence: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, `SET LOCAL synchronous_commit = off`); err != nil {
		return fmt.Errorf("sync presence: %w", err)
	}
	if len(leaves) > 0 {
		rooms, subs := make([]string, len(leaves)), make([]string, len(leaves))
		for i, l := range leaves {
			rooms[i], subs[i] = l.RoomID, l.SubID
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM presence p USING unnest($1::uuid[], $2::text[]) AS l(room_id, sub_id)
			WHERE p.room_id = l.room_id AND p.sub_id = l.sub_id`, pq.Array(rooms), pq.Array(subs))
		if err != nil {
			return fmt.Errorf("sync presence: delete: %w", err)
		}
	}
	if len(joins) > 0 {
		n := len(joins)
		rooms, subs, names, states := make([]string, n), make([]string, n), make([]string, n), make([]sql.NullString, n)
		times, pids, owners := make([]string, n), make([]string, n), make([]string, n)
		for i, j := range joins {
			rooms[i], subs[i], names[i], pids[i], owners[i] = j.RoomID, j.SubID, j.Name, j.PresenceID, j.Owner
			times[i] = j.ConnectedAt.UTC().Format(time.RFC3339Nano)
			states[i] = sql.NullString{String: j.State, Valid: j.State != ""}
		}
		_, err := tx.ExecContext(ctx, `
			INSERT INTO presence (room_id, sub_id, instance_id, name, connected_at, state, presence_id, owner)
			SELECT j.room_id, j.sub_id, $1, j.name, j.at, j.state, j.pid, j.owner
			  FROM unnest($2::uuid[], $3::text[], $4::text[], $5::timestamptz[], $6::text[], $7::text[], $8::text[])
			       AS j(room_id, sub_id, name, at, state, pid, owner)
			 WHERE EXISTS (SELECT 1 FROM rooms r WHERE r.id = j.room_id)
			ON CONFLICT (room_id, sub_id) DO UPDATE SET name = EXCLUDED.name, state = EXCLUDED.state`,
			instanceID, pq.Array(rooms), pq.Array(subs), pq.Array(names), pq.Array(times), pq.GenericArray{A: states},
			pq.Array(pids), pq.Array(owners))
		if err != nil {
			return fmt.Errorf("sync presence: insert: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sync presence: commit: %w", err)
	}
	return nil
}

// RoomPresence returns the subscribers of the given rooms through other
// instances than exclude that were seen within aliveWithin, oldest first,
// by room.
func (s *Store) RoomPresence(ctx context.Context, roomIDs []string, exclude string, aliveWithin time.Duration) (map[string][]PresenceRow, error) {
	if s.dialect != dialectPostgres {
		return nil, ErrNotShared
	}
	out := make(map[string][]PresenceRow)
	keys := make([]string, 0, len(roomIDs))
	for _, id := range roomIDs {
		if k, ok := canonicalID(id); ok {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return out, nil
	}
	rows, err := s.db.QueryContext(ctx, `
		SELECT p.room_id, p.sub_id, p.instance_id, p.name, p.connected_at, coalesce(p.state, ''), p.presence_id, p.owner
		  FROM presence p JOIN instances i ON i.id = p.instance_id
		 WHERE p.room_id = ANY($1::uuid[]) AND p.instance_id <> $2
		   AND i.seen_at > now() - $3 * interval '1 microsecond'
		 ORDER BY p.connected_at, p.sub_id`, pq.Array(keys), exclude, aliveWithin.Microseconds())
	if err != nil {
		return nil, fmt.Errorf("read presence: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var p PresenceRow
		if err := rows.Scan(&p.RoomID, &p.SubID, &p.InstanceID, &p.Name, timeDest(&p.ConnectedAt), &p.State, &p.PresenceID, &p.Owner); err != nil {
			return nil, fmt.Errorf("read presence: %w", err)
		}
		out[p.RoomID] = append(out[p.RoomID], p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read presence: %w", err)
	}
	return out, nil
}
