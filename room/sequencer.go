package room

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/liveshare/liveshare/graph"
	"github.com/liveshare/liveshare/store"
)

const (
	// maxGroupOps bounds the ops one group commit carries; requests past
	// it wait for the next commit.
	maxGroupOps = 10000
	// maxAttempts bounds how often one group is validated and committed
	// again after finding that another instance moved the room.
	maxAttempts = 20
)

// sequencer is a room's queue of work: writes to commit, and versions the
// room must catch up to. One goroutine at a time drains it (started when
// work arrives and none runs, ending when the queue is empty), so the room
// has one writer, which commits every write that queued while its previous
// commit was in flight as one group.
type sequencer struct {
	mu      sync.Mutex
	writes  []*request
	target  int64 // the highest version a sync asked the room to reach
	waiters []*syncWaiter
	running bool
	// working is set while the running goroutine holds work taken from
	// the queue (a group being committed, a catch-up).
	working bool
	// gone is set when the room leaves the manager (ErrDeleted, or
	// errEvicted): no new work is taken.
	gone error
}

// request is one Write waiting for its commit.
type request struct {
	w   Write
	raw []json.RawMessage
	// abandoned is set when the caller stopped waiting; a request not yet
	// taken into a group is then dropped.
	abandoned atomic.Bool
	done      chan struct{}
	res       WriteResult
	err       error
}

// answer records the request's outcome; release delivers it. A group's
// answers are delivered after its round ends, so that a caller who got its
// answer finds the room idle.
func (q *request) answer(res WriteResult, err error) {
	q.res, q.err = res, err
}

func (q *request) release() { close(q.done) }

type syncWaiter struct {
	version int64
	done    chan error // buffered: the sequencer never waits for the reader
}

// unavailable wraps err, a failure a retry may cure.
func unavailable(err error) error { return fmt.Errorf("%w: %w", ErrUnavailable, err) }

// Apply commits w's ops to the room: validated against the state they
// follow, committed to the store in one transaction with the writes queued
// beside it, and only then made visible and published. It returns a
// *graph.OpError for an invalid op, a *ConflictError for a stale
// BaseVersion, a *TooLargeError for a room that would outgrow its budget,
// store.ErrNotFound or ErrDeleted for a room that is gone, and an error
// wrapping ErrUnavailable when ctx ends first or the database fails; in
// every error case but the last nothing was applied, and in the last a
// retry with the same IdempotencyKey tells.
func (r *Room) Apply(ctx context.Context, w Write) (WriteResult, error) {
	if len(w.Ops) == 0 {
		return WriteResult{}, errors.New("apply to room: no ops")
	}
	// Encoding happens here, in the caller's goroutine, not in the
	// sequencer that every writer of the room waits on.
	raw := make([]json.RawMessage, len(w.Ops))
	for i := range w.Ops {
		b, err := graph.MarshalOp(&w.Ops[i])
		if err != nil {
			return WriteResult{}, fmt.Errorf("encode op %d for room %s: %w", i, r.id, err)
		}
		raw[i] = b
	}
	q := &request{w: w, raw: raw, done: make(chan struct{})}
	if err := r.enqueue(func(s *sequencer) { s.writes = append(s.writes, q) }); err != nil {
		return WriteResult{}, err
	}
	select {
	case <-q.done:
		return q.res, q.err
	case <-ctx.Done():
		q.abandoned.Store(true)
		return WriteResult{}, fmt.Errorf("room %s: waiting for the commit: %w", r.id, unavailable(ctx.Err()))
	}
}

// Sync returns once the room reached version (read from the database by the
// caller), catching up from the op log if it is behind.
func (r *Room) Sync(ctx context.Context, version int64) error {
	if r.Version() >= version {
		return nil
	}
	w := &syncWaiter{version: version, done: make(chan error, 1)}
	err := r.enqueue(func(s *sequencer) {
		s.target = max(s.target, version)
		s.waiters = append(s.waiters, w)
	})
	if err != nil {
		return err
	}
	select {
	case err := <-w.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("room %s: catching up to version %d: %w", r.id, version, unavailable(ctx.Err()))
	}
}

