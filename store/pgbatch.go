package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/lib/pq"
)

// pgGroup is one room's group commit as PostgreSQL's statements take it.
type pgGroup struct {
	id   string
	a    Append // ExpectedVersion and ElementCount; the writes are in rows
	rows groupRows
	res  AppendResult
}

// appendBatchQuery commits the groups of several rooms in one statement,
// and so in one transaction, one round trip and one flush of the WAL: a
// batch of sharedCommits. It does for each room what appendPostgresQuery
// does for one:
//   - l locks the rooms that are at their group's expected version, in the
//     order of their ids (LockRows sits above the Sort), so that instances
//     sharing the database never wait for each other in a cycle; a room
//     that moved or is missing is not locked, and nothing of its group is
//     written;
//   - r moves the locked rooms on, and o and k insert the ops and keys of
//     those rooms only;
//   - the last select tells, room by room, whether its group was applied
//     and, when not, the version as of the statement's start (NULL: the
//     room is missing).
//
// An op's sealed payload is NULL when its key_id is "": the bytea array
// cannot hold a NULL, so plain ops pass an empty one.
const appendBatchQuery = `
WITH g AS MATERIALIZED (
  SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[], $5::timestamptz[])
    AS g(id, expected, version, element_count, created_at)
), l AS MATERIALIZED (
  SELECT rooms.id FROM rooms JOIN g ON rooms.id = g.id AND rooms.version = g.expected
   ORDER BY rooms.id FOR NO KEY UPDATE OF rooms
), r AS (
  UPDATE rooms SET version = g.version, element_count = g.element_count, updated_at = g.created_at
    FROM l JOIN g ON g.id = l.id
   WHERE rooms.id = l.id AND rooms.version = g.expected
  RETURNING rooms.id, g.expected, g.created_at
), o AS (
  INSERT INTO ops (room_id, seq, op, client_id, created_at, key_id, sealed)
  SELECT r.id, r.expected + t.n, t.op, t.client_id, r.created_at, t.key_id,
         CASE WHEN t.key_id = '' THEN NULL ELSE t.sealed END
    FROM unnest($6::uuid[], $7::bigint[], $8::text[], $9::text[], $10::text[], $11::bytea[])
      AS t(room_id, n, op, client_id, key_id, sealed)
    JOIN r ON r.id = t.room_id
), k AS (
  INSERT INTO idempotency_keys (room_id, key, version, applied, created_at)
  SELECT r.id, t.key, t.version, t.applied, r.created_at
    FROM unnest($12::uuid[], $13::text[], $14::bigint[], $15::integer[]) AS t(room_id, key, version, applied)
    JOIN r ON r.id = t.room_id
)
SELECT g.id, EXISTS (SELECT 1 FROM r WHERE r.id = g.id), (SELECT version FROM rooms WHERE rooms.id = g.id)
  FROM g`

// batchColumns are the statement's arrays, filled group by group.
type batchColumns struct {
	ids, createdAt                  []string
	expected, versions, elements    []int64
	opRooms, ops, clientIDs, keyIDs []string
	opN                             []int64
	sealed                          [][]byte
	keyRooms, keys                  []string
	keyVersions, keyApplied         []int64
}

func (c *batchColumns) add(g *pgGroup) {
	c.ids = append(c.ids, g.id)
	c.expected = append(c.expected, g.a.ExpectedVersion)
	c.versions = append(c.versions, g.res.Version)
	c.elements = append(c.elements, g.a.ElementCount)
	c.createdAt = append(c.createdAt, string(pq.FormatTimestamp(g.res.CreatedAt)))
	for i := range g.rows.ops {
		c.opRooms = append(c.opRooms, g.id)
		c.opN = append(c.opN, int64(i+1))
		c.ops = append(c.ops, g.rows.ops[i])
		c.clientIDs = append(c.clientIDs, g.rows.clientIDs[i])
		c.keyIDs = append(c.keyIDs, g.rows.keyID)
		var sealed []byte
		if g.rows.sealed != nil {
			sealed = g.rows.sealed[i]
		}
		c.sealed = append(c.sealed, sealed)
	}
	for i, key := range g.rows.keys {
		c.keyRooms = append(c.keyRooms, g.id)
		c.keys = append(c.keys, key)
		c.keyVersions = append(c.keyVersions, g.rows.keyVersions[i])
		c.keyApplied = append(c.keyApplied, g.rows.keyApplied[i])
	}
}

// commitPostgresBatch commits jobs in one statement and sets each job's
// outcome: nil (committed), *VersionMismatchError or ErrNotFound. It
// returns errSharedAborted when two jobs are of one room (nothing is sent)
// or when PostgreSQL refused the statement as a whole, which then changed
// nothing (a used key, say). Any other error means the statement's outcome
// is unknown, and every job gets that error.
func (s *Store) commitPostgresBatch(ctx context.Context, jobs []*sharedJob) error {
	var c batchColumns
	live := make(map[string]*sharedJob, len(jobs))
	for _, j := range jobs {
		if err := j.ctx.Err(); err != nil {
			j.err = fmt.Errorf("wait for the write lock: %w", err)
			continue
		}
		if live[j.roomID] != nil {
			// A room's sequencer has one group in flight at a time, but
			// callers of AppendOps need not be sequencers: two groups of
			// one room commit alone, one after the other.
			return errSharedAborted
		}
		live[j.roomID] = j
		c.add(j.group)
	}
	if len(live) == 0 {
		return nil
	}
	rows, err := s.appendBatchStmt.QueryContext(ctx,
		pq.Array(c.ids), pq.Array(c.expected), pq.Array(c.versions), pq.Array(c.elements), pq.Array(c.createdAt),
		pq.Array(c.opRooms), pq.Array(c.opN), pq.Array(c.ops), pq.Array(c.clientIDs), pq.Array(c.keyIDs), pq.ByteaArray(c.sealed),
		pq.Array(c.keyRooms), pq.Array(c.keys), pq.Array(c.keyVersions), pq.Array(c.keyApplied))
	if err != nil {
		return batchFailure(err)
	}
	defer rows.Close()
	outcomes := make(map[string]error, len(live))
	for rows.Next() {
		var (
			id      string
			applied bool
			current sql.NullInt64
		)
		if err := rows.Scan(&id, &applied, &current); err != nil {
			return fmt.Errorf("read the batch's outcome: %w", err)
		}
		switch {
		case applied:
			outcomes[id] = nil
		case !current.Valid:
			outcomes[id] = ErrNotFound
		default:
			outcomes[id] = &VersionMismatchError{Current: current.Int64}
		}
	}
	if err := rows.Err(); err != nil {
		return batchFailure(err)
	}
	for id := range live {
		if _, ok := outcomes[id]; !ok {
			return fmt.Errorf("room %s: no outcome in the batch's answer", id)
		}
	}
	for id, j := range live {
		j.err = outcomes[id]
	}
	return nil
}

// batchFailure tells a statement that PostgreSQL refused, which in
// autocommit rolled back everything it did (an integrity constraint such
// as a used key, or a transaction rollback such as a deadlock), from one
// whose outcome is unknown (the connection broke, or the statement was
// cancelled, possibly after its commit).
func batchFailure(err error) error {
	var pqErr *pq.Error
	if errors.As(err, &pqErr) {
		switch pqErr.Code.Class() {
		case "23", "40":
			return fmt.Errorf("%w: %w", errSharedAborted, err)
		}
	}
	return fmt.Errorf("commit a batch of rooms: %w", err)
}
