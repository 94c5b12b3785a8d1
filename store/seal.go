package store

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// ErrSealOpen: a sealed row did not open. Its key is the right one (the
// store refuses to start without the keys its rows name), so the row was
// altered, or moved to another room, id or version. Readers of snapshots
// treat it as a corrupt snapshot; readers of the op log cannot replay past
// it.
var ErrSealOpen = errors.New("sealed data does not open")

// KeyBytes is the length of every key of a Keyring: AES-256.
const KeyBytes = 32

// keyIDPattern keeps key ids short and free of the ring's separators.
var keyIDPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// Keyring holds the keys of encryption at rest (DESIGN.md 9.6): the first is
// current and seals every new row; all of them open the rows sealed with
// them. A nil *Keyring seals nothing. It is immutable and safe for
// concurrent use.
type Keyring struct {
	current string
	keys    map[string][]byte
	order   []string
}

// ParseKeyring reads LIVESHARE_ENCRYPTION_KEYS: "kid:base64key,kid:base64key",
// 32-byte keys, the first current. An empty value is no keyring (nil, nil).
// Errors say which entry is wrong and never quote a key.
func ParseKeyring(v string) (*Keyring, error) {
	if strings.TrimSpace(v) == "" {
		return nil, nil
	}
	k := &Keyring{keys: map[string][]byte{}}
	for i, entry := range strings.Split(v, ",") {
		entry = strings.TrimSpace(entry)
		id, b64, ok := strings.Cut(entry, ":")
		n := i + 1
		switch {
		case entry == "":
			return nil, fmt.Errorf("entry %d is empty: want kid:base64key, comma-separated", n)
		case !ok:
			return nil, fmt.Errorf("entry %d has no ':': want kid:base64key", n)
		case !keyIDPattern.MatchString(id):
			return nil, fmt.Errorf("entry %d: key id %q is not 1-64 of [A-Za-z0-9_.-]", n, id)
		}
		if _, dup := k.keys[id]; dup {
			return nil, fmt.Errorf("key id %q is listed twice", id)
		}
		key, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			// Keys made with openssl rand -base64 are padded; accept the
			// URL-safe and unpadded forms too, which other tools print.
			key, err = base64.RawStdEncoding.DecodeString(b64)
			if err != nil {
				if key, err = base64.URLEncoding.DecodeString(b64); err != nil {
					key, err = base64.RawURLEncoding.DecodeString(b64)
				}
			}
		}
		if err != nil {
			return nil, fmt.Errorf("key %q is not base64 (make one with: openssl rand -base64 32)", id)
		}
		if len(key) != KeyBytes {
			return nil, fmt.Errorf("key %q is %d bytes, want %d (make one with: openssl rand -base64 32)", id, len(key), KeyBytes)
		}
		k.keys[id] = key
		k.order = append(k.order, id)
	}
	k.current = k.order[0]
	return k, nil
}

// Current is the id of the key new rows are sealed with ("" for a nil ring).
func (k *Keyring) Current() string {
	if k == nil {
		return ""
	}
	return k.current
}

// IDs are the ring's key ids, current first.
func (k *Keyring) IDs() []string {
	if k == nil {
		return nil
	}
	return append([]string(nil), k.order...)
}

// Has reports whether the ring holds key id.
func (k *Keyring) Has(id string) bool {
	if k == nil {
		return false
	}
	_, ok := k.keys[id]
	return ok
}

