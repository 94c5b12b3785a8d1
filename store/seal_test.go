package store_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/liveshare/liveshare/store"
	"github.com/liveshare/liveshare/store/storetest"
)

// newKey returns "id:base64key" with a fresh random key.
func newKey(t testing.TB, id string) string {
	t.Helper()
	k := make([]byte, store.KeyBytes)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return id + ":" + base64.StdEncoding.EncodeToString(k)
}

func mustKeyring(t testing.TB, v string) *store.Keyring {
	t.Helper()
	k, err := store.ParseKeyring(v)
	if err != nil {
		t.Fatalf("ParseKeyring: %v", err)
	}
	return k
}

func withKeys(cfg store.Config, k *store.Keyring) store.Config {
	cfg.Keys = k
	return cfg
}

func TestParseKeyring(t *testing.T) {
	t.Parallel()
	good := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	short := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 16))
	for _, tc := range []struct {
		in, wantErr string
	}{
		{"k1", "entry 1 has no ':'"},
		{"k1:" + good + ",", "entry 2 is empty"},
		{":" + good, "key id \"\" is not"},
		{"a b:" + good, "key id \"a b\" is not"},
		{"k1:" + good + ",k1:" + good, "key id \"k1\" is listed twice"},
		{"k1:not base64!", "key \"k1\" is not base64"},
		{"k1:" + short, "key \"k1\" is 16 bytes, want 32"},
		{"k1:" + good + ",k2:" + short, "key \"k2\" is 16 bytes"},
	} {
		k, err := store.ParseKeyring(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("ParseKeyring(%q) = %v, %v; want an error saying %q", tc.in, k, err, tc.wantErr)
			continue
		}
		if strings.Contains(err.Error(), good) || strings.Contains(err.Error(), short) {
			t.Errorf("ParseKeyring(%q) error quotes a key: %v", tc.in, err)
		}
	}
	if k, err := store.ParseKeyring(" "); k != nil || err != nil {
		t.Errorf("ParseKeyring(blank) = %v, %v; want no keyring", k, err)
	}
	k := mustKeyring(t, "new:"+good+", old:"+strings.TrimRight(good, "="))
	if got, want := k.Current(), "new"; got != want {
		t.Errorf("Current = %q, want %q", got, want)
	}
	if got, want := strings.Join(k.IDs(), ","), "new,old"; got != want {
		t.Errorf("IDs = %q, want %q", got, want)
	}
}

// secret is what a room's labels and data hold in these tests: found in the
// stored bytes, it would be plaintext at rest.
const secret = "TOPSECRET-invoices-ledger"

func secretOps(n int) []json.RawMessage {
	ops := make([]json.RawMessage, n)
	for i := range ops {
		ops[i] = json.RawMessage(fmt.Sprintf(`{"op":"add_node","node":{"id":"n%d","kind":"table","label":"%s-%d","x":0,"y":0,"data":{"note":"%s"}}}`,
			i, secret, i, secret))
	}
	return ops
}

// secretSnapshot is snapshot bytes that hold the secret in clear, larger than
// one stored piece.
func secretSnapshot() []byte {
	return bytes.Repeat([]byte(secret+" "), 2*store.SnapshotChunkBytes/len(secret)+1)
}

// storedBytes returns everything the database keeps on disk of cfg's data:
// the SQLite files (database, WAL), or a pg_dump of the test's schema.
func storedBytes(t *testing.T, cfg store.Config) []byte {
	t.Helper()
	if cfg.DatabaseURL == "" {
		var all []byte
		files, _ := filepath.Glob(filepath.Join(cfg.DataDir, "liveshare.db*"))
		if len(files) == 0 {
			t.Fatal("no database files")
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, b...)
		}
		return all
	}
	u, err := url.Parse(cfg.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	schema := u.Query().Get("search_path")
	base, _ := url.Parse(os.Getenv(storetest.EnvDatabaseURL))
	out, err := exec.Command("pg_dump", "--data-only", "-n", schema, base.String()).Output()
	if err != nil {
		t.Fatalf("pg_dump: %v", err)
	}
	if !bytes.Contains(out, []byte("COPY "+schema+".ops")) {
		t.Fatalf("pg_dump has no ops table: %.300s", out)
	}
	return out
}

