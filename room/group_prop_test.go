package room_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"pgregory.net/rapid"

	"github.com/liveshare/liveshare/graph"
	"github.com/liveshare/liveshare/room"
	"github.com/liveshare/liveshare/store"
	"github.com/liveshare/liveshare/store/storetest"
)

// groupCounter is the room.Store the grouped rooms commit through: the real
// store, counting the commits that carried more than one request, so that
// the property below is known to have exercised group commit. When hold is
// set, the next commit waits until it is closed: requests fired meanwhile
// queue up behind it and form one group.
type groupCounter struct {
	*store.Store
	multi atomic.Int64

	mu   sync.Mutex
	hold chan struct{}
}

func (c *groupCounter) AppendOps(ctx context.Context, a store.Append) (store.AppendResult, error) {
	c.mu.Lock()
	hold := c.hold
	c.hold = nil
	c.mu.Unlock()
	if hold != nil {
		<-hold
	}
	res, err := c.Store.AppendOps(ctx, a)
	if err == nil && len(a.Writes) > 1 {
		c.multi.Add(1)
	}
	return res, err
}

// holdNext makes the next commit wait for release, and returns a func
// that closes it.
func (c *groupCounter) holdNext() (release func()) {
	ch := make(chan struct{})
	c.mu.Lock()
	c.hold = ch
	c.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			c.hold = nil
			c.mu.Unlock()
			close(ch)
		})
	}
}

// A small id pool makes duplicate adds, updates of missing nodes, edges to
// missing nodes and cascades common, so that many requests are refused.
var (
	propNodes = []string{"a", "b", "c", "d", "e"}
	propEdges = []string{"e1", "e2", "e3"}
	propKeys  = []string{"k0", "k1", "k2", "k3"}
)

// genPropOp draws an op that is valid or not depending on the state it
// meets, which the concurrency of the test decides; fresh is an id no other
// op uses, for the adds that are always valid.
func genPropOp(t *rapid.T, fresh string) graph.Op {
	node := func() string { return rapid.SampledFrom(propNodes).Draw(t, "node") }
	switch rapid.IntRange(0, 12).Draw(t, "opkind") {
	case 0, 1, 2, 3:
		return graph.Op{Kind: graph.OpAddNode, Node: &graph.Node{ID: fresh, Kind: "table"}}
	case 4, 5:
		return graph.Op{Kind: graph.OpAddNode, Node: &graph.Node{ID: node(), Kind: "table", X: float64(rapid.IntRange(0, 9).Draw(t, "x"))}}
	case 6, 7:
		return graph.Op{Kind: graph.OpUpdateNode, ID: node(), Patch: json.RawMessage(fmt.Sprintf(`{"x":%d,"label":"l"}`, rapid.IntRange(0, 9).Draw(t, "x")))}
	case 8:
		return graph.Op{Kind: graph.OpRemoveNode, ID: node()}
	case 9, 10:
		return graph.Op{Kind: graph.OpAddEdge, Edge: &graph.Edge{ID: rapid.SampledFrom(propEdges).Draw(t, "edge"), Source: node(), Target: node()}}
	case 11:
		return graph.Op{Kind: graph.OpRemoveEdge, ID: rapid.SampledFrom(propEdges).Draw(t, "edge")}
	default:
		// Invalid whatever the state: an id outside the allowed alphabet.
		return graph.Op{Kind: graph.OpAddNode, Node: &graph.Node{ID: "bad id"}}
	}
}

// propRequest is one write of the property test and the answer it got.
type propRequest struct {
	round, index int
	instance     int // of the grouped rooms' instances, the one it is sent to
	w            room.Write
	res          room.WriteResult
	err          error
}

func (q *propRequest) String() string {
	base := "none"
	if q.w.BaseVersion != nil {
		base = fmt.Sprint(*q.w.BaseVersion)
	}
	ops, _ := json.Marshal(q.w.Ops)
	return fmt.Sprintf("request %d.%d to instance %d (key %q, base %s, %d ops %s)", q.round, q.index, q.instance, q.w.IdempotencyKey, base, len(q.w.Ops), ops)
}