// roomAEAD is AES-256-GCM under a key derived from key id's key for one
// room. Each room has a key of its own so that the random 96-bit nonces stay
// far from their collision bound (2^32 seals per key) however many rooms a
// database holds; one derivation serves a whole group commit or read.
func (k *Keyring) roomAEAD(id, roomID string) (cipher.AEAD, error) {
	master, ok := k.keys[id]
	if !ok {
		return nil, fmt.Errorf("key %q is not in LIVESHARE_ENCRYPTION_KEYS", id)
	}
	sub, err := hkdf.Key(sha256.New, master, nil, "liveshare v1 room "+roomID, KeyBytes)
	if err != nil {
		return nil, fmt.Errorf("derive the room key: %w", err)
	}
	block, err := aes.NewCipher(sub)
	if err != nil {
		return nil, fmt.Errorf("room key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("room key: %w", err)
	}
	return aead, nil
}

// opAD and snapshotAD are the additional data that binds a sealed payload
// to its place: the kind of row, the room, the row's id and its version. An
// op's id is its seq, which is also its version.
func opAD(roomID string, seq int64) []byte {
	return []byte("liveshare op\x00" + roomID + "\x00" + strconv.FormatInt(seq, 10))
}

func snapshotAD(roomID, snapshotID string, version int64) []byte {
	return []byte("liveshare snapshot\x00" + roomID + "\x00" + snapshotID + "\x00" + strconv.FormatInt(version, 10))
}

// sealer seals and opens the payloads of one room. It is made per call
// (AppendOps, OpsSince, a snapshot read or write) and used by one goroutine.
type sealer struct {
	ring   *Keyring
	roomID string
	aeads  map[string]cipher.AEAD
}

func (k *Keyring) forRoom(roomID string) *sealer {
	return &sealer{ring: k, roomID: roomID}
}

func (s *sealer) aead(id string) (cipher.AEAD, error) {
	if a, ok := s.aeads[id]; ok {
		return a, nil
	}
	a, err := s.ring.roomAEAD(id, s.roomID)
	if err != nil {
		return nil, err
	}
	if s.aeads == nil {
		s.aeads = map[string]cipher.AEAD{}
	}
	s.aeads[id] = a
	return a, nil
}

// seal returns nonce ‖ ciphertext ‖ tag of plain under the current key, and
// that key's id; with no ring it returns plain itself and "".
func (s *sealer) seal(plain, ad []byte) (sealed []byte, keyID string, err error) {
	if s.ring == nil {
		return plain, "", nil
	}
	a, err := s.aead(s.ring.current)
	if err != nil {
		return nil, "", err
	}
	out := make([]byte, a.NonceSize(), a.NonceSize()+len(plain)+a.Overhead())
	if _, err := rand.Read(out); err != nil {
		return nil, "", fmt.Errorf("nonce: %w", err)
	}
	return a.Seal(out, out, plain, ad), s.ring.current, nil
}

// open returns the plain bytes of data sealed with key keyID ("": data is
// plain, stored before encryption was on). Errors wrap ErrSealOpen when the
// data does not open.
func (s *sealer) open(data []byte, keyID string, ad []byte) ([]byte, error) {
	if keyID == "" {
		return data, nil
	}
	if !s.ring.Has(keyID) {
		// Open refuses to start without the keys the database names; a row
		// under an unknown key was written by an instance with another ring.
		return nil, fmt.Errorf("sealed with key %q, which LIVESHARE_ENCRYPTION_KEYS lacks: %w", keyID, ErrSealOpen)
	}
	a, err := s.aead(keyID)
	if err != nil {
		return nil, err
	}
	if len(data) < a.NonceSize()+a.Overhead() {
		return nil, fmt.Errorf("%d bytes, shorter than a sealed empty payload: %w", len(data), ErrSealOpen)
	}
	plain, err := a.Open(nil, data[:a.NonceSize()], data[a.NonceSize():], ad)
	if err != nil {
		return nil, fmt.Errorf("key %q: %w", keyID, ErrSealOpen)
	}
	return plain, nil
}

// MissingKeysError: the database has rows sealed with keys the keyring
// lacks; Open refuses it, since those rows would not open.
type MissingKeysError struct {
	IDs []string // sorted
}

func (e *MissingKeysError) Error() string {
	return fmt.Sprintf("the database has data sealed with key ids %s, missing from LIVESHARE_ENCRYPTION_KEYS: add them (rekey, then drop them, to retire a key)",
		strings.Join(e.IDs, ", "))
}
