package main_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/liveshare/liveshare/store"
)

// Kinds of the requests TestKillDuringMixedGroups sends. Each adds nodes of
// its own, so its ops are found in the log by their ids whatever else is
// committed around it.
const (
	kindValid   = "valid"   // applies
	kindInvalid = "invalid" // valid ops, then an update of a missing node: 422
	kindStale   = "stale"   // base_version 0 in a room past it: 409
	kindRacy    = "racy"    // base_version the writer saw last: 200 or 409
	kindTwin    = "twin"    // valid, sent twice at once with one key
)

// mixedReq is one request of TestKillDuringMixedGroups and every answer it
// got.
type mixedReq struct {
	name   string // prefix of its node ids
	kind   string
	key    string
	body   map[string]any
	want   []string // its ops as "add:<id>" / "update:<id>", in order
	failAt int      // kindInvalid: the op_index of the failing op

	mu      sync.Mutex
	answers []mixedAnswer // before the kill
}

type mixedAnswer struct {
	status int
	res    opsResult
	prob   problem
}

func (a mixedAnswer) String() string {
	if a.status == http.StatusOK {
		return fmt.Sprintf("200 version %d applied %d", a.res.Version, a.res.Applied)
	}
	idx, cur := "-", "-"
	if a.prob.OpIndex != nil {
		idx = fmt.Sprint(*a.prob.OpIndex)
	}
	if a.prob.Current != nil {
		cur = fmt.Sprint(*a.prob.Current)
	}
	return fmt.Sprintf("%d %s op_index %s current_version %s", a.status, a.prob.Code, idx, cur)
}

// newMixedReq builds request i of writer w: its kind and size rotate, so
// that every group the server forms mixes kinds and sizes.
func newMixedReq(w, i int, lastSeen int64) *mixedReq {
	sizes := []int{1, 2, 3, 5, 8, 13, 1, 40, 2, 4}
	kinds := []string{kindValid, kindInvalid, kindValid, kindStale, kindTwin, kindValid, kindRacy, kindInvalid, kindValid, kindStale}
	q := &mixedReq{
		name: fmt.Sprintf("w%d-r%d", w, i),
		kind: kinds[(i*3+w)%len(kinds)],
		key:  fmt.Sprintf("w%d-r%d", w, i),
	}
	n := sizes[(i+w)%len(sizes)]
	if q.kind == kindInvalid && n == 1 {
		n = 2
	}
	ops := make([]map[string]any, 0, n+1)
	for j := range n {
		id := fmt.Sprintf("%s-n%d", q.name, j)
		if j > 0 && j%3 == 0 {
			// An update of a node this request added: valid.
			first := q.name + "-n0"
			ops = append(ops, map[string]any{"op": "update_node", "id": first, "patch": map[string]any{"x": j}})
			q.want = append(q.want, "update:"+first)
			continue
		}
		ops = append(ops, map[string]any{"op": "add_node", "node": map[string]any{"id": id, "kind": "table", "y": i}})
		q.want = append(q.want, "add:"+id)
	}
	q.body = map[string]any{"ops": ops, "client_id": fmt.Sprintf("writer-%d", w)}
	switch q.kind {
	case kindInvalid:
		// Valid ops before and after it: applying any of them would show.
		q.failAt = 1 + (i % (n - 1))
		bad := map[string]any{"op": "update_node", "id": q.name + "-missing", "patch": map[string]any{"x": 1}}
		q.body["ops"] = slices.Insert(ops, q.failAt, bad)
		q.want = nil
	case kindStale:
		q.body["base_version"] = 0
		q.want = nil
	case kindRacy:
		q.body["base_version"] = lastSeen
	}
	return q
}

func (q *mixedReq) record(a mixedAnswer) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.answers = append(q.answers, a)
}

