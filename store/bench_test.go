package store_test

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/liveshare/liveshare/graph"
	"github.com/liveshare/liveshare/snapshot"
	"github.com/liveshare/liveshare/store"
	"github.com/liveshare/liveshare/store/storetest"
)

// benchKeys is the ring of the keys=on benchmarks (a fixed test key).
const benchKeys = "bench:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

// BenchmarkAppendOps measures one committed AppendOps (one transaction) of a
// 1-op and a 100-op batch, with encryption off and on; ops/s is ops
// committed per second. Off and on are sub-benchmarks of one function, so
// that -count interleaves them on a shared machine.
func BenchmarkAppendOps(b *testing.B) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		for _, batch := range []int{1, 100} {
			for _, keys := range []string{"off", "on"} {
				b.Run(fmt.Sprintf("%s/batch=%d/keys=%s", dialect, batch, keys), func(b *testing.B) {
					ctx := context.Background()
					cfg := storetest.Config(b, dialect)
					if keys == "on" {
						cfg.Keys = mustKeyring(b, benchKeys)
					}
					s, err := store.Open(ctx, cfg)
					if err != nil {
						b.Fatal(err)
					}
					b.Cleanup(func() { s.Close() })
					room, err := s.CreateRoom(ctx, "bench")
					if err != nil {
						b.Fatal(err)
					}
					ops := makeOps("bench", batch)
					version := int64(0)
					b.ReportAllocs()
					b.ResetTimer()
					cpu0 := processCPU(b)
					for b.Loop() {
						res, err := s.AppendOps(ctx, store.Append{RoomID: room.ID, ExpectedVersion: version, ElementCount: version, Writes: []store.AppendWrite{{Ops: ops, ClientID: "bench"}}})
						if err != nil {
							b.Fatal(err)
						}
						version = res.Version
					}
					b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "ops/s")
					// CPU time of this process (SQLite runs in it; PostgreSQL's
					// own work is not counted) per op: less disturbed than wall
					// time by other work on a shared machine.
					b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(b.N*batch), "cpu-µs/op")
				})
			}
		}
	}
}

// processCPU is the user + system CPU time this process used so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchState is a schema graph of n tables with five columns each, and
// n/2 relations.
func benchState(n int) graph.State {
	s := graph.State{Nodes: make([]graph.Node, 0, n), Edges: make([]graph.Edge, 0, n/2)}
	for i := range n {
		data := fmt.Sprintf(`{"columns":[{"name":"id","type":"uuid"},{"name":"name_%d","type":"text"},{"name":"created_at","type":"timestamptz"},{"name":"owner_%d","type":"uuid"},{"name":"amount","type":"numeric"}]}`, i, i%97)
		s.Nodes = append(s.Nodes, graph.Node{ID: fmt.Sprintf("t%d", i), Kind: "table", Label: fmt.Sprintf("table_%d", i),
			X: float64(i%100) * 12.5, Y: float64(i/100) * 8, Data: []byte(data)})
	}
	for i := 0; i+1 < n; i += 2 {
		s.Edges = append(s.Edges, graph.Edge{ID: fmt.Sprintf("e%d", i), Kind: "relation", Source: fmt.Sprintf("t%d", i),
			Target: fmt.Sprintf("t%d", i+1), Label: "fk", Data: []byte(`{}`)})
	}
	return s
}

// BenchmarkSnapshotEncode measures what a snapshot costs before it reaches
// the database: the codec's encode, and with keys on also the seal that
// InsertSnapshot adds.
func BenchmarkSnapshotEncode(b *testing.B) {
	ring := mustKeyring(b, benchKeys)
	roomID, id := uuid.NewString(), uuid.NewString()
	for _, n := range []int{10000, 100000} {
		state := benchState(n)
		// Warm the encoder's pools first, so that whichever variant runs
		// first does not pay for them.
		if _, err := snapshot.Encode(state, 7); err != nil {
			b.Fatal(err)
		}
		for _, keys := range []string{"off", "on"} {
			b.Run(fmt.Sprintf("%dk/keys=%s", n/1000, keys), func(b *testing.B) {
				b.ReportAllocs()
				var size int
				for b.Loop() {
					data, err := snapshot.Encode(state, 7)
					if err != nil {
						b.Fatal(err)
					}
					if keys == "on" {
						if data, err = store.SealSnapshot(ring, roomID, id, 7, data); err != nil {
							b.Fatal(err)
						}
					}
					size = len(data)
				}
				b.ReportMetric(float64(size), "bytes")
			})
		}
	}
}

// BenchmarkSeal measures sealing alone, key derivation for the room
// included, as AppendOps pays it once per group and InsertSnapshot once per
// snapshot: the difference that BenchmarkAppendOps and
// BenchmarkSnapshotEncode look for under the noise of a shared machine.
func BenchmarkSeal(b *testing.B) {
	ring := mustKeyring(b, benchKeys)
	roomID, id := uuid.NewString(), uuid.NewString()
	for _, size := range []struct {
		name string
		n    int
	}{{"op-200B", 200}, {"snapshot-90KB", 90 << 10}, {"snapshot-820KB", 820 << 10}} {
		data := make([]byte, size.n)
		b.Run(size.name, func(b *testing.B) {
			b.SetBytes(int64(size.n))
			for b.Loop() {
				if _, err := store.SealSnapshot(ring, roomID, id, 7, data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