// answerOf describes an answer by what a client can tell of it: the result,
// or the error's kind and its details.
func answerOf(res room.WriteResult, err error) string {
	var (
		opErr    *graph.OpError
		conflict *room.ConflictError
		tooLarge *room.TooLargeError
	)
	switch {
	case err == nil:
		return fmt.Sprintf("ok version %d applied %d replayed %v", res.Version, res.Applied, res.Replayed)
	case errors.As(err, &opErr):
		return "invalid: " + opErr.Error()
	case errors.As(err, &conflict):
		return fmt.Sprintf("conflict: current %d", conflict.Current)
	case errors.As(err, &tooLarge):
		return fmt.Sprintf("too large: size %d budget %d", tooLarge.Size, tooLarge.Budget)
	default:
		return "error: " + err.Error()
	}
}

// sequentialModel is what applying requests one by one must do, computed
// without a room: the state, the version, and the results recorded under
// idempotency keys, for a room with that state budget (0: none).
type sequentialModel struct {
	g       *graph.Graph
	version int64
	keys    map[string]room.WriteResult
	budget  int64
}

// answer is the answer a request gets when it is applied alone at the
// model's state, in the order a room decides: a used key answers its first
// result, then base_version, then the ops, then the budget (a room may
// shrink past it, never grow).
func (m *sequentialModel) answer(w room.Write) string {
	if res, ok := m.keys[w.IdempotencyKey]; ok && w.IdempotencyKey != "" {
		res.Replayed = true
		return answerOf(res, nil)
	}
	if w.BaseVersion != nil && *w.BaseVersion != m.version {
		return answerOf(room.WriteResult{}, &room.ConflictError{Current: m.version})
	}
	before := m.g.SizeBound()
	undo, err := m.g.ApplyUndoable(w.Ops)
	if err != nil {
		return answerOf(room.WriteResult{}, err)
	}
	size := m.g.SizeBound()
	undo()
	if m.budget > 0 && size > m.budget && size > before {
		return answerOf(room.WriteResult{}, &room.TooLargeError{Size: size, Budget: m.budget})
	}
	return answerOf(room.WriteResult{Version: m.version + int64(len(w.Ops)), Applied: len(w.Ops)}, nil)
}

// accept applies an accepted request to the model.
func (m *sequentialModel) accept(t *rapid.T, q *propRequest) {
	if err := m.g.Apply(q.w.Ops); err != nil {
		t.Fatalf("model: %v refused on replay: %v", q, err)
	}
	m.version += int64(len(q.w.Ops))
	if k := q.w.IdempotencyKey; k != "" {
		m.keys[k] = room.WriteResult{Version: m.version, Applied: len(q.w.Ops)}
	}
}

// publishedOps drains what sub has queued and returns the ops of its ops
// events, in the order received.
func publishedOps(t *rapid.T, sub *room.Subscription) []store.OpRecord {
	var out []store.OpRecord
	for {
		select {
		case m, ok := <-sub.C:
			if !ok {
				t.Fatalf("subscription ended: %s", sub.Reason())
			}
			if m.Event != room.EventOps {
				continue
			}
			var ev struct {
				Ops []struct {
					Seq      int64           `json:"seq"`
					Op       json.RawMessage `json:"op"`
					ClientID string          `json:"client_id"`
				} `json:"ops"`
			}
			if err := json.Unmarshal(m.Data, &ev); err != nil {
				t.Fatalf("ops event %s: %v", m.Data, err)
			}
			for _, op := range ev.Ops {
				out = append(out, store.OpRecord{Seq: op.Seq, Op: op.Op, ClientID: op.ClientID})
			}
		default:
			return out
		}
	}
}

// jsonEqual reports whether a and b are the same JSON value (PostgreSQL
// may store an op in another spelling).
func jsonEqual(a, b []byte) bool {
	var va, vb any
	return json.Unmarshal(a, &va) == nil && json.Unmarshal(b, &vb) == nil && reflect.DeepEqual(va, vb)
}

