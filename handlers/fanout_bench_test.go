package handlers_test

import (
	"bufio"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/liveshare/liveshare/store/storetest"
)

// BenchmarkFanoutDelay measures the delay from posting one op to its ops
// event arriving at each of S subscribers of one room over real HTTP, one op
// at a time (the room is otherwise idle). The delay includes the request and
// the commit; p50 and p99 are over every (op, subscriber) pair.
func BenchmarkFanoutDelay(b *testing.B) {
	for _, subs := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("subscribers=%d", subs), func(b *testing.B) {
			st := storetest.Open(b, "sqlite")
			srv := newTestServer(b, st, serverOptions{})
			roomID := srv.createRoom()
			transport := &http.Transport{}
			defer transport.CloseIdleConnections()
			client := &http.Client{Transport: transport}

			var (
				mu       sync.Mutex
				received = map[int64]*atomic.Int64{}
				arrivals = map[int64][]time.Time{}
				bodies   []func()
			)
			expect := func(seq int64) *atomic.Int64 {
				mu.Lock()
				defer mu.Unlock()
				if received[seq] == nil {
					received[seq] = &atomic.Int64{}
				}
				return received[seq]
			}
			for range subs {
				resp, err := client.Get(srv.URL + "/rooms/" + roomID + "/events?last_event_id=0")
				if err != nil {
					b.Fatal(err)
				}
				bodies = append(bodies, func() { resp.Body.Close() })
				go func() {
					r := bufio.NewReader(resp.Body)
					for {
						line, err := r.ReadString('\n')
						if err != nil {
							return
						}
						if id, ok := strings.CutPrefix(strings.TrimSpace(line), "id: "); ok {
							seq, _ := strconv.ParseInt(id, 10, 64)
							now := time.Now()
							mu.Lock()
							arrivals[seq] = append(arrivals[seq], now)
							mu.Unlock()
							expect(seq).Add(1)
						}
					}
				}()
			}
			waitFor(b, 60*time.Second, "subscribers", func() bool { return subscribers(srv, roomID) == subs })
			time.Sleep(presenceSettle(subs)) // let the join storm's presence events pass

			var delays []time.Duration
			seq := int64(0)
			for b.Loop() {
				seq++
				sent := time.Now()
				if _, err := srv.post(roomID, addNodes("n"+strconv.FormatInt(seq, 10))); err != nil {
					b.Fatal(err)
				}
				got := expect(seq)
				for got.Load() < int64(subs) {
					time.Sleep(20 * time.Microsecond)
				}
				mu.Lock()
				for _, at := range arrivals[seq] {
					delays = append(delays, at.Sub(sent))
				}
				mu.Unlock()
			}
			slices.Sort(delays)
			q := func(p float64) float64 {
				return float64(delays[min(len(delays)-1, int(float64(len(delays))*p))].Microseconds()) / 1000
			}
			b.ReportMetric(q(0.50), "p50-ms")
			b.ReportMetric(q(0.99), "p99-ms")
			for _, c := range bodies {
				c()
			}
		})
	}
}

func presenceSettle(subs int) time.Duration {
	return 200*time.Millisecond + time.Duration(subs)*3*time.Millisecond
}
