package store

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jmoiron/sqlx"
)

// checkKeys refuses a database that has rows sealed with keys the ring
// lacks, then registers the ring's current key before anything is sealed
// with it. encryption_keys names every key rows may be sealed with, so this
// costs one small read however large the op log is.
func (s *Store) checkKeys(ctx context.Context) error {
	ids, err := s.registeredKeys(ctx, s.db)
	if err != nil {
		return err
	}
	var missing []string
	for _, id := range ids {
		if !s.keys.Has(id) {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		return &MissingKeysError{IDs: missing}
	}
	if s.keys == nil || slices.Contains(ids, s.keys.Current()) {
		return nil
	}
	_, err = s.execWrite(ctx, `INSERT INTO encryption_keys (key_id, added_at) VALUES (?, ?) ON CONFLICT (key_id) DO NOTHING`,
		s.keys.Current(), s.timeArg(s.clock()))
	if err != nil {
		return fmt.Errorf("register encryption key %q: %w", s.keys.Current(), err)
	}
	return nil
}

// registeredKeys returns the key ids rows may be sealed with, sorted.
func (s *Store) registeredKeys(ctx context.Context, q sqlx.QueryerContext) ([]string, error) {
	var ids []string
	if err := sqlx.SelectContext(ctx, q, &ids, `SELECT key_id FROM encryption_keys ORDER BY key_id`); err != nil {
		return nil, fmt.Errorf("read encryption key ids: %w", err)
	}
	return ids, nil
}

// RekeyProgress counts what Rekey did so far.
type RekeyProgress struct {
	Ops       int64 // op rows re-sealed under the current key
	Snapshots int64 // snapshots re-sealed under the current key
	// Unopenable counts the rows that did not open (ErrSealOpen) and were
	// left as they are.
	Unopenable int64
}

// RekeyResult is what Rekey leaves behind.
type RekeyResult struct {
	RekeyProgress
	// Remaining counts the rows still not under the current key: the
	// unopenable ones, snapshots being stored by a running instance, and
	// rows written meanwhile by an instance whose current key is another.
	Remaining int64
	// Retired are the key ids no row uses any more, removed from the
	// database's list of needed keys: they can be dropped from
	// LIVESHARE_ENCRYPTION_KEYS. Empty while Remaining > 0.
	Retired []string
}

// ErrNoKeys: Rekey was called on a store opened without keys.
var ErrNoKeys = errors.New("no encryption keys: set LIVESHARE_ENCRYPTION_KEYS, the new key first")

// rekeyPasses bounds the passes over the tables: a pass re-seals what it
// finds; the next finds only what was written meanwhile under an old key.
const rekeyPasses = 3

// Rekey re-seals every op payload and snapshot that is plain or sealed with
// a key other than the current one, batch rows per transaction (ops) and
// one snapshot per transaction, each committed before the next begins:
// stopped at any point (kill -9 included), it resumes where it was when run
// again, since what is done is under the current key and skipped. progress,
// when not nil, is called after each commit.
//
// It is safe beside running instances on PostgreSQL: an op row is only
// updated while it still holds what was read (a pruned one is skipped), a
// snapshot's row is locked while its bytes and pieces are rewritten
// together, and readers read a snapshot's bytes in one statement. When no
// row is left under another key, those keys are retired.
func (s *Store) Rekey(ctx context.Context, batch int, progress func(RekeyProgress)) (RekeyResult, error) {
	if s.keys == nil {
		return RekeyResult{}, ErrNoKeys
	}
	batch = max(batch, 1)
	var p RekeyProgress
	report := func() {
		if progress != nil {
			progress(p)
		}
	}
	for range rekeyPasses {
		// Each pass meets the rows that do not open again: count them once.
		p.Unopenable = 0
		before := p.Ops + p.Snapshots
		if err := s.rekeyOps(ctx, batch, &p, report); err != nil {
			return RekeyResult{RekeyProgress: p}, err
		}
		if err := s.rekeySnapshots(ctx, &p, report); err != nil {
			return RekeyResult{RekeyProgress: p}, err
		}
		if p.Ops+p.Snapshots == before {
			break
		}
	}
	res := RekeyResult{RekeyProgress: p}
	var err error
	res.Retired, res.Remaining, err = s.retireKeys(ctx)
	if err != nil {
		return res, err
	}
	return res, nil
}

// zeroUUID orders before every room id, on both dialects.
const zeroUUID = "00000000-0000-0000-0000-000000000000"

// rekeyOps re-seals the op rows not under the current key, in (room, seq)
// order, batch rows per transaction.
func (s *Store) rekeyOps(ctx context.Context, batch int, p *RekeyProgress, report func()) error {
	current := s.keys.Current()
	afterRoom, afterSeq := zeroUUID, int64(0)
	for {
		var n, done int
		err := s.transact(ctx, func(tx *sqlx.Tx) error {
			type row struct {
				RoomID string `db:"room_id"`
				Seq    int64  `db:"seq"`
				Op     []byte `db:"op"`
				KeyID  string `db:"key_id"`
				Sealed []byte `db:"sealed"`
			}
			var rows []row
			err := tx.SelectContext(ctx, &rows, tx.Rebind(
				`SELECT room_id, seq, op, key_id, sealed FROM ops
				  WHERE key_id <> ? AND (room_id > ? OR (room_id = ? AND seq > ?))
				  ORDER BY room_id, seq LIMIT ?`), current, afterRoom, afterRoom, afterSeq, batch)
			if err != nil {
				return fmt.Errorf("read ops: %w", err)
			}
			n = len(rows)
			var sl *sealer
			for _, r := range rows {
				afterRoom, afterSeq = r.RoomID, r.Seq
				if sl == nil || sl.roomID != r.RoomID {
					sl = s.keys.forRoom(r.RoomID)
				}
				stored := r.Op
				if r.KeyID != "" {
					stored = r.Sealed
				}
				ad := opAD(r.RoomID, r.Seq)
				plain, err := sl.open(stored, r.KeyID, ad)
				if errors.Is(err, ErrSealOpen) {
					p.Unopenable++
					continue
				}
				if err != nil {
					return fmt.Errorf("op %d of room %s: %w", r.Seq, r.RoomID, err)
				}
				sealed, keyID, err := sl.seal(plain, ad)
				if err != nil {
					return fmt.Errorf("op %d of room %s: %w", r.Seq, r.RoomID, err)
				}
				// Only while the row still holds what was read: a row
				// pruned meanwhile is gone, and stays gone.
				res, err := tx.ExecContext(ctx, tx.Rebind(
					`UPDATE ops SET op = '', key_id = ?, sealed = ? WHERE room_id = ? AND seq = ? AND key_id = ?`),
					keyID, sealed, r.RoomID, r.Seq, r.KeyID)
				if err != nil {
					return fmt.Errorf("op %d of room %s: %w", r.Seq, r.RoomID, err)
				}
				if k, err := res.RowsAffected(); err == nil && k == 1 {
					done++
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("rekey ops: %w", err)
		}
		p.Ops += int64(done)
		if n == 0 {
			return nil
		}
		report()
		if n < batch {
			return nil
		}
	}
}

// rekeySnapshots re-seals the complete snapshots not under the current key,
// one per transaction (a snapshot may be megabytes).
func (s *Store) rekeySnapshots(ctx context.Context, p *RekeyProgress, report func()) error {
	current := s.keys.Current()
	after := zeroUUID
	for {
		var ids []string
		err := sqlx.SelectContext(ctx, s.db, &ids, s.db.Rebind(
			`SELECT id FROM snapshots WHERE key_id <> ? AND complete AND id > ? ORDER BY id LIMIT 100`), current, after)
		if err != nil {
			return fmt.Errorf("rekey snapshots: %w", err)
		}
		if len(ids) == 0 {
			return nil
		}
		for _, id := range ids {
			after = id
			done, err := s.rekeySnapshot(ctx, id)
			switch {
			case errors.Is(err, ErrSealOpen):
				p.Unopenable++
				continue
			case err != nil:
				return fmt.Errorf("rekey snapshot %s: %w", id, err)
			case done:
				p.Snapshots++
				report()
			}
		}
	}
}

// rekeySnapshot re-seals one snapshot under the current key in one
// transaction, its row locked so that no trim deletes it halfway; false
// when it was deleted or re-sealed meanwhile.
func (s *Store) rekeySnapshot(ctx context.Context, id string) (bool, error) {
	done := false
	err := s.transact(ctx, func(tx *sqlx.Tx) error {
		query := `SELECT room_id, version, size_bytes, key_id FROM snapshots WHERE id = ? AND complete`
		if s.dialect == dialectPostgres {
			query += ` FOR UPDATE`
		}
		var (
			roomID, keyID string
			version, size int64
		)
		err := tx.QueryRowxContext(ctx, tx.Rebind(query), id).Scan(&roomID, &version, &size, &keyID)
		if err != nil {
			return ignoreNoRows(err)
		}
		if keyID == s.keys.Current() {
			return nil
		}
		data, keyID, err := s.snapshotData(ctx, tx, roomID, id, size)
		if err != nil {
			return err
		}
		sl := s.keys.forRoom(roomID)
		ad := snapshotAD(roomID, id, version)
		plain, err := sl.open(data, keyID, ad)
		if err != nil {
			return err
		}
		sealed, newKey, err := sl.seal(plain, ad)
		if err != nil {
			return err
		}
		chunks := splitChunks(sealed)
		if _, err := tx.ExecContext(ctx, tx.Rebind(`DELETE FROM snapshot_chunks WHERE snapshot_id = ?`), id); err != nil {
			return fmt.Errorf("delete pieces: %w", err)
		}
		if _, err := tx.ExecContext(ctx, tx.Rebind(`UPDATE snapshots SET data = ?, chunks = ?, key_id = ? WHERE id = ?`),
			chunks[0], len(chunks), newKey, id); err != nil {
			return fmt.Errorf("update: %w", err)
		}
		for i := 1; i < len(chunks); i++ {
			if _, err := tx.ExecContext(ctx, tx.Rebind(`INSERT INTO snapshot_chunks (snapshot_id, idx, data) VALUES (?, ?, ?)`),
				id, i, chunks[i]); err != nil {
				return fmt.Errorf("insert piece %d of %d: %w", i+1, len(chunks), err)
			}
		}
		done = true
		return nil
	})
	return done, err
}

// retireKeys removes from encryption_keys every key id but the current one
// when no row is left under another key (or plain), and returns them; else
// it returns how many rows are left.
func (s *Store) retireKeys(ctx context.Context) (retired []string, remaining int64, err error) {
	current := s.keys.Current()
	err = s.transact(ctx, func(tx *sqlx.Tx) error {
		retired, remaining = nil, 0
		var ops, snaps int64
		if err := tx.QueryRowxContext(ctx, tx.Rebind(`SELECT count(*) FROM ops WHERE key_id <> ?`), current).Scan(&ops); err != nil {
			return fmt.Errorf("count ops left: %w", err)
		}
		if err := tx.QueryRowxContext(ctx, tx.Rebind(`SELECT count(*) FROM snapshots WHERE key_id <> ?`), current).Scan(&snaps); err != nil {
			return fmt.Errorf("count snapshots left: %w", err)
		}
		remaining = ops + snaps
		if remaining > 0 {
			return nil
		}
		ids, err := s.registeredKeys(ctx, tx)
		if err != nil {
			return err
		}
		for _, id := range ids {
			if id != current {
				retired = append(retired, id)
			}
		}
		_, err = tx.ExecContext(ctx, tx.Rebind(`DELETE FROM encryption_keys WHERE key_id <> ?`), current)
		if err != nil {
			return fmt.Errorf("retire keys: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("retire keys: %w", err)
	}
	return retired, remaining, nil
}