// TestPropGroupsEqualSequentialApplication is the property of issue 12's
// group commit, against a real Manager over a real store in both dialects:
// requests fired together (valid, invalid, with conflicting base versions,
// with idempotency keys used twice within a group and across groups, of
// mixed sizes) and committed in groups leave the same op log, the same state
// and the same answer per request as the same requests applied one by one,
// in commit order, to a fresh room; and subscribers see exactly that log.
//
// Commit order is observable for the accepted requests only (their
// versions). A refused or replayed request changed nothing, so where it
// stood in the order changes no other answer: the property holds iff each
// of them, applied alone at SOME point of its round among the accepted
// requests, gets the answer it got. The replay finds such a point for each
// (real time bounds it to its round: the rounds run one after the other),
// applies it there to the fresh room, and compares.
func TestPropGroupsEqualSequentialApplication(t *testing.T) {
	storetest.Dialects(t, func(t *testing.T, cfg store.Config) {
		ctx := context.Background()
		st := openStore(t, cfg)
		counter := &groupCounter{Store: st}
		var checks, requests, refused, replayed, tooLarge int
		rapid.Check(t, func(rt *rapid.T) {
			checks++
			// On PostgreSQL the room may also run as one of several
			// instances, which confirms refusals against the database, and
			// then the requests may be spread over two instances.
			shared := cfg.DatabaseURL != "" && rapid.Bool().Draw(rt, "shared")
			// Half the rooms have a state budget that the requests reach
			// (a node takes about 80 bytes): refusals past it, and removes
			// that shrink the room, happen in groups too.
			var budget int64
			if rapid.Bool().Draw(rt, "withbudget") {
				budget = int64(rapid.IntRange(300, 4000).Draw(rt, "budget"))
			}
			opts := room.Options{Shared: shared, StateBudget: budget, QueueSize: 4096}
			instances := []*room.Manager{room.NewManager(counter, opts)}
			if shared && rapid.Bool().Draw(rt, "twoinstances") {
				instances = append(instances, room.NewManager(counter, opts))
			}
			for _, m := range instances {
				defer m.Close()
			}
			grouped := instances[0]
			sequential := room.NewManager(st, room.Options{StateBudget: budget})
			defer sequential.Close()
			var groupedID, sequentialID string
			for _, id := range []*string{&groupedID, &sequentialID} {
				rm, err := st.CreateRoom(ctx, "prop")
				if err != nil {
					rt.Fatal(err)
				}
				*id = rm.ID
			}

			// A subscriber on every instance, from version 0: it must see
			// the log, each op once, in order, and nothing refused.
			watchers := make([]*room.Subscription, len(instances))
			for i, m := range instances {
				_, join, err := m.Subscribe(ctx, groupedID, "watcher")
				if err != nil || join.Version != 0 {
					rt.Fatalf("subscribe on instance %d: at version %d, %v", i, join.Version, err)
				}
				watchers[i] = join.Sub
			}

			// Fire the rounds: each round's requests are released together,
			// so that the sequencer takes them in groups.
			var rounds [][]*propRequest
			var keyed []*propRequest
			for r := range rapid.IntRange(1, 4).Draw(rt, "rounds") {
				startVersion, _, err := st.RoomVersion(ctx, groupedID)
				if err != nil {
					rt.Fatal(err)
				}
				var round []*propRequest
				for i := range rapid.IntRange(1, 10).Draw(rt, "requests") {
					q := &propRequest{round: r, index: i, instance: rapid.IntRange(0, len(instances)-1).Draw(rt, "instance")}
					if len(keyed) > 0 && rapid.IntRange(0, 5).Draw(rt, "retry") == 0 {
						// A client retrying an earlier request of this or an
						// earlier round, key and body alike.
						q.w = keyed[rapid.IntRange(0, len(keyed)-1).Draw(rt, "retried")].w
					} else {
						n := 1
						switch rapid.IntRange(0, 5).Draw(rt, "size") {
						case 0:
							n = rapid.IntRange(5, 20).Draw(rt, "large")
						case 1, 2:
							n = rapid.IntRange(2, 4).Draw(rt, "small")
						}
						// Half the requests are valid whatever the state
						// (but for their base version and key): fresh nodes
						// and updates of them.
						careful := rapid.Bool().Draw(rt, "careful")
						for j := range n {
							fresh := fmt.Sprintf("n%d_%d_%d", r, i, j)
							switch {
							case !careful:
								q.w.Ops = append(q.w.Ops, genPropOp(rt, fresh))
							case j > 0 && rapid.IntRange(0, 2).Draw(rt, "touch") == 0:
								q.w.Ops = append(q.w.Ops, graph.Op{Kind: graph.OpUpdateNode, ID: fmt.Sprintf("n%d_%d_0", r, i), Patch: json.RawMessage(fmt.Sprintf(`{"y":%d}`, j))})
							default:
								q.w.Ops = append(q.w.Ops, graph.Op{Kind: graph.OpAddNode, Node: &graph.Node{ID: fresh, Kind: "view"}})
							}
						}
						q.w.ClientID = fmt.Sprintf("c%d.%d", r, i)
						if rapid.IntRange(0, 4).Draw(rt, "withbase") == 0 {
							b := max(0, startVersion+int64(rapid.IntRange(-1, 4).Draw(rt, "base")))
							q.w.BaseVersion = &b
						}
						if rapid.IntRange(0, 2).Draw(rt, "withkey") == 0 {
							q.w.IdempotencyKey = rapid.SampledFrom(propKeys).Draw(rt, "key")
						}
					}
					if q.w.IdempotencyKey != "" {
						keyed = append(keyed, q)
					}
					round = append(round, q)
				}
				requests += len(round)
				// Either the requests meet the sequencer as they come, or
				// the round's first commit waits until every request of the
				// round was sent, so that the rest queue behind it.
				hold := rapid.Bool().Draw(rt, "hold")
				var releaseCommit func()
				if hold {
					releaseCommit = counter.holdNext()
				}
				release := make(chan struct{})
				var wg, sent sync.WaitGroup
				sent.Add(len(round))
				for _, q := range round {
					wg.Go(func() {
						<-release
						sent.Done()
						q.res, q.err = instances[q.instance].Apply(ctx, groupedID, q.w)
					})
				}
				close(release)
				if hold {
					sent.Wait()
					// Sent is not yet queued: let the senders run on. How
					// many queue in time decides only how groups form.
					for range 10 {
						runtime.Gosched()
					}
					releaseCommit()
				}
				wg.Wait()
				for _, q := range round {
					if a := answerOf(q.res, q.err); strings.HasPrefix(a, "error: ") {
						rt.Fatalf("%v: unexpected %s", q, a)
					}
				}
				rounds = append(rounds, round)
			}

			// The accepted requests' versions must tile 1..version: that is
			// the commit order.
			g, err := grouped.Fresh(ctx, groupedID)
			if err != nil {
				rt.Fatal(err)
			}
			groupedState, groupedVersion := g.State()
			var next int64 = 1
			accepted := make([][]*propRequest, len(rounds))
			for r, round := range rounds {
				for _, q := range round {
					if q.err == nil && !q.res.Replayed {
						accepted[r] = append(accepted[r], q)
					}
				}
				slices.SortFunc(accepted[r], func(a, b *propRequest) int { return int(a.res.Version - b.res.Version) })
				for _, q := range accepted[r] {
					if first := q.res.Version - int64(q.res.Applied) + 1; first != next || q.res.Applied != len(q.w.Ops) {
						rt.Fatalf("%v answered version %d applied %d: its ops would start at seq %d, want %d", q, q.res.Version, q.res.Applied, first, next)
					}
					next = q.res.Version + 1
				}
			}
			if groupedVersion != next-1 {
				rt.Fatalf("room at version %d, the accepted requests end at %d", groupedVersion, next-1)
			}

			// Apply the same requests one by one to a fresh room, in commit
			// order, each refused or replayed one where it gets its answer.
			model := &sequentialModel{g: graph.New(), keys: make(map[string]room.WriteResult), budget: budget}
			apply := func(q *propRequest) {
				res, err := sequential.Apply(ctx, sequentialID, q.w)
				if got, want := answerOf(res, err), answerOf(q.res, q.err); got != want {
					rt.Fatalf("%v: one by one it answers %q, in a group it answered %q", q, got, want)
				}
			}
			for r, round := range rounds {
				var pending []*propRequest
				for _, q := range round {
					if q.err != nil || q.res.Replayed {
						pending = append(pending, q)
					}
					if q.err != nil {
						refused++
					}
					var tl *room.TooLargeError
					if errors.As(q.err, &tl) {
						tooLarge++
					}
					if q.res.Replayed {
						replayed++
					}
				}
				tried := make(map[*propRequest][]string)
				place := func() {
					pending = slices.DeleteFunc(pending, func(q *propRequest) bool {
						a := model.answer(q.w)
						if a != answerOf(q.res, q.err) {
							tried[q] = append(tried[q], fmt.Sprintf("at version %d: %s", model.version, a))
							return false
						}
						apply(q)
						return true
					})
				}
				for _, q := range accepted[r] {
					place()
					if got, want := model.answer(q.w), answerOf(q.res, q.err); got != want {
						rt.Fatalf("%v: accepted in a group (%s), but one by one at version %d it gets %q", q, want, model.version, got)
					}
					apply(q)
					model.accept(rt, q)
				}
				place()
				for _, q := range pending {
					rt.Fatalf("%v answered %q in a group, which no point of its round gives: %v",
						q, answerOf(q.res, q.err), tried[q])
				}
			}

			// Same log, same state, same version; and the log alone
			// reproduces the state.
			groupedLog, err := st.OpsSince(ctx, groupedID, 0, 0)
			if err != nil {
				rt.Fatal(err)
			}
			sequentialLog, err := st.OpsSince(ctx, sequentialID, 0, 0)
			if err != nil {
				rt.Fatal(err)
			}
			if len(groupedLog) != len(sequentialLog) || int64(len(groupedLog)) != groupedVersion {
				rt.Fatalf("grouped log has %d ops, one by one %d, version %d", len(groupedLog), len(sequentialLog), groupedVersion)
			}
			for i, op := range groupedLog {
				s := sequentialLog[i]
				if op.Seq != int64(i+1) || op.Seq != s.Seq || !bytes.Equal(op.Op, s.Op) || op.ClientID != s.ClientID {
					rt.Fatalf("log differs at %d: grouped seq %d %s (%s), one by one seq %d %s (%s)",
						i, op.Seq, op.Op, op.ClientID, s.Seq, s.Op, s.ClientID)
				}
			}
			for i, m := range instances {
				// Caught up with what the other instance committed.
				if _, err := m.Fresh(ctx, groupedID); err != nil {
					rt.Fatal(err)
				}
				got := publishedOps(rt, watchers[i])
				if len(got) != len(groupedLog) {
					seqs := make([]int64, len(got))
					for j, op := range got {
						seqs[j] = op.Seq
					}
					rt.Fatalf("instance %d of %d (shared %v) published %d ops, the log holds %d; published seqs %v",
						i, len(instances), shared, len(got), len(groupedLog), seqs)
				}
				for j, op := range got {
					l := groupedLog[j]
					if op.Seq != l.Seq || !jsonEqual(op.Op, l.Op) || op.ClientID != l.ClientID {
						rt.Fatalf("instance %d published seq %d %s (%s) where the log holds seq %d %s (%s)",
							i, op.Seq, op.Op, op.ClientID, l.Seq, l.Op, l.ClientID)
					}
				}
			}
			s, err := sequential.Get(ctx, sequentialID)
			if err != nil {
				rt.Fatal(err)
			}
			sequentialState, sequentialVersion := s.State()
			if sequentialVersion != groupedVersion || model.version != groupedVersion {
				rt.Fatalf("versions: grouped %d, one by one %d, model %d", groupedVersion, sequentialVersion, model.version)
			}
			if !groupedState.Equal(sequentialState) || !groupedState.Equal(model.g.State()) {
				rt.Fatalf("states differ:\ngrouped     %+v\none by one  %+v\nmodel       %+v", groupedState, sequentialState, model.g.State())
			}
			reloaded := room.NewManager(st, room.Options{})
			defer reloaded.Close()
			rl, err := reloaded.Get(ctx, groupedID)
			if err != nil {
				rt.Fatal(err)
			}
			if state, version := rl.State(); version != groupedVersion || !state.Equal(groupedState) {
				rt.Fatalf("the grouped room loaded from its log is at version %d with %+v, live it was at %d with %+v",
					version, state, groupedVersion, groupedState)
			}
		})
		if t.Failed() {
			return
		}
		// Without groups of several requests the property says nothing
		// about group commit.
		multi := counter.multi.Load()
		t.Logf("%d checks, %d requests: %d refused (%d over budget), %d replayed; %d commits carried several requests",
			checks, requests, refused, tooLarge, replayed, multi)
		if multi == 0 {
			t.Fatal("no commit carried more than one request: the requests never formed a group")
		}
	})
}