// RequestSync asks the room, without waiting, to catch up to version: a
// notification or a poll found the room moved by another instance.
func (r *Room) RequestSync(version int64) {
	if r.Version() >= version {
		return
	}
	_ = r.enqueue(func(s *sequencer) { s.target = max(s.target, version) })
}

// enqueue adds work under the sequencer's lock and starts its goroutine if
// none runs.
func (r *Room) enqueue(add func(*sequencer)) error {
	s := &r.seq
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone != nil {
		return s.gone
	}
	if !s.running {
		if !r.m.startWork() {
			return ErrClosed
		}
		s.running = true
		go r.runSequencer()
	}
	add(s)
	return nil
}

// leave makes the room refuse new work with err, answers what is queued
// with it, and reports whether the room was idle: no work running or
// queued. Eviction only uses an idle room (idleOnly); deletion always.
func (r *Room) leave(err error, idleOnly bool) bool {
	s := &r.seq
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone != nil {
		return false
	}
	busy := s.working || len(s.writes) > 0 || len(s.waiters) > 0
	if idleOnly && (busy || r.hub.count() > 0) {
		return false
	}
	s.gone = err
	for _, q := range s.writes {
		q.answer(WriteResult{}, err)
		q.release()
	}
	for _, w := range s.waiters {
		w.done <- err
	}
	s.writes, s.waiters = nil, nil
	return !busy
}

// runSequencer drains the room's queue; it ends when the queue is empty. The
// Manager's wait group counts it.
func (r *Room) runSequencer() {
	defer r.m.wg.Done()
	s := &r.seq
	for {
		s.mu.Lock()
		if s.gone != nil {
			s.running = false
			s.mu.Unlock()
			return
		}
		writes := takeGroup(&s.writes)
		waiters, target := s.waiters, s.target
		s.waiters = nil
		if len(writes) == 0 && len(waiters) == 0 && target <= r.Version() {
			s.running = false
			s.mu.Unlock()
			return
		}
		s.working = true
		s.mu.Unlock()
		r.touch(r.m.opts.Now())

		// The work has a deadline of its own: the group must not fail
		// because the request that happened to arrive first gave up.
		ctx, cancel := context.WithTimeout(context.Background(), r.m.opts.CommitTimeout)
		var err error
		if target > r.Version() {
			err = r.catchUp(ctx, target)
		}
		if len(writes) > 0 {
			r.commitGroup(ctx, writes)
		}
		cancel()
		s.mu.Lock()
		s.working = false
		s.mu.Unlock()
		for _, q := range writes {
			q.release()
		}

		if err != nil {
			// Syncs are not retried in a loop: the next read, poll or
			// notification asks again.
			r.m.log.Warn("room catch-up failed", "room_id", r.id, "version", r.Version(), "target", target, "err", err)
			s.mu.Lock()
			s.target = 0
			s.mu.Unlock()
		}
		var again []*syncWaiter
		for _, w := range waiters {
			switch {
			case err != nil:
				w.done <- err
			case r.Version() >= w.version:
				w.done <- nil
			default:
				again = append(again, w)
			}
		}
		if len(again) > 0 {
			_ = r.enqueue(func(s *sequencer) { s.waiters = append(s.waiters, again...) })
		}
	}
}

// takeGroup removes from queue the requests of the next group: the ones
// still waiting, up to maxGroupOps ops (at least one request). An audited
// write goes alone: its audit row may fail the transaction, and with it
// only that write.
func takeGroup(queue *[]*request) []*request {
	var group []*request
	ops, i := 0, 0
	for ; i < len(*queue); i++ {
		q := (*queue)[i]
		if q.abandoned.Load() {
			q.answer(WriteResult{}, context.Canceled) // nobody reads it
			q.release()
			continue
		}
		if len(group) > 0 && (ops+len(q.w.Ops) > maxGroupOps || q.w.Audit != nil) {
			break
		}
		group = append(group, q)
		ops += len(q.w.Ops)
		if q.w.Audit != nil {
			i++
			break
		}
	}
	*queue = slices.Clone((*queue)[i:])
	return group
}

