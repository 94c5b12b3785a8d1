package main_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/liveshare/liveshare/store"
)

// batch is one POST /ops a writer sent, and what the server answered.
type batch struct {
	key     string
	nodeIDs []string
	body    map[string]any
	acked   bool
	version int64
	applied int
}

// TestKillDuringConcurrentWrites proves DESIGN.md section 1 items 1-3 against
// the built binary: writers post batches while the process is SIGKILLed;
// after restart every acknowledged op is in the log exactly once, in its
// batch's order at the seqs the ack named, versions have no gaps, and
// retrying with the same Idempotency-Key applies nothing twice.
func TestKillDuringConcurrentWrites(t *testing.T) {
	t.Parallel()
	databases(t, func(t *testing.T, cfg store.Config) {
		srv := startServer(t, cfg)
		rm := srv.createRoom("crash")

		const writers = 8
		var (
			mu      sync.Mutex
			batches []*batch
			acks    atomic.Int64
			stop    = make(chan struct{})
			wg      sync.WaitGroup
		)
		client := &http.Client{Timeout: 10 * time.Second}
		for w := range writers {
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					b := &batch{key: fmt.Sprintf("w%d-b%d", w, i)}
					n := 1 + (i*7+w)%5
					ops := make([]map[string]any, n)
					for j := range n {
						id := fmt.Sprintf("w%d-b%d-n%d", w, i, j)
						b.nodeIDs = append(b.nodeIDs, id)
						ops[j] = map[string]any{"op": "add_node", "node": map[string]any{"id": id, "kind": "table", "x": j, "y": i}}
					}
					b.body = map[string]any{"ops": ops, "client_id": fmt.Sprintf("writer-%d", w)}
					mu.Lock()
					batches = append(batches, b)
					mu.Unlock()
					status, res, err := postOps(client, srv.URL, rm.ID, b.key, b.body)
					if err != nil {
						return // the server died under us
					}
					if status != http.StatusOK {
						t.Errorf("batch %s: status %d", b.key, status)
						return
					}
					mu.Lock()
					b.acked, b.version, b.applied = true, res.Version, res.Applied
					mu.Unlock()
					acks.Add(1)
				}
			})
		}
		// Let the writers get going, then crash the server mid-stream.
		deadline := time.Now().Add(20 * time.Second)
		for acks.Load() < 200 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		srv.kill()
		close(stop)
		wg.Wait()
		if acks.Load() == 0 {
			t.Fatal("no batch was acknowledged before the kill")
		}

		srv = srv.restart()
		version, logged := srv.allOps(rm.ID)
		checkLog(t, version, logged)

		bySeq := make(map[int64]string, len(logged))
		for _, l := range logged {
			var op struct {
				Node struct {
					ID string `json:"id"`
				} `json:"node"`
			}
			if err := json.Unmarshal(l.Op, &op); err != nil {
				t.Fatal(err)
			}
			bySeq[l.Seq] = op.Node.ID
		}
		ackedOps := 0
		for _, b := range batches {
			if !b.acked {
				continue
			}
			ackedOps += len(b.nodeIDs)
			if b.applied != len(b.nodeIDs) {
				t.Errorf("batch %s: applied %d, want %d", b.key, b.applied, len(b.nodeIDs))
			}
			first := b.version - int64(b.applied) + 1
			for j, id := range b.nodeIDs {
				if got := bySeq[first+int64(j)]; got != id {
					t.Errorf("batch %s: seq %d holds %q, want %q", b.key, first+int64(j), got, id)
				}
			}
		}
		t.Logf("%d batches acknowledged (%d ops) before SIGKILL; %d ops in the log after restart", acks.Load(), ackedOps, len(logged))

		// Retrying every batch with its key: acknowledged ones answer their
		// first result, in-flight ones are applied at most once.
		for _, b := range batches {
			status, res, err := postOps(client, srv.URL, rm.ID, b.key, b.body)
			if err != nil || status != http.StatusOK {
				t.Fatalf("retry %s: status %d err %v", b.key, status, err)
			}
			if b.acked && (res.Version != b.version || res.Applied != b.applied) {
				t.Errorf("retry %s answered %+v, first answer was version %d applied %d", b.key, res, b.version, b.applied)
			}
		}
		version2, logged2 := srv.allOps(rm.ID)
		checkLog(t, version2, logged2)
		seen := make(map[string]int)
		for _, l := range logged2 {
			seen[string(l.Op)]++
		}
		for op, n := range seen {
			if n != 1 {
				t.Errorf("op %s is in the log %d times", op, n)
			}
		}
		if want := countNodes(batches); len(logged2) != want {
			t.Errorf("after retries the log holds %d ops, want every batch's %d ops once", len(logged2), want)
		}
	})
}

func countNodes(bs []*batch) int {
	n := 0
	for _, b := range bs {
		n += len(b.nodeIDs)
	}
	return n
}

// checkLog asserts seqs 1..version, no gap, no duplicate.
func checkLog(t *testing.T, version int64, logged []loggedOp) {
	t.Helper()
	if int64(len(logged)) != version {
		t.Fatalf("room version %d but %d ops in the log", version, len(logged))
	}
	for i, l := range logged {
		if l.Seq != int64(i+1) {
			t.Fatalf("op %d has seq %d: gap or duplicate", i, l.Seq)
		}
	}
}

type opsResult struct {
	Version int64 `json:"version"`
	Applied int   `json:"applied"`
}

func postOps(c *http.Client, base, roomID, key string, body any) (int, opsResult, error) {
	enc, err := json.Marshal(body)
	if err != nil {
		return 0, opsResult{}, err
	}
	req, err := http.NewRequest("POST", base+"/rooms/"+roomID+"/ops", bytes.NewReader(enc))
	if err != nil {
		return 0, opsResult{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, opsResult{}, err
	}
	defer resp.Body.Close()
	var res opsResult
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
			return 0, opsResult{}, err
		}
	}
	return resp.StatusCode, res, nil
}