// TestNothingPlainAtRest stores a room's ops and snapshots once without
// keys, to see the secret in the stored bytes (the check can fail), and
// once with keys, where it must not appear in them.
func TestNothingPlainAtRest(t *testing.T) {
	t.Parallel()
	for _, sealed := range []bool{false, true} {
		t.Run(fmt.Sprintf("sealed=%v", sealed), func(t *testing.T) {
			storetest.Dialects(t, func(t *testing.T, cfg store.Config) {
				ctx := context.Background()
				if sealed {
					cfg.Keys = mustKeyring(t, newKey(t, "k1"))
				}
				s, err := store.Open(ctx, cfg)
				if err != nil {
					t.Fatal(err)
				}
				room := mustCreateRoom(t, s, "room name stays in clear")
				ops := secretOps(20)
				mustAppend(t, s, store.Append{RoomID: room.ID, ElementCount: 10, Writes: []store.AppendWrite{{Ops: ops[:10]}}})
				mustAppend(t, s, store.Append{RoomID: room.ID, ExpectedVersion: 10, ElementCount: 20, Writes: []store.AppendWrite{{Ops: ops[10:]}}})
				small := []byte("small " + secret)
				mustInsertSnapshot(t, s, store.NewSnapshot{RoomID: room.ID, Version: 10, Trigger: "manual", Format: 1, Data: small}, 10)
				big := secretSnapshot()
				meta, _ := mustInsertSnapshot(t, s, store.NewSnapshot{RoomID: room.ID, Version: 20, Trigger: "manual", Format: 1, Data: big}, 10)

				// Callers above the store see plain bytes.
				got := mustOpsSince(t, s, room.ID, 0, 0)
				if len(got) != 10 { // the snapshot at 20 pruned the first 10
					t.Fatalf("OpsSince = %d ops, want 10", len(got))
				}
				for _, r := range got {
					if !bytes.Equal(r.Op, ops[r.Seq-1]) {
						t.Fatalf("op %d read back as %s, want %s", r.Seq, r.Op, ops[r.Seq-1])
					}
				}
				snap, err := s.GetSnapshot(ctx, room.ID, meta.ID)
				if err != nil || !bytes.Equal(snap.Data, big) || snap.SizeBytes != int64(len(big)) {
					t.Fatalf("GetSnapshot = %d bytes (size %d), %v; want the %d plain bytes", len(snap.Data), snap.SizeBytes, err, len(big))
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}

				disk := storedBytes(t, cfg)
				if !bytes.Contains(disk, []byte("room name stays in clear")) {
					t.Fatal("the room's name is not in the stored bytes: the dump missed the data")
				}
				if got := bytes.Contains(disk, []byte(secret)); got == sealed {
					t.Errorf("secret in the stored bytes: %v, want %v", got, !sealed)
				}
			})
		})
	}
}

// mustSealedRoom stores a room of 3 ops and snapshots at versions 0 and 1
// (which prune no op), and returns it with the snapshots' metas, oldest
// first.
func mustSealedRoom(t *testing.T, s *store.Store) (store.Room, []store.SnapshotMeta) {
	t.Helper()
	room := mustCreateRoom(t, s, "r")
	mustAppend(t, s, store.Append{RoomID: room.ID, ElementCount: 3, Writes: []store.AppendWrite{{Ops: secretOps(3)}}})
	var metas []store.SnapshotMeta
	for v := int64(0); v <= 1; v++ {
		m, _ := mustInsertSnapshot(t, s, store.NewSnapshot{RoomID: room.ID, Version: v, Trigger: "manual", Format: 1,
			Data: []byte(fmt.Sprintf("state at %d", v))}, 10)
		metas = append(metas, m)
	}
	return room, metas
}

