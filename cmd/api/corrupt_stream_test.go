package main_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/liveshare/liveshare/store"
)

// bigNodes adds n nodes whose data is random text of about size bytes each,
// which compresses hardly at all: a snapshot holding them is about n*size
// bytes.
func bigNodes(prefix string, n, size int) []map[string]any {
	ops := make([]map[string]any, 0, n)
	for i := range n {
		raw := make([]byte, size*3/4)
		_, _ = rand.Read(raw)
		ops = append(ops, map[string]any{"op": "add_node", "node": map[string]any{
			"id": fmt.Sprintf("%s-%d", prefix, i), "kind": "blob", "x": 0, "y": 0,
			"data": map[string]any{"blob": base64.StdEncoding.EncodeToString(raw)},
		}})
	}
	return ops
}

// corruptLastPiece flips bytes in the last stored piece of the snapshot id
// (a piece in snapshot_chunks: the snapshot must be larger than one piece),
// with the server stopped.
func corruptLastPiece(t *testing.T, cfg store.Config, id string) {
	t.Helper()
	driver, dsn, ph := "sqlite", filepath.Join(cfg.DataDir, "liveshare.db"), func(n int) string { return "?" }
	if cfg.DatabaseURL != "" {
		driver, dsn, ph = "postgres", cfg.DatabaseURL, func(n int) string { return "$" + strconv.Itoa(n) }
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var idx int
	var data []byte
	err = db.QueryRowContext(ctx, `SELECT idx, data FROM snapshot_chunks WHERE snapshot_id = `+ph(1)+` ORDER BY idx DESC LIMIT 1`, id).Scan(&idx, &data)
	if err != nil {
		t.Fatalf("read the last piece of snapshot %s: %v", id, err)
	}
	if len(data) < 8 {
		t.Fatalf("piece %d of snapshot %s has %d bytes", idx, id, len(data))
	}
	for i := len(data) / 2; i < len(data)/2+4; i++ {
		data[i] ^= 0xff
	}
	res, err := db.ExecContext(ctx, `UPDATE snapshot_chunks SET data = `+ph(1)+` WHERE snapshot_id = `+ph(2)+` AND idx = `+ph(3), data, id, idx)
	if err != nil {
		t.Fatalf("corrupt piece %d of snapshot %s: %v", idx, id, err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("corrupt piece %d of snapshot %s: %d rows updated", idx, id, n)
	}
}

// TestCorruptNewestSnapshotAfterRestart: the newest snapshot's bytes are
// flipped in the database (its first piece, or a later piece of a large
// one) while the server is down. After the restart a fresh subscriber
// starts from the snapshot before it, exactly as stored, and receives
// every op after it up to the room's version, in order; the room's graph
// is exactly what was acknowledged.
func TestCorruptNewestSnapshotAfterRestart(t *testing.T) {
	t.Parallel()
	for _, where := range []string{"first piece", "later piece"} {
		t.Run(where, func(t *testing.T) {
			databases(t, func(t *testing.T, cfg store.Config) {
				testCorruptNewestSnapshot(t, cfg, where == "later piece")
			})
		})
	}
}

func testCorruptNewestSnapshot(t *testing.T, cfg store.Config, large bool) {
	// No interval snapshot may replace the corrupt one as the newest.
	srv := startServer(t, cfg, "LIVESHARE_SNAPSHOT_INTERVAL=1h")
	rm := srv.createRoom("corrupt-stream")
	for k := range 2 {
		srv.snapPost(rm.ID, snapStep("s", k))
	}
	good := srv.snapTake(rm.ID)
	for k := 2; k < 4; k++ {
		srv.snapPost(rm.ID, snapStep("s", k))
	}
	if large {
		// Past store.SnapshotChunkBytes: stored in several pieces.
		srv.snapPost(rm.ID, bigNodes("big", 6, 40<<10))
	}
	bad := srv.snapTake(rm.ID)
	if large && bad.SizeBytes <= store.SnapshotChunkBytes {
		t.Fatalf("the large snapshot has %d bytes, one piece", bad.SizeBytes)
	}
	var version int64
	for k := 4; k < 7; k++ {
		version = srv.snapPost(rm.ID, snapStep("s", k))
	}
	goodState := srv.snapGet(rm.ID, good.ID)
	before := srv.snapGraph(rm.ID)
	if before.Version != version {
		t.Fatalf("graph at version %d, acknowledged %d", before.Version, version)
	}

	srv.kill()
	if large {
		corruptLastPiece(t, cfg, bad.ID)
	} else if id := snapCorrupt(t, cfg, rm.ID); id != bad.ID {
		t.Fatalf("corrupted snapshot %s, the newest is %s", id, bad.ID)
	}
	srv = startWithEnv(t, srv.env)

	// The subscriber comes first: its Subscribe loads the room.
	sub := snapSubscribe(t, srv.URL, rm.ID, "")
	first := sub.nextNamed(t, "snapshot", 30*time.Second)
	var snap struct {
		SnapshotID *string `json:"snapshot_id"`
		Version    int64   `json:"version"`
		State      struct {
			Nodes []any `json:"nodes"`
			Edges []any `json:"edges"`
		} `json:"state"`
	}
	if err := json.Unmarshal([]byte(first.Data), &snap); err != nil {
		t.Fatalf("snapshot event %q: %v", first.Data, err)
	}
	if snap.SnapshotID == nil || *snap.SnapshotID != good.ID || snap.Version != good.Version || first.ID != strconv.FormatInt(good.Version, 10) {
		t.Fatalf("the stream starts from snapshot %v at version %d (id %s), want %s at %d (the one before the corrupt %s)",
			snap.SnapshotID, snap.Version, first.ID, good.ID, good.Version, bad.ID)
	}
	if !reflect.DeepEqual(snap.State.Nodes, goodState.State.Nodes) || !reflect.DeepEqual(snap.State.Edges, goodState.State.Edges) {
		t.Errorf("the snapshot event's state differs from snapshot %s as stored", good.ID)
	}
	// Then every op after it, in order, up to the room's version.
	next := good.Version + 1
	deadline := time.After(30 * time.Second)
	for next <= version {
		var ev snapEvent
		select {
		case e, ok := <-sub.events:
			if !ok {
				t.Fatalf("stream ended at version %d of %d", next-1, version)
			}
			ev = e
		case <-deadline:
			t.Fatalf("stream reached only version %d of %d", next-1, version)
		}
		switch ev.Name {
		case "presence":
			continue
		case "ops":
		default:
			t.Fatalf("event %q (id %s) at version %d of %d", ev.Name, ev.ID, next-1, version)
		}
		var ops struct {
			Version int64 `json:"version"`
			Ops     []struct {
				Seq int64 `json:"seq"`
			} `json:"ops"`
		}
		if err := json.Unmarshal([]byte(ev.Data), &ops); err != nil {
			t.Fatalf("ops event %q: %v", ev.Data, err)
		}
		for _, op := range ops.Ops {
			if op.Seq != next {
				t.Fatalf("op %d arrived where op %d was due", op.Seq, next)
			}
			next++
		}
		if ev.ID != strconv.FormatInt(next-1, 10) || ops.Version != next-1 {
			t.Fatalf("ops event id %s, version %d, after op %d", ev.ID, ops.Version, next-1)
		}
	}

	after := srv.snapGraph(rm.ID)
	if !reflect.DeepEqual(before, after) {
		t.Errorf("graph after loading past the corrupt snapshot differs\nbefore %+v\n after %+v", before, after)
	}
}