// outcome is what the validation of a group decided for one request.
type outcome struct {
	q *request
	// accepted: committed with the group, its ops ending at version.
	accepted bool
	version  int64
	// replay: answered with res, an earlier result of its key; replayOf:
	// answered with the result of an accepted request of this group that
	// carried the same key.
	replay   *store.AppendResult
	replayOf *outcome
	// err: refused; definite once the state it was checked against is
	// known to be the database's.
	err error
}

// plan is a validated group.
type plan struct {
	from     int64 // the version the group follows
	to       int64
	elements int64
	outcomes []*outcome
	writes   []store.AppendWrite
}

// validate decides each request of the group against the state the
// accepted ones before it leave, on the room's graph in a Tx that is rolled
// back: the graph is unchanged when it returns. The sequencer alone changes
// the graph, so the state validated is the state applyCommitted applies to.
func (r *Room) validate(group []*request, keys map[string]store.AppendResult) *plan {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := &plan{from: r.version, to: r.version}
	x := r.g.Begin()
	defer x.Rollback()
	byKey := make(map[string]*outcome)
	budget := r.m.opts.StateBudget
	for _, q := range group {
		o := &outcome{q: q}
		p.outcomes = append(p.outcomes, o)
		key := q.w.IdempotencyKey
		if res, ok := keys[key]; ok && key != "" {
			o.replay = &res
			continue
		}
		if first, ok := byKey[key]; ok && key != "" {
			o.replayOf = first
			continue
		}
		if b := q.w.BaseVersion; b != nil && *b != p.to {
			o.err = &ConflictError{Current: p.to}
			continue
		}
		mark, before := x.Mark(), r.g.SizeBound()
		if err := x.Apply(q.w.Ops); err != nil {
			o.err = err
			continue
		}
		// A room already over budget (the budget was lowered) may still
		// shrink; it may not grow.
		if size := r.g.SizeBound(); budget > 0 && size > budget && size > before {
			x.RollbackTo(mark)
			o.err = &TooLargeError{Size: size, Budget: budget}
			continue
		}
		o.accepted = true
		p.to += int64(len(q.w.Ops))
		o.version = p.to
		if key != "" {
			byKey[key] = o
		}
		p.writes = append(p.writes, store.AppendWrite{Ops: q.raw, ClientID: q.w.ClientID, IdempotencyKey: key, Audit: q.w.Audit})
	}
	p.elements = int64(r.g.ElementCount())
	return p
}

// answer tells every request of a committed (or fully refused) plan its
// outcome.
func (p *plan) answer() {
	for _, o := range p.outcomes {
		switch {
		case o.accepted:
			o.q.answer(WriteResult{Version: o.version, Applied: len(o.q.w.Ops)}, nil)
		case o.replay != nil:
			o.q.answer(WriteResult{Version: o.replay.Version, Applied: o.replay.Applied, Replayed: true}, nil)
		case o.replayOf != nil:
			o.q.answer(WriteResult{Version: o.replayOf.version, Applied: len(o.replayOf.q.w.Ops), Replayed: true}, nil)
		default:
			o.q.answer(WriteResult{}, o.err)
		}
	}
}

func failAll(group []*request, err error) {
	for _, q := range group {
		q.answer(WriteResult{}, err)
	}
}

