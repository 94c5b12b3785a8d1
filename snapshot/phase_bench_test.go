package snapshot_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/liveshare/liveshare/graph"
	"github.com/liveshare/liveshare/room"
	"github.com/liveshare/liveshare/snapshot"
	"github.com/liveshare/liveshare/store"
	"github.com/liveshare/liveshare/store/storetest"
)

// BenchmarkWriterWaitByPhase is BenchmarkWriterWaitDuringSnapshot taken
// apart: single-op writes while one phase of a snapshot of a 100k-element
// room runs at a time (capture and sort, encode, store), and while nothing
// runs before and after, as the machine's own noise. Each phase runs three
// times; the metrics are its writes' p99 and maximum and how many waited over
// 10 ms. Run it with -benchtime 1x.
func BenchmarkWriterWaitByPhase(b *testing.B) {
	for _, dialect := range benchDialects() {
		b.Run(dialect, func(b *testing.B) {
			ctx := context.Background()
			st := storetest.Open(b, dialect)
			reg := snapshot.NewRegistry(st, snapshot.Config{Interval: time.Hour, Keep: 2, MaxBytes: 64 << 20})
			m := room.NewManager(st, room.Options{Snapshots: reg})
			id := bigRoom(b, st, m, 100_000)
			r, err := m.Get(ctx, id)
			if err != nil {
				b.Fatal(err)
			}
			n := 0
			write := func() time.Duration {
				n++
				start := time.Now()
				if _, err := m.Apply(ctx, id, room.Write{Ops: []graph.Op{{Kind: graph.OpUpdateNode, ID: "table_1", Patch: []byte(fmt.Sprintf(`{"x":%d}`, n))}}}); err != nil {
					b.Fatal(err)
				}
				return time.Since(start)
			}
			phase := func(name string, work func()) {
				var during []time.Duration
				for range 3 {
					done := make(chan struct{})
					var wg sync.WaitGroup
					wg.Go(func() {
						for {
							select {
							case <-done:
								return
							default:
							}
							during = append(during, write())
						}
					})
					work()
					close(done)
					wg.Wait()
				}
				slices.Sort(during)
				over := 0
				for _, d := range during {
					if d > 10*time.Millisecond {
						over++
					}
				}
				ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
				b.ReportMetric(ms(during[len(during)*99/100]), name+"-p99-ms")
				b.ReportMetric(ms(during[len(during)-1]), name+"-max-ms")
				b.ReportMetric(float64(over), name+"-over-10ms")
			}
			phase("idle-before", func() { time.Sleep(300 * time.Millisecond) })
			phase("capture+sort", func() { s, _ := r.Capture(); s.Sort() })
			s, v := r.Capture()
			s.Sort()
			phase("encode", func() {
				if _, err := snapshot.Encode(s, v); err != nil {
					b.Fatal(err)
				}
			})
			data, err := snapshot.Encode(s, v)
			if err != nil {
				b.Fatal(err)
			}
			k := 0
			phase("store", func() {
				k++
				_, _, err := st.InsertSnapshot(ctx, store.NewSnapshot{RoomID: id, Version: int64(k), ElementCount: 100000, Trigger: "manual", Format: 1, Data: data}, 2)
				if err != nil {
					b.Fatal(err)
				}
			})
			phase("idle-after", func() { time.Sleep(300 * time.Millisecond) })
		})
	}
}
