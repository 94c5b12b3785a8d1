package snapshot_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/liveshare/liveshare/graph"
	"github.com/liveshare/liveshare/metrics"
	"github.com/liveshare/liveshare/room"
	"github.com/liveshare/liveshare/snapshot"
	"github.com/liveshare/liveshare/store"
	"github.com/liveshare/liveshare/store/storetest"
)

// sealedDB is a store with keys and a raw handle on its database, to
// tamper with the sealed rows.
type sealedDB struct {
	st  *store.Store
	raw *sql.DB
	pg  bool
}

func openSealed(t *testing.T, cfg store.Config) sealedDB {
	t.Helper()
	key := make([]byte, store.KeyBytes)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	ring, err := store.ParseKeyring("k1:" + base64.StdEncoding.EncodeToString(key))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Keys = ring
	st, err := store.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	driver, dsn := "postgres", cfg.DatabaseURL
	if dsn == "" {
		driver, dsn = "sqlite", filepath.Join(cfg.DataDir, "liveshare.db")
	}
	raw, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	return sealedDB{st: st, raw: raw, pg: cfg.DatabaseURL != ""}
}

// exec runs q with ? placeholders on the raw database.
func (d sealedDB) exec(t *testing.T, q string, args ...any) {
	t.Helper()
	if d.pg {
		for i := 1; strings.Contains(q, "?"); i++ {
			q = strings.Replace(q, "?", fmt.Sprintf("$%d", i), 1)
		}
	}
	if _, err := d.raw.ExecContext(context.Background(), q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func (d sealedDB) flip(t *testing.T, table, column, where string, args ...any) {
	t.Helper()
	q := fmt.Sprintf(`SELECT %s FROM %s WHERE %s`, column, table, where)
	if d.pg {
		for i := 1; strings.Contains(q, "?"); i++ {
			q = strings.Replace(q, "?", fmt.Sprintf("$%d", i), 1)
		}
	}
	var blob []byte
	if err := d.raw.QueryRowContext(context.Background(), q, args...).Scan(&blob); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	blob[len(blob)/2] ^= 0x80
	d.exec(t, fmt.Sprintf(`UPDATE %s SET %s = ? WHERE %s`, table, column, where), append([]any{blob}, args...)...)
}

func addNote(id string) room.Write {
	return room.Write{Ops: []graph.Op{{Kind: graph.OpAddNode, Node: &graph.Node{ID: id, Kind: "note", Label: "label " + id, Data: []byte(`{"secret":true}`)}}}}
}

// rejectedCount reads liveshare_snapshot_rejected_total{reason}.
func rejectedCount(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "liveshare_snapshot_rejected_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestSealedSnapshotThatDoesNotOpenIsCorrupt: the newest snapshot, altered
// or moved from another room or version, does not open; the room loads
// from the one before it, and the rejection is logged and counted.
func TestSealedSnapshotThatDoesNotOpenIsCorrupt(t *testing.T) {
	t.Parallel()
	for _, tamper := range []string{"flipped byte", "moved to another version", "moved from another room"} {
		t.Run(tamper, func(t *testing.T) {
			storetest.Dialects(t, func(t *testing.T, cfg store.Config) {
				ctx := context.Background()
				d := openSealed(t, cfg)
				info, err := d.st.CreateRoom(ctx, "r")
				if err != nil {
					t.Fatal(err)
				}
				promReg := prometheus.NewRegistry()
				snapCfg := snapshot.Config{Interval: time.Hour, Keep: 10, MaxBytes: 10 << 20, Metrics: metrics.New(promReg)}
				reg := snapshot.NewRegistry(d.st, snapCfg)
				live := room.NewManager(d.st, room.Options{Snapshots: reg})
				take := func(id string) store.SnapshotMeta {
					t.Helper()
					if _, err := live.Apply(ctx, info.ID, addNote(id)); err != nil {
						t.Fatal(err)
					}
					r, err := live.Get(ctx, info.ID)
					if err != nil {
						t.Fatal(err)
					}
					m, err := reg.Take(ctx, r, snapshot.TriggerManual)
					if err != nil {
						t.Fatal(err)
					}
					return m
				}
				older := take("a")
				newest := take("b")
				if _, err := live.Apply(ctx, info.ID, addNote("c")); err != nil {
					t.Fatal(err)
				}
				r, _ := live.Get(ctx, info.ID)
				want, wantVersion := r.State()

				switch tamper {
				case "flipped byte":
					d.flip(t, "snapshots", "data", "id = ?", newest.ID)
				case "moved to another version":
					// Still the newest, at a version its seal does not name.
					d.exec(t, `UPDATE snapshots SET version = version + 5 WHERE id = ?`, newest.ID)
				case "moved from another room":
					// Another room's snapshot, put in as this room's newest:
					// same version, its own id, bytes of the other room.
					other, err := d.st.CreateRoom(ctx, "other")
					if err != nil {
						t.Fatal(err)
					}
					for _, id := range []string{"x", "y"} {
						if _, err := live.Apply(ctx, other.ID, addNote(id)); err != nil {
							t.Fatal(err)
						}
					}
					ro, _ := live.Get(ctx, other.ID)
					foreign, err := reg.Take(ctx, ro, snapshot.TriggerManual)
					if err != nil {
						t.Fatal(err)
					}
					d.exec(t, `DELETE FROM snapshots WHERE id = ?`, newest.ID)
					d.exec(t, `UPDATE snapshots SET room_id = ? WHERE id = ?`, info.ID, foreign.ID)
					newest = foreign
				}

				// The registry of a fresh process: nothing cached.
				fresh := snapshot.NewRegistry(d.st, snapCfg)
				if _, err := fresh.Get(ctx, info.ID, newest.ID); !errors.Is(err, snapshot.ErrMalformed) || !errors.Is(err, store.ErrSealOpen) {
					t.Errorf("Get of the tampered snapshot: %v, want ErrMalformed wrapping ErrSealOpen", err)
				}
				latest, err := fresh.Latest(ctx, info.ID)
				if err != nil || latest.ID != older.ID {
					t.Errorf("Latest = %s, %v; want the previous snapshot %s", latest.ID, err, older.ID)
				}
				restored, ok, err := fresh.Restore(ctx, info.ID)
				if err != nil || !ok || restored.SnapshotID != older.ID {
					t.Errorf("Restore = %s, %v, %v; want the previous snapshot %s", restored.SnapshotID, ok, err, older.ID)
				}
				loaded, err := room.NewManager(d.st, room.Options{Snapshots: fresh}).Get(ctx, info.ID)
				if err != nil {
					t.Fatalf("load: %v", err)
				}
				if got, gotVersion := loaded.State(); gotVersion != wantVersion || !got.Equal(want) {
					t.Errorf("loaded version %d %+v, want %d %+v", gotVersion, got, wantVersion, want)
				}
				if got := rejectedCount(t, promReg, metrics.SnapshotUnsealable); got < 1 {
					t.Errorf("rejected{reason=unsealable} = %v, want it counted", got)
				}
			})
		})
	}
}

// TestSealedOpThatDoesNotOpenStopsTheLoad: no snapshot can stand in for an
// op, so the load fails as unrecoverable.
func TestSealedOpThatDoesNotOpenStopsTheLoad(t *testing.T) {
	t.Parallel()
	storetest.Dialects(t, func(t *testing.T, cfg store.Config) {
		ctx := context.Background()
		d := openSealed(t, cfg)
		info, err := d.st.CreateRoom(ctx, "r")
		if err != nil {
			t.Fatal(err)
		}
		live := room.NewManager(d.st, room.Options{})
		for _, id := range []string{"a", "b", "c"} {
			if _, err := live.Apply(ctx, info.ID, addNote(id)); err != nil {
				t.Fatal(err)
			}
		}
		d.flip(t, "ops", "sealed", "room_id = ? AND seq = 2", info.ID)
		_, err = room.NewManager(d.st, room.Options{}).Get(ctx, info.ID)
		if !errors.Is(err, room.ErrUnrecoverable) || !errors.Is(err, store.ErrSealOpen) {
			t.Errorf("load with an op that does not open: %v, want ErrUnrecoverable wrapping ErrSealOpen", err)
		}
	})
}