// commitGroup validates and commits one group, answering each request.
//
// Idempotency keys are not looked up first: nearly every key is new, and
// the commit refuses a key the room has recorded (ErrIdempotencyKeyUsed),
// changing nothing. So a group is validated as if its keys were new and
// committed in one round trip; only when the commit refuses a key, or a
// request with a key is refused (it may be a retry whose stored answer
// differs from a refusal now), are the keys looked up and the group
// validated again with their stored results.
func (r *Room) commitGroup(ctx context.Context, group []*request) {
	st := r.m.store
	lookUp, sharedChecked := false, false
	for attempt := 0; ; attempt++ {
		if attempt == maxAttempts {
			failAll(group, fmt.Errorf("room %s: another instance kept moving the room: %w", r.id, unavailable(errors.New("too many attempts"))))
			return
		}
		if r.m.opts.Shared {
			// A base version past ours: another instance moved the room.
			for _, q := range group {
				if b := q.w.BaseVersion; b != nil && *b > r.Version() {
					if err := r.catchUp(ctx, *b); err != nil {
						failAll(group, err)
						return
					}
					break
				}
			}
		}
		var keys []string
		for _, q := range group {
			if q.w.IdempotencyKey != "" {
				keys = append(keys, q.w.IdempotencyKey)
			}
		}
		var found map[string]store.AppendResult
		if len(keys) > 0 && lookUp {
			var err error
			if found, err = st.IdempotentResults(ctx, r.id, keys); err != nil {
				failAll(group, r.storeFailure(ctx, "look up idempotency keys", err))
				return
			}
		}
		p := r.validate(group, found)
		if len(keys) > 0 && !lookUp && refusesKeyed(p) {
			// A refused write may be the retry of one answered before:
			// the answer it gets is that one's, so look its key up.
			lookUp = true
			continue
		}
		if len(p.writes) == 0 {
			// Refusals are definite only against the database's state:
			// on an instance that shares the database, check it.
			if r.m.opts.Shared && !sharedChecked && refusesAny(p) {
				sharedChecked = true
				version, _, err := st.RoomVersion(ctx, r.id)
				if err != nil {
					failAll(group, r.storeFailure(ctx, "read the room's version", err))
					return
				}
				if version > r.Version() {
					if err := r.catchUp(ctx, version); err != nil {
						failAll(group, err)
						return
					}
					continue
				}
			}
			p.answer()
			return
		}
		start := time.Now()
		res, err := st.AppendOps(ctx, store.Append{RoomID: r.id, ExpectedVersion: p.from, Writes: p.writes, ElementCount: p.elements})
		var mismatch *store.VersionMismatchError
		switch {
		case err == nil:
			r.m.opts.Metrics.Committed(int(p.to-p.from), time.Since(start))
			r.applyCommitted(p, res.CreatedAt)
			p.answer()
			return
		case errors.As(err, &mismatch):
			if err := r.catchUp(ctx, mismatch.Current); err != nil {
				failAll(group, err)
				return
			}
		case errors.Is(err, store.ErrIdempotencyKeyUsed):
			// A key of the group was used before (the write is a retry),
			// or by a racing writer, which moved the room too: catching
			// up finds it, and the keys are looked up.
			lookUp = true
			if err := r.catchUp(ctx, 0); err != nil {
				failAll(group, err)
				return
			}
		default:
			failAll(group, r.storeFailure(ctx, "commit ops", err))
			return
		}
	}
}

// refusesKeyed reports whether p refuses a request that carries an
// idempotency key.
func refusesKeyed(p *plan) bool {
	for _, o := range p.outcomes {
		if o.err != nil && o.q.w.IdempotencyKey != "" {
			return true
		}
	}
	return false
}

func refusesAny(p *plan) bool {
	for _, o := range p.outcomes {
		if o.err != nil {
			return true
		}
	}
	return false
}

// storeFailure wraps a store error of the sequencer: a room the database no
// longer has is deleted here too; a deadline (also when the driver does
// not say so) or a database that cannot serve for now is unavailability.
func (r *Room) storeFailure(ctx context.Context, what string, err error) error {
	if errors.Is(err, store.ErrNotFound) {
		r.m.forgetDeleted(r)
		return fmt.Errorf("room %s: %w", r.id, ErrDeleted)
	}
	if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || store.IsUnavailable(err) {
		err = unavailable(err)
	}
	return fmt.Errorf("room %s: %s: %w", r.id, what, err)
}

