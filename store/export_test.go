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
