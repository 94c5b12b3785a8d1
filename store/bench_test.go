package store_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/liveshare/liveshare/store"
	"github.com/liveshare/liveshare/store/storetest"
)

// BenchmarkAppendOps measures one committed AppendOps (one transaction) of a
// 1-op and a 100-op batch; ops/s is ops committed per second.
func BenchmarkAppendOps(b *testing.B) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		for _, batch := range []int{1, 100} {
			b.Run(fmt.Sprintf("%s/batch=%d", dialect, batch), func(b *testing.B) {
				ctx := context.Background()
				s := storetest.Open(b, dialect)
				room, err := s.CreateRoom(ctx, "bench")
				if err != nil {
					b.Fatal(err)
				}
				ops := makeOps("bench", batch)
				version := int64(0)
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					res, err := s.AppendOps(ctx, store.Append{RoomID: room.ID, ExpectedVersion: version, ElementCount: version, Writes: []store.AppendWrite{{Ops: ops, ClientID: "bench"}}})
					if err != nil {
						b.Fatal(err)
					}
					version = res.Version
				}
				b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "ops/s")
			})
		}
	}
}