// postMixed posts body with key and reads the answer, problem included; err
// means no answer (the server died).
func postMixed(c *http.Client, base, roomID, key string, body any) (mixedAnswer, error) {
	enc, err := json.Marshal(body)
	if err != nil {
		return mixedAnswer{}, err
	}
	req, err := http.NewRequest("POST", base+"/rooms/"+roomID+"/ops", bytes.NewReader(enc))
	if err != nil {
		return mixedAnswer{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	resp, err := c.Do(req)
	if err != nil {
		return mixedAnswer{}, err
	}
	defer resp.Body.Close()
	a := mixedAnswer{status: resp.StatusCode}
	if a.status == http.StatusOK {
		err = json.NewDecoder(resp.Body).Decode(&a.res)
	} else {
		err = json.NewDecoder(resp.Body).Decode(&a.prob)
	}
	if err != nil {
		return mixedAnswer{}, err
	}
	return a, nil
}

// loggedReq is where a request's ops stand in the log.
type loggedReq struct {
	ops       []string // as in mixedReq.want
	seqs      []int64
	createdAt []string
}

// logByRequest reads the whole log and groups it by the request each op
// belongs to (the prefix of its node id), checking seqs 1..version.
func logByRequest(t *testing.T, srv *server, roomID string) (map[string]*loggedReq, []loggedOp) {
	t.Helper()
	version, logged := srv.allOps(roomID)
	if int64(len(logged)) != version {
		t.Fatalf("room version %d but %d ops in the log", version, len(logged))
	}
	out := make(map[string]*loggedReq)
	for i, l := range logged {
		if l.Seq != int64(i+1) {
			t.Fatalf("op %d has seq %d: gap or duplicate", i, l.Seq)
		}
		var op struct {
			Op   string `json:"op"`
			ID   string `json:"id"`
			Node struct {
				ID string `json:"id"`
			} `json:"node"`
		}
		if err := json.Unmarshal(l.Op, &op); err != nil {
			t.Fatal(err)
		}
		id, what := op.Node.ID, "add:"
		if op.Op == "update_node" {
			id, what = op.ID, "update:"
		}
		cut := strings.LastIndex(id, "-n")
		if cut < 0 {
			t.Fatalf("seq %d: op %s belongs to no request", l.Seq, l.Op)
		}
		r := out[id[:cut]]
		if r == nil {
			r = &loggedReq{}
			out[id[:cut]] = r
		}
		r.ops = append(r.ops, what+id)
		r.seqs = append(r.seqs, l.Seq)
		r.createdAt = append(r.createdAt, l.CreatedAt)
	}
	return out, logged
}

// checkWhole asserts that every request in the log is there entirely,
// once, at consecutive seqs, in its own order; it returns the seq of each
// one's last op.
func checkWhole(t *testing.T, reqs []*mixedReq, logged map[string]*loggedReq) map[string]int64 {
	t.Helper()
	byName := make(map[string]*mixedReq, len(reqs))
	for _, q := range reqs {
		byName[q.name] = q
	}
	last := make(map[string]int64)
	for name, l := range logged {
		q := byName[name]
		if q == nil {
			t.Errorf("the log holds ops of %s, which was never sent", name)
			continue
		}
		if !slices.Equal(l.ops, q.want) {
			t.Errorf("%s (%s) in the log as %v, want entirely %v", name, q.kind, l.ops, q.want)
			continue
		}
		for i := 1; i < len(l.seqs); i++ {
			if l.seqs[i] != l.seqs[0]+int64(i) {
				t.Errorf("%s: its ops are at seqs %v, not consecutive", name, l.seqs)
				break
			}
		}
		last[name] = l.seqs[len(l.seqs)-1]
	}
	return last
}

// TestKillDuringMixedGroups proves issue 12's kill -9 guarantees for group
// commit against the built binary, on both databases: while writers post
// requests of different sizes, valid and not (an invalid op after valid
// ones, a stale base_version, a base_version that may or may not be stale,
// one key sent twice at once), so that every commit group mixes them, the
// process is SIGKILLed. After restart:
//   - every acknowledged request is in the log entirely, once, at the seqs
//     its ack named, and all its answers agree;
//   - every unacknowledged one is there entirely or not at all;
//   - every refused one (422, 409) left nothing;
//   - a retry of every request with its Idempotency-Key answers the
//     original result for those in the log and applies nothing twice, and
//     refuses again what was refused for a reason that still holds.
func TestKillDuringMixedGroups(t *testing.T) {
	t.Parallel()
	databases(t, func(t *testing.T, cfg store.Config) {
		srv := startServer(t, cfg)
		rm := srv.createRoom("crash-groups")
		client := &http.Client{Timeout: 10 * time.Second}

		// A first request, so that base_version 0 is stale from now on.
		seed := newMixedReq(99, 0, 0)
		seed.kind, seed.body, seed.want = kindValid, map[string]any{"ops": []map[string]any{
			{"op": "add_node", "node": map[string]any{"id": "w99-r0-n0"}}}}, []string{"add:w99-r0-n0"}
		a, err := postMixed(client, srv.URL, rm.ID, seed.key, seed.body)
		if err != nil || a.status != http.StatusOK {
			t.Fatalf("seed request: %v %v", a, err)
		}
		seed.record(a)

		const writers, acksBeforeKill = 8, 150
		var (
			mu     sync.Mutex
			reqs   = []*mixedReq{seed}
			acks   atomic.Int64
			enough = make(chan struct{})
			once   sync.Once
			stop   = make(chan struct{})
			wg     sync.WaitGroup
		)
		// send posts q once and records its answer; false when the server
		// gave none.
		send := func(q *mixedReq) bool {
			a, err := postMixed(client, srv.URL, rm.ID, q.key, q.body)
			if err != nil {
				return false
			}
			q.record(a)
			if a.status == http.StatusOK && acks.Add(1) >= acksBeforeKill {
				once.Do(func() { close(enough) })
			}
			return true
		}
		for w := range writers {
			wg.Go(func() {
				lastSeen := a.res.Version
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					q := newMixedReq(w, i, lastSeen)
					mu.Lock()
					reqs = append(reqs, q)
					mu.Unlock()
					ok := true
					if q.kind == kindTwin {
						// Both copies are this writer's; it waits for both.
						var twins sync.WaitGroup
						var twinOK atomic.Bool
						twinOK.Store(true)
						for range 2 {
							twins.Go(func() {
								if !send(q) {
									twinOK.Store(false)
								}
							})
						}
						twins.Wait()
						ok = twinOK.Load()
					} else {
						ok = send(q)
					}
					if !ok {
						return // the server died under us
					}
					q.mu.Lock()
					for _, a := range q.answers {
						if a.status == http.StatusOK {
							lastSeen = max(lastSeen, a.res.Version)
						}
					}
					q.mu.Unlock()
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
		logged, ops := logByRequest(t, srv, rm.ID)
		last := checkWhole(t, reqs, logged)

		// Groups: ops of several requests committed at one instant.
		requestsAt := make(map[string]map[string]bool)
		for name, l := range logged {
			for _, at := range l.createdAt {
				if requestsAt[at] == nil {
					requestsAt[at] = make(map[string]bool)
				}
				requestsAt[at][name] = true
			}
		}
		groups := 0
		for _, names := range requestsAt {
			if len(names) > 1 {
				groups++
			}
		}

		var acked, refused, unanswered, unansweredLogged int
		var inFlight []string // kind and size of each unanswered request
		for _, q := range reqs {
			_, inLog := last[q.name]
			var ok []mixedAnswer
			for _, a := range q.answers {
				switch {
				case a.status == http.StatusOK:
					ok = append(ok, a)
				case q.kind == kindInvalid && a.status == http.StatusUnprocessableEntity && a.prob.Code == "invalid_op" &&
					a.prob.OpIndex != nil && *a.prob.OpIndex == q.failAt:
				case (q.kind == kindStale || q.kind == kindRacy) && a.status == http.StatusConflict && a.prob.Code == "conflict" &&
					a.prob.Current != nil:
				default:
					t.Errorf("%s (%s) answered %v", q.name, q.kind, a)
				}
			}
			switch {
			case len(ok) > 0:
				acked++
				for _, a := range ok {
					if a != ok[0] {
						t.Errorf("%s (%s): one key answered %v and %v", q.name, q.kind, ok[0], a)
					}
				}
				if !inLog {
					t.Errorf("%s (%s) acknowledged (%v) but not in the log", q.name, q.kind, ok[0])
				} else if ok[0].res.Version != last[q.name] || ok[0].res.Applied != len(q.want) {
					t.Errorf("%s (%s) acknowledged %v, but its %d ops end at seq %d in the log", q.name, q.kind, ok[0], len(q.want), last[q.name])
				}
			case len(q.answers) > 0:
				refused++
				if inLog {
					t.Errorf("%s (%s) refused (%v) but its ops are in the log", q.name, q.kind, q.answers[0])
				}
			default:
				unanswered++
				inFlight = append(inFlight, fmt.Sprintf("%s/%d", q.kind, len(q.body["ops"].([]map[string]any))))
				if inLog {
					unansweredLogged++
				}
			}
		}
		t.Logf("%d requests before SIGKILL: %d acknowledged, %d refused, %d unanswered %v (%d of them committed); %d ops in the log, %d commits of several requests",
			len(reqs), acked, refused, unanswered, inFlight, unansweredLogged, len(ops), groups)
		if groups == 0 {
			t.Error("no commit in the log holds ops of several requests: no group formed")
		}
		if unanswered == 0 {
			t.Error("no request was in flight at the kill")
		}

		// Retry everything with its key, one at a time.
		for _, q := range reqs {
			a, err := postMixed(client, srv.URL, rm.ID, q.key, q.body)
			if err != nil {
				t.Fatalf("retry %s: %v", q.name, err)
			}
			end, inLog := last[q.name]
			switch {
			case inLog:
				// The original result, whether or not it reached the client.
				if a.status != http.StatusOK || a.res.Version != end || a.res.Applied != len(q.want) {
					t.Errorf("retry of %s (%s), logged at seqs ..%d: answered %v, want its original result", q.name, q.kind, end, a)
				}
			case q.kind == kindInvalid:
				if a.status != http.StatusUnprocessableEntity || a.prob.OpIndex == nil || *a.prob.OpIndex != q.failAt {
					t.Errorf("retry of %s (%s): answered %v, want 422 at op %d", q.name, q.kind, a, q.failAt)
				}
			case q.kind == kindStale:
				if a.status != http.StatusConflict {
					t.Errorf("retry of %s (%s): answered %v, want 409", q.name, q.kind, a)
				}
			case q.kind == kindRacy && a.status == http.StatusConflict:
			case a.status != http.StatusOK || a.res.Applied != len(q.want):
				t.Errorf("retry of %s (%s), not in the log: answered %v, want it applied", q.name, q.kind, a)
			default:
				last[q.name] = a.res.Version // applied now, once
			}
		}

		// Every request is now in the log once or not at all, as its kind
		// says, and nothing more.
		logged, ops = logByRequest(t, srv, rm.ID)
		after := checkWhole(t, reqs, logged)
		want := 0
		for _, q := range reqs {
			end, inLog := after[q.name]
			if wantEnd, ok := last[q.name]; ok {
				want += len(q.want)
				if !inLog || end != wantEnd {
					t.Errorf("%s (%s): after the retries its ops end at seq %d (logged: %v), want %d", q.name, q.kind, end, inLog, wantEnd)
				}
			} else if inLog {
				t.Errorf("%s (%s): in the log after the retries, though no answer said so", q.name, q.kind)
			}
		}
		if len(ops) != want {
			t.Errorf("after the retries the log holds %d ops, want %d", len(ops), want)
		}
	})
}
