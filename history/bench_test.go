package history_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/liveshare/liveshare/graph"
	"github.com/liveshare/liveshare/history"
	"github.com/liveshare/liveshare/snapshot"
	"github.com/liveshare/liveshare/store"
	"github.com/liveshare/liveshare/store/storetest"
)

// benchRoom is a room of nodes+edges = 10k elements (7k tables with two
// columns each, 3k relations) with a checkpoint at its version base, and
// after it moves ops of random nodes, as dragging in the page makes.
type benchRoom struct {
	st      *store.Store
	id      string
	base    int64 // the checkpoint's version
	current int64
}

const (
	benchNodes = 7000
	benchEdges = 3000
)

func benchOps(nodes, edges int) []json.RawMessage {
	ops := make([]json.RawMessage, 0, nodes+edges)
	for i := range nodes {
		ops = append(ops, json.RawMessage(fmt.Sprintf(
			`{"op":"add_node","node":{"id":"t%d","kind":"table","label":"table_%d","x":%d,"y":%d,"data":{"columns":[{"name":"id","type":"uuid"},{"name":"name_%d","type":"text"}]}}}`,
			i, i, i%100*200, i/100*120, i)))
	}
	for i := range edges {
		ops = append(ops, json.RawMessage(fmt.Sprintf(
			`{"op":"add_edge","edge":{"id":"r%d","kind":"relation","source":"t%d","target":"t%d","label":"fk_%d"}}`, i, i, (i*7+1)%nodes, i)))
	}
	return ops
}

func moveOps(from, n int) []json.RawMessage {
	ops := make([]json.RawMessage, n)
	for i := range ops {
		k := from + i
		ops[i] = json.RawMessage(fmt.Sprintf(`{"op":"update_node","id":"t%d","patch":{"x":%d,"y":%d}}`, k*7919%benchNodes, k%997, k%991))
	}
	return ops
}

// append commits ops in requests of at most 1000 and returns the version.
func appendAll(tb testing.TB, st *store.Store, roomID string, version int64, elements int64, ops []json.RawMessage) int64 {
	tb.Helper()
	for len(ops) > 0 {
		n := min(len(ops), 1000)
		res, err := st.AppendOps(context.Background(), store.Append{RoomID: roomID, ExpectedVersion: version, ElementCount: elements,
			Writes: []store.AppendWrite{{Ops: ops[:n], ClientID: "bench"}}})
		if err != nil {
			tb.Fatal(err)
		}
		version, ops = res.Version, ops[n:]
	}
	return version
}

// newBenchRoom builds the room: 10k elements, a checkpoint, then opsAfter
// moves.
func newBenchRoom(b *testing.B, dialect string, opsAfter int) *benchRoom {
	b.Helper()
	ctx := context.Background()
	st := storetest.Open(b, dialect)
	rm, err := st.CreateRoom(ctx, "bench")
	if err != nil {
		b.Fatal(err)
	}
	ops := benchOps(benchNodes, benchEdges)
	g := graph.New()
	for _, raw := range ops {
		op, err := graph.ParseOp(raw)
		if err != nil {
			b.Fatal(err)
		}
		if err := g.Apply([]graph.Op{op}); err != nil {
			b.Fatal(err)
		}
	}
	base := appendAll(b, st, rm.ID, 0, int64(g.ElementCount()), ops)
	data, err := snapshot.Encode(g.State(), base)
	if err != nil {
		b.Fatal(err)
	}
	if _, _, err := st.InsertSnapshotRetaining(ctx, store.NewSnapshot{RoomID: rm.ID, Version: base, ElementCount: int64(g.ElementCount()),
		Trigger: store.TriggerCheckpoint, Format: snapshot.FormatVersion, Data: data}, store.Retention{Keep: 10, Hourly: 24 * time.Hour, Daily: 720 * time.Hour}); err != nil {
		b.Fatal(err)
	}
	current := appendAll(b, st, rm.ID, base, int64(g.ElementCount()), moveOps(0, opsAfter))
	return &benchRoom{st: st, id: rm.ID, base: base, current: current}
}

