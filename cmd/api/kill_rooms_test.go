package main_test

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/liveshare/liveshare/store"
)

// TestKillDuringCommitsOfManyRooms: on SQLite, rooms that commit at the same
// time share one transaction (store's sqliteBatch); on PostgreSQL they
// commit side by side. Either way, while writers post keyed requests into
// eight rooms at once, the process is SIGKILLed, and after restart every
// room's log holds each acknowledged request entirely, once, at the seqs its
// ack named; each unacknowledged one entirely or not at all; and retrying
// every request with its Idempotency-Key answers the original result for
// those in the log and applies the others exactly once.
func TestKillDuringCommitsOfManyRooms(t *testing.T) {
	t.Parallel()
	databases(t, func(t *testing.T, cfg store.Config) {
		srv := startServer(t, cfg)
		const rooms, writers, acksBeforeKill = 8, 16, 300
		ids := make([]string, rooms)
		for i := range ids {
			ids[i] = srv.createRoom(fmt.Sprintf("crash-rooms-%d", i)).ID
		}
		client := &http.Client{Timeout: 10 * time.Second}
		var (
			mu     sync.Mutex
			reqs   = make([][]*mixedReq, rooms)
			acks   atomic.Int64
			enough = make(chan struct{})
			once   sync.Once
			stop   = make(chan struct{})
			wg     sync.WaitGroup
		)
		for w := range writers {
			room := w % rooms
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					name := fmt.Sprintf("w%d-r%d", w, i)
					q := &mixedReq{name: name, kind: kindValid, key: name,
						want: []string{"add:" + name + "-n0", "add:" + name + "-n1"}}
					q.body = map[string]any{"ops": []map[string]any{
						{"op": "add_node", "node": map[string]any{"id": name + "-n0"}},
						{"op": "add_node", "node": map[string]any{"id": name + "-n1"}},
					}}
					mu.Lock()
					reqs[room] = append(reqs[room], q)
					mu.Unlock()
					a, err := postMixed(client, srv.URL, ids[room], q.key, q.body)
					if err != nil {
						return // the server died under us
					}
					q.record(a)
					if a.status == http.StatusOK && acks.Add(1) >= acksBeforeKill {
						once.Do(func() { close(enough) })
					}
				}
			})
		}
		select {
		case <-enough:
		case <-time.After(2 * time.Minute):
			t.Errorf("only %d requests acknowledged in 2 minutes", acks.Load())
		}
		srv.kill()
		close(stop)
		wg.Wait()
		if t.Failed() {
			return
		}

		srv = srv.restart()
		var acked, unanswered, unansweredLogged int
		for room, id := range ids {
			logged, _ := logByRequest(t, srv, id)
			last := checkWhole(t, reqs[room], logged)
			for _, q := range reqs[room] {
				end, inLog := last[q.name]
				switch {
				case len(q.answers) == 0:
					unanswered++
					if inLog {
						unansweredLogged++
					}
				case q.answers[0].status != http.StatusOK:
					t.Errorf("room %d: %s answered %v before the kill", room, q.name, q.answers[0])
				case !inLog:
					t.Errorf("room %d: %s acknowledged (%v) but not in the log", room, q.name, q.answers[0])
				default:
					acked++
					if a := q.answers[0]; a.res.Version != end || a.res.Applied != 2 {
						t.Errorf("room %d: %s acknowledged %v, but its ops end at seq %d", room, q.name, a, end)
					}
				}
				// Retry with the key: the original result, or applied now.
				a, err := postMixed(client, srv.URL, id, q.key, q.body)
				switch {
				case err != nil:
					t.Fatalf("retry %s: %v", q.name, err)
				case a.status != http.StatusOK || a.res.Applied != 2:
					t.Errorf("room %d: retry of %s answered %v", room, q.name, a)
				case inLog && a.res.Version != end:
					t.Errorf("room %d: retry of %s, logged at seqs ..%d, answered %v", room, q.name, end, a)
				}
			}
			// Every request is now in the log, once.
			logged, _ = logByRequest(t, srv, id)
			checkWhole(t, reqs[room], logged)
			if len(logged) != len(reqs[room]) {
				t.Errorf("room %d: %d requests in the log after the retries, want %d", room, len(logged), len(reqs[room]))
			}
		}
		t.Logf("before SIGKILL: %d acknowledged, %d unanswered (%d of them committed), in %d rooms", acked, unanswered, unansweredLogged, rooms)
		if unanswered == 0 {
			t.Error("no request was in flight at the kill")
		}
	})
}