// TestSealedRowsBoundToTheirPlace moves sealed rows to another room or
// version, and flips a byte: none of them opens.
func TestSealedRowsBoundToTheirPlace(t *testing.T) {
	t.Parallel()
	storetest.Dialects(t, func(t *testing.T, cfg store.Config) {
		ctx := context.Background()
		s := mustOpen(t, withKeys(cfg, mustKeyring(t, newKey(t, "k1"))))
		db := rawDB(t, cfg)
		exec := func(q string, args ...any) {
			t.Helper()
			if cfg.DatabaseURL != "" {
				q = rebindDollar(q)
			}
			if _, err := db.ExecContext(ctx, q, args...); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}

		t.Run("snapshot moved to another room", func(t *testing.T) {
			room, metas := mustSealedRoom(t, s)
			other := mustCreateRoom(t, s, "other")
			exec(`UPDATE snapshots SET room_id = ? WHERE id = ?`, other.ID, metas[1].ID)
			if _, err := s.GetSnapshot(ctx, other.ID, metas[1].ID); !errors.Is(err, store.ErrSealOpen) {
				t.Errorf("GetSnapshot of the moved snapshot: %v, want ErrSealOpen", err)
			}
			if _, err := s.GetSnapshot(ctx, room.ID, metas[0].ID); err != nil {
				t.Errorf("GetSnapshot of the one left: %v", err)
			}
		})
		t.Run("snapshot moved to another version", func(t *testing.T) {
			room, metas := mustSealedRoom(t, s)
			exec(`UPDATE snapshots SET version = 3 WHERE id = ?`, metas[1].ID)
			if _, err := s.GetSnapshot(ctx, room.ID, metas[1].ID); !errors.Is(err, store.ErrSealOpen) {
				t.Errorf("GetSnapshot: %v, want ErrSealOpen", err)
			}
		})
		t.Run("snapshot data swapped with another snapshot's", func(t *testing.T) {
			room, metas := mustSealedRoom(t, s)
			exec(`UPDATE snapshots SET data = (SELECT data FROM snapshots WHERE id = ?) WHERE id = ?`, metas[0].ID, metas[1].ID)
			if _, err := s.GetSnapshot(ctx, room.ID, metas[1].ID); !errors.Is(err, store.ErrSealOpen) {
				t.Errorf("GetSnapshot: %v, want ErrSealOpen", err)
			}
		})
		t.Run("snapshot with a flipped byte", func(t *testing.T) {
			room, metas := mustSealedRoom(t, s)
			flipByte(t, db, cfg, `SELECT data FROM snapshots WHERE id = ?`, `UPDATE snapshots SET data = ? WHERE id = ?`, metas[1].ID)
			if _, err := s.GetSnapshot(ctx, room.ID, metas[1].ID); !errors.Is(err, store.ErrSealOpen) {
				t.Errorf("GetSnapshot: %v, want ErrSealOpen", err)
			}
		})
		t.Run("op moved to another seq", func(t *testing.T) {
			room, _ := mustSealedRoom(t, s)
			exec(`UPDATE ops SET sealed = (SELECT sealed FROM ops WHERE room_id = ? AND seq = 1) WHERE room_id = ? AND seq = 2`, room.ID, room.ID)
			if _, err := s.OpsSince(ctx, room.ID, 0, 0); !errors.Is(err, store.ErrSealOpen) {
				t.Errorf("OpsSince: %v, want ErrSealOpen", err)
			}
			if got := mustOpsSince(t, s, room.ID, 2, 0); len(got) != 1 {
				t.Errorf("OpsSince after the bad op = %d ops, want 1", len(got))
			}
		})
		t.Run("op moved to another room", func(t *testing.T) {
			room, _ := mustSealedRoom(t, s)
			other := mustCreateRoom(t, s, "other")
			exec(`UPDATE ops SET room_id = ? WHERE room_id = ? AND seq = 1`, other.ID, room.ID)
			if _, err := s.OpsSince(ctx, other.ID, 0, 0); !errors.Is(err, store.ErrSealOpen) {
				t.Errorf("OpsSince: %v, want ErrSealOpen", err)
			}
		})
		t.Run("op with a flipped byte", func(t *testing.T) {
			room, _ := mustSealedRoom(t, s)
			flipByte(t, db, cfg, `SELECT sealed FROM ops WHERE room_id = ? AND seq = 3`, `UPDATE ops SET sealed = ? WHERE room_id = ? AND seq = 3`, room.ID)
			if _, err := s.OpsSince(ctx, room.ID, 0, 0); !errors.Is(err, store.ErrSealOpen) {
				t.Errorf("OpsSince: %v, want ErrSealOpen", err)
			}
		})
	})
}

func rebindDollar(q string) string {
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// flipByte reads one blob with read (args as where-arguments), flips a bit
// in its middle, and writes it back with write (blob first).
func flipByte(t *testing.T, db *sql.DB, cfg store.Config, read, write string, args ...any) {
	t.Helper()
	ctx := context.Background()
	if cfg.DatabaseURL != "" {
		read, write = rebindDollar(read), rebindDollar(write)
	}
	var blob []byte
	if err := db.QueryRowContext(ctx, read, args...).Scan(&blob); err != nil {
		t.Fatalf("%s: %v", read, err)
	}
	if len(blob) == 0 {
		t.Fatal("empty blob")
	}
	blob[len(blob)/2] ^= 0x01
	if _, err := db.ExecContext(ctx, write, append([]any{blob}, args...)...); err != nil {
		t.Fatalf("%s: %v", write, err)
	}
}