// BenchmarkGraphAtVersion is the work of GET /rooms/{room}/graph?version=N
// for a 10k-element room whose version N is 5k ops after its nearest
// checkpoint: read and decode the checkpoint, read and apply the 5k ops,
// sort, and encode the answer's JSON. Goal: ≤ 100 ms.
func BenchmarkGraphAtVersion(b *testing.B) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		b.Run(dialect, func(b *testing.B) {
			room := newBenchRoom(b, dialect, 5000)
			rd := history.NewReader(room.st, nil)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				s, err := rd.StateAt(ctx, room.id, room.current)
				if err != nil {
					b.Fatal(err)
				}
				if len(s.Nodes)+len(s.Edges) != benchNodes+benchEdges {
					b.Fatalf("%d elements", len(s.Nodes)+len(s.Edges))
				}
				if _, err := json.Marshal(s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDiffVersions is the work of GET /rooms/{room}/diff between two
// stored versions of a 10k-element room: the checkpoint's version and the
// one 5k ops later, read together as the diff handler reads two past
// versions (StatesAt: one snapshot decode and one replay), their diff, and
// its JSON. BenchmarkDiffStates is the diff alone. Goal: ≤ 100 ms.
func BenchmarkDiffVersions(b *testing.B) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		b.Run(dialect, func(b *testing.B) {
			room := newBenchRoom(b, dialect, 5000)
			rd := history.NewReader(room.st, nil)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				a, c, err := rd.StatesAt(ctx, room.id, room.base, room.current)
				if err != nil {
					b.Fatal(err)
				}
				d := graph.DiffStates(a, c)
				if len(d.Nodes.Changed) == 0 {
					b.Fatal("no change")
				}
				if _, err := json.Marshal(d); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDiffStates(b *testing.B) {
	g := graph.New()
	for _, raw := range benchOps(benchNodes, benchEdges) {
		op, _ := graph.ParseOp(raw)
		if err := g.Apply([]graph.Op{op}); err != nil {
			b.Fatal(err)
		}
	}
	a := g.State()
	for _, raw := range moveOps(0, 5000) {
		op, _ := graph.ParseOp(raw)
		if err := g.Apply([]graph.Op{op}); err != nil {
			b.Fatal(err)
		}
	}
	c := g.State()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		graph.DiffStates(a, c)
	}
}

// BenchmarkStorage measures what history costs on disk, for
// docs/BENCHMARKS.md's storage per room per day: bytes per logged op (a
// move, as most ops are), and bytes per stored snapshot of a 1k- and a
// 10k-element room (a checkpoint is one). Each size is the growth of the
// database (SQLite: the file after a checkpoint of its WAL; PostgreSQL:
// pg_total_relation_size of the table) divided by the rows added.
func BenchmarkStorage(b *testing.B) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		b.Run(dialect, func(b *testing.B) {
			cfg := storetest.Config(b, dialect)
			ctx := context.Background()
			st, err := store.Open(ctx, cfg)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = st.Close() })
			size := storageSize(b, cfg)
			rm, err := st.CreateRoom(ctx, "storage")
			if err != nil {
				b.Fatal(err)
			}
			version := appendAll(b, st, rm.ID, 0, 1000, benchOps(800, 200))
			for range b.N {
				before := size("ops")
				const n = 20000
				version = appendAll(b, st, rm.ID, version, 1000, moveOps(int(version), n))
				b.ReportMetric(float64(size("ops")-before)/n, "B/op-row")
			}
			for _, elements := range []struct{ nodes, edges int }{{800, 200}, {7000, 3000}} {
				g := graph.New()
				for _, raw := range benchOps(elements.nodes, elements.edges) {
					op, _ := graph.ParseOp(raw)
					_ = g.Apply([]graph.Op{op})
				}
				data, err := snapshot.Encode(g.State(), version)
				if err != nil {
					b.Fatal(err)
				}
				before := size("snapshots") + size("snapshot_chunks")
				const n = 5
				for i := range n {
					version = appendAll(b, st, rm.ID, version, 1000, moveOps(i, 1))
					if _, _, err := st.InsertSnapshot(ctx, store.NewSnapshot{RoomID: rm.ID, Version: version, ElementCount: int64(g.ElementCount()),
						Trigger: store.TriggerCheckpoint, Format: snapshot.FormatVersion, Data: data}, 100); err != nil {
						b.Fatal(err)
					}
				}
				grown := size("snapshots") + size("snapshot_chunks") - before
				b.ReportMetric(float64(grown)/n, fmt.Sprintf("B/snapshot-%dk", (elements.nodes+elements.edges)/1000))
				b.ReportMetric(float64(len(data)), fmt.Sprintf("B/encoded-%dk", (elements.nodes+elements.edges)/1000))
			}
		})
	}
}

// storageSize returns a function measuring a table's bytes on disk.
func storageSize(b *testing.B, cfg store.Config) func(table string) int64 {
	if cfg.DatabaseURL == "" {
		path := filepath.Join(cfg.DataDir, "liveshare.db")
		db, err := sql.Open("sqlite", path)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = db.Close() })
		// SQLite has no per-table size without dbstat: the whole file,
		// with the WAL folded in, grows by what the rows added take. Its
		// pieces' table is inside that file already.
		return func(table string) int64 {
			if table == "snapshot_chunks" {
				return 0
			}
			if _, err := db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
				b.Fatal(err)
			}
			fi, err := os.Stat(path)
			if err != nil {
				b.Fatal(err)
			}
			return fi.Size()
		}
	}
	db, err := sql.Open("postgres", cfg.DatabaseURL)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = db.Close() })
	return func(table string) int64 {
		var n int64
		if err := db.QueryRow(`SELECT pg_total_relation_size($1::regclass)`, table).Scan(&n); err != nil {
			b.Fatal(err)
		}
		return n
	}
}