// applyCommitted applies a committed plan's accepted writes to the graph,
// moves the version and publishes them.
func (r *Room) applyCommitted(p *plan, at time.Time) {
	b := Batch{RoomID: r.id, Version: p.to, Committed: time.Now()}
	b.Ops = make([]LoggedOp, 0, p.to-p.from)
	seq := p.from
	r.mu.Lock()
	for _, o := range p.outcomes {
		if !o.accepted {
			continue
		}
		if err := r.g.Apply(o.q.w.Ops); err != nil {
			// validate applied exactly these ops to exactly this state.
			panic(fmt.Sprintf("room %s: a validated write failed to apply: %v", r.id, err))
		}
		for i, op := range o.q.w.Ops {
			seq++
			b.Ops = append(b.Ops, LoggedOp{Seq: seq, Op: op, Raw: o.q.raw[i], ClientID: o.q.w.ClientID, CreatedAt: at})
		}
	}
	r.version = p.to
	r.markDirtyLocked(r.m.opts.Now())
	r.mu.Unlock()
	r.hub.publish(b)
	if ev := r.m.opts.Events; ev != nil {
		ev.Committed(r.id, p.to)
	}
	r.checkDue()
}

// catchUp applies and publishes the ops other instances committed after the
// room's version, until it reaches target (0: whatever the log holds). When
// those ops are pruned already, it reloads the room from its newest
// snapshot, which subscribers receive as a snapshot event.
func (r *Room) catchUp(ctx context.Context, target int64) error {
	st := r.m.store
	for {
		from := r.Version()
		recs, err := st.OpsSince(ctx, r.id, from, replayPage)
		if err != nil {
			return r.storeFailure(ctx, "read the op log", err)
		}
		if len(recs) > 0 && recs[0].Seq != from+1 {
			return r.reload(ctx)
		}
		if len(recs) == 0 {
			if target <= from {
				return nil
			}
			// Nothing logged after our version, yet the room may be past
			// it: the ops after it are pruned, or another instance
			// committed them after the log was read.
			version, prunedThrough, err := st.RoomVersion(ctx, r.id)
			if err != nil {
				return r.storeFailure(ctx, "read the room's version", err)
			}
			if prunedThrough > from {
				return r.reload(ctx)
			}
			if version > from {
				continue
			}
			return nil
		}
		ops, err := decodeLoggedOps(r.id, from, recs)
		if err != nil {
			return err
		}
		r.mu.Lock()
		for _, op := range ops {
			if err := r.g.Apply([]graph.Op{op.Op}); err != nil {
				r.mu.Unlock()
				return fmt.Errorf("room %s: replay logged op %d: %w", r.id, op.Seq, err)
			}
			r.version = op.Seq
		}
		r.markDirtyLocked(r.m.opts.Now())
		r.mu.Unlock()
		r.hub.publish(Batch{RoomID: r.id, Version: ops[len(ops)-1].Seq, Ops: ops, Committed: time.Now()})
		r.checkDue()
		if len(recs) < replayPage && r.Version() >= target {
			return nil
		}
	}
}

// reload replaces the room's state with its newest snapshot and the ops
// after it, for when the ops after the room's version are pruned (another
// instance snapshotted while this one fell far behind). Subscribers get the
// snapshot as a snapshot event, then the ops.
func (r *Room) reload(ctx context.Context) error {
	st, err := r.m.loadState(ctx, r.id, true)
	if err != nil {
		return err
	}
	if st.version <= r.Version() {
		return nil
	}
	r.mu.Lock()
	r.g, r.version = st.g, st.version
	r.snapVersion = max(r.snapVersion, st.snapshot.Version)
	r.markDirtyLocked(r.m.opts.Now())
	r.mu.Unlock()
	r.m.log.InfoContext(ctx, "room reloaded from its snapshot", "room_id", r.id, "snapshot_version", st.snapshot.Version, "version", st.version)
	r.hub.publishSnapshot(st.snapshot.Version, st.snapshotEvent)
	for ops := st.ops; len(ops) > 0; {
		n := min(len(ops), replayPage)
		r.hub.publish(Batch{RoomID: r.id, Version: ops[n-1].Seq, Ops: ops[:n], Committed: time.Now()})
		ops = ops[n:]
	}
	r.checkDue()
	return nil
}
