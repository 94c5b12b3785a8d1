package snapshot_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/liveshare/liveshare/graph"
	"github.com/liveshare/liveshare/room"
	"github.com/liveshare/liveshare/snapshot"
	"github.com/liveshare/liveshare/store"
	"github.com/liveshare/liveshare/store/storetest"
)

// bigRoom fills a new room with elements (80% table nodes with five columns,
// 20% relations) through the real write path, 1,000 ops a commit.
func bigRoom(b *testing.B, st *store.Store, m *room.Manager, elements int) string {
	b.Helper()
	ctx := context.Background()
	info, err := st.CreateRoom(ctx, "big")
	if err != nil {
		b.Fatal(err)
	}
	nodes := elements * 4 / 5
	var ops []graph.Op
	flush := func() {
		if len(ops) > 0 {
			if _, err := m.Apply(ctx, info.ID, room.Write{Ops: ops}); err != nil {
				b.Fatal(err)
			}
			ops = ops[:0]
		}
	}
	for i := range nodes {
		data := fmt.Sprintf(`{"columns":[{"name":"id","type":"uuid"},{"name":"name","type":"text"},{"name":"created_at","type":"timestamptz"},{"name":"owner_%d","type":"uuid"},{"name":"n","type":"int"}]}`, i)
		ops = append(ops, graph.Op{Kind: graph.OpAddNode, Node: &graph.Node{
			ID: fmt.Sprintf("table_%d", i), Kind: "table", Label: fmt.Sprintf("table %d", i),
			X: float64(i%300) * 40, Y: float64(i/300) * 40, Data: []byte(data),
		}})
		if len(ops) == 1000 {
			flush()
		}
	}
	for i := range elements - nodes {
		ops = append(ops, graph.Op{Kind: graph.OpAddEdge, Edge: &graph.Edge{
			ID: fmt.Sprintf("fk_%d", i), Kind: "relation", Source: fmt.Sprintf("table_%d", i%nodes),
			Target: fmt.Sprintf("table_%d", (i*7+1)%nodes), Label: "ref",
		}})
		if len(ops) == 1000 {
			flush()
		}
	}
	flush()
	return info.ID
}

// BenchmarkWriterWaitDuringSnapshot measures how long single-op writes to
// a 100k-element room take while the room is being snapshotted, beside the
// same writes with no snapshot running. Each iteration is one snapshot.
func BenchmarkWriterWaitDuringSnapshot(b *testing.B) {
	for _, dialect := range benchDialects() {
		b.Run(dialect, func(b *testing.B) { benchWriterWait(b, dialect) })
	}
}

func benchDialects() []string {
	if os.Getenv(storetest.EnvDatabaseURL) != "" {
		return []string{"sqlite", "postgres"}
	}
	return []string{"sqlite"}
}

func benchWriterWait(b *testing.B, dialect string) {
	ctx := context.Background()
	st := storetest.Open(b, dialect)
	reg := snapshot.NewRegistry(st, snapshot.Config{Interval: time.Hour, Keep: 2, MaxBytes: 64 << 20})
	m := room.NewManager(st, room.Options{Snapshots: reg})
	id := bigRoom(b, st, m, 100_000)
	r, err := m.Get(ctx, id)
	if err != nil {
		b.Fatal(err)
	}

	write := func(n int) time.Duration {
		start := time.Now()
		if _, err := m.Apply(ctx, id, room.Write{Ops: []graph.Op{{Kind: graph.OpUpdateNode, ID: "table_1", Patch: []byte(fmt.Sprintf(`{"x":%d}`, n))}}}); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	var quiet []time.Duration
	for i := range 200 {
		quiet = append(quiet, write(i))
	}

	var during []time.Duration
	var snapTimes []time.Duration
	n := 0
	for b.Loop() {
		done := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				n++
				during = append(during, write(n))
			}
		})
		start := time.Now()
		if _, err := reg.Take(ctx, r, snapshot.TriggerManual); err != nil {
			b.Fatal(err)
		}
		snapTimes = append(snapTimes, time.Since(start))
		close(done)
		wg.Wait()
	}
	slices.Sort(quiet)
	slices.Sort(during)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(quiet[len(quiet)/2]), "quiet-p50-ms")
	b.ReportMetric(ms(quiet[len(quiet)-1]), "quiet-max-ms")
	b.ReportMetric(ms(during[len(during)/2]), "during-p50-ms")
	b.ReportMetric(ms(during[len(during)*99/100]), "during-p99-ms")
	b.ReportMetric(ms(during[len(during)-1]), "during-max-ms")
	b.ReportMetric(float64(len(during))/float64(len(snapTimes)), "writes/snapshot")
	// How many writes waited longer than the 10 ms, beside how many
	// did with no snapshot running: on a shared machine the maximum alone
	// says more about the machine than about the room.
	over := func(ds []time.Duration) float64 {
		n := len(ds) - sort.Search(len(ds), func(i int) bool { return ds[i] > 10*time.Millisecond })
		return float64(n)
	}
	b.ReportMetric(over(quiet), "quiet-over-10ms")
	b.ReportMetric(over(during), "during-over-10ms")
}

// BenchmarkLoadRoom measures loading a 100k-element room with 10k ops after
// its snapshot: decode the snapshot, replay the ops. Each iteration is one
// load by a fresh manager, as after a restart.
func BenchmarkLoadRoom(b *testing.B) {
	for _, dialect := range benchDialects() {
		b.Run(dialect, func(b *testing.B) { benchLoadRoom(b, dialect, 100_000, 10_000) })
	}
}

// BenchmarkLoadRoom10k is the cold start of docs/BENCHMARKS.md without
// the process: a room of 10k elements with 5k moves after its snapshot.
func BenchmarkLoadRoom10k(b *testing.B) {
	for _, dialect := range benchDialects() {
		b.Run(dialect, func(b *testing.B) { benchLoadRoom(b, dialect, 10_000, 5_000) })
	}
}

func benchLoadRoom(b *testing.B, dialect string, elements, moves int) {
	ctx := context.Background()
	st := storetest.Open(b, dialect)
	cfg := snapshot.Config{Interval: time.Hour, Keep: 2, MaxBytes: 64 << 20}
	reg := snapshot.NewRegistry(st, cfg)
	m := room.NewManager(st, room.Options{Snapshots: reg})
	id := bigRoom(b, st, m, elements)
	r, _ := m.Get(ctx, id)
	if _, err := reg.Take(ctx, r, snapshot.TriggerManual); err != nil {
		b.Fatal(err)
	}
	for i := range moves / 100 {
		ops := make([]graph.Op, 100)
		for j := range ops {
			ops[j] = graph.Op{Kind: graph.OpUpdateNode, ID: fmt.Sprintf("table_%d", (i*100+j)%1000), Patch: []byte(fmt.Sprintf(`{"x":%d,"y":%d}`, i, j))}
		}
		if _, err := m.Apply(ctx, id, room.Write{Ops: ops}); err != nil {
			b.Fatal(err)
		}
	}
	want := r.Version()
	for b.Loop() {
		fresh := room.NewManager(st, room.Options{Snapshots: snapshot.NewRegistry(st, cfg)})
		r2, err := fresh.Get(ctx, id)
		if err != nil {
			b.Fatal(err)
		}
		if r2.Version() != want {
			b.Fatalf("loaded version %d, want %d", r2.Version(), want)
		}
	}
}
