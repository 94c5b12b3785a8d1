package store

import "time"

// SetClock replaces the store's clock, for tests of expiry.
func SetClock(s *Store, now func() time.Time) { s.now = now }

// SealSnapshot seals a snapshot's bytes as InsertSnapshot does, for the
// benchmark of encode + seal.
func SealSnapshot(k *Keyring, roomID, id string, version int64, data []byte) ([]byte, error) {
	sealed, _, err := k.forRoom(roomID).seal(data, snapshotAD(roomID, id, version))
	return sealed, err
}

// HoldWriteTurn takes the SQLite store's turn to write until release is
// called, so that commits queue behind it (tests of shared commits).
func HoldWriteTurn(s *Store) (release func()) {
	s.writeGate <- struct{}{}
	return func() { <-s.writeGate }
}

// QueuedCommits is how many group commits wait for the next batch.
func QueuedCommits(s *Store) int {
	s.batch.mu.Lock()
	defer s.batch.mu.Unlock()
	return len(s.batch.queue)
}

// BatchesInFlight is how many shared commits the store runs at once.
func BatchesInFlight(s *Store) int { return s.sharedBatchesInFlight() }

// SharedBatches is how many batches of several groups the store committed,
// and how many of them PostgreSQL refused as a whole.
func SharedBatches(s *Store) (shared, aborted int64) {
	return s.batch.shared.Load(), s.batch.aborted.Load()
}
