package handlers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/r3labs/sse/v2"

	"github.com/liveshare/liveshare/auth"
	"github.com/liveshare/liveshare/graph"
	"github.com/liveshare/liveshare/metrics"
	"github.com/liveshare/liveshare/room"
	"github.com/liveshare/liveshare/snapshot"
	"github.com/liveshare/liveshare/store"
)

// StreamConfig tunes the event streams.
type StreamConfig struct {
	// Heartbeat is how often an idle stream gets a ": ping" comment.
	Heartbeat time.Duration
	// WriteTimeout bounds each write to a subscriber; a subscriber that
	// does not take a write within it is disconnected.
	WriteTimeout time.Duration
	// Retry is the reconnection delay advised to clients (the retry: field).
	Retry time.Duration
	// Done is closed when every stream must end (graceful shutdown).
	Done <-chan struct{}
	// Metrics records open streams, events sent, slow subscribers and the
	// delay from commit to write; nil records nothing.
	Metrics *metrics.Metrics
}

const (
	maxPresenceName = 128
	// replayPageSize is how many logged ops are read per query when
	// replaying; replayEventBytes caps the ops one replayed event carries.
	replayPageSize   = 1000
	replayEventBytes = 1 << 20
	// maxMergedMessages bounds how many queued ops events are merged into one.
	maxMergedMessages = 64
	// presenceInterval, plus presencePerUser for each subscriber of the
	// room, is the least time between two presence events on one stream:
	// joins and leaves in between are folded into one. A presence event
	// lists everyone, so in a room of n subscribers a join storm would
	// otherwise cost n² users on the wire per change; this way each stream
	// carries at most about 50 users' worth of presence per millisecond.
	presenceInterval = 100 * time.Millisecond
	presencePerUser  = 2 * time.Millisecond
	// sseStreamBuffer is r3labs' per-stream buffer; our subscription queue
	// in room is the real bound, so this only smooths the hand-over.
	sseStreamBuffer = 16
)

// streams serves GET /rooms/{room}/events. r3labs/sse is used as the SSE
// writer only: one r3labs stream per connection (so its blocking fan-out
// never spans two clients), AutoReplay and AutoStream off, the position read
// and removed by us and replayed from our op log.
type streams struct {
	cfg       StreamConfig
	rooms     *room.Manager
	store     *store.Store
	snapshots *snapshot.Registry
	srv       *sse.Server
	ready     sync.Map // stream id → chan struct{}, closed once r3labs registered the subscriber

}

func newStreams(cfg StreamConfig, rooms *room.Manager, st *store.Store, snaps *snapshot.Registry) *streams {
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 15 * time.Second
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if cfg.Retry <= 0 {
		cfg.Retry = 2 * time.Second
	}
	s := &streams{cfg: cfg, rooms: rooms, store: st, snapshots: snaps}
	srv := sse.New()
	srv.AutoReplay = false
	srv.AutoStream = false
	srv.SplitData = true
	srv.BufferSize = sseStreamBuffer
	srv.Headers = map[string]string{"X-Accel-Buffering": "no"}
	srv.OnSubscribe = func(id string, _ *sse.Subscriber) {
		if c, ok := s.ready.Load(id); ok {
			close(c.(chan struct{}))
		}
	}
	s.srv = srv
	return s
}

// parsePosition reads the resume position from Last-Event-ID or
// ?last_event_id; -1 means none.
func parsePosition(r *http.Request) (int64, error) {
	raw := r.Header.Get("Last-Event-ID")
	if raw == "" {
		raw = r.URL.Query().Get("last_event_id")
	}
	if raw == "" {
		return -1, nil
	}
	v, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || v < 0 || !allDigits(raw) {
		return 0, problemf(http.StatusBadRequest, "invalid_last_event_id", "last event id %q is not a non-negative integer", truncate(raw, 64))
	}
	return v, nil
}

// allDigits reports whether s is made of ASCII digits only: ParseInt also
// takes a sign, which no event id has.
func allDigits(s string) bool {
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// streamAuth ends a stream when its caller may no longer read the room:
// at the token's expiry, and when a member change (or the periodic check
// behind the change notices) finds the caller's role gone.
type streamAuth struct {
	expires time.Time       // the token's expiry
	changed <-chan struct{} // signalled when the room's members changed
	recheck time.Duration   // how often to check without a signal
	// allowed reports whether the caller may still read the room.
	allowed func(ctx context.Context) (bool, error)
}

// serveEvents serves GET /rooms/{room}/events for the request's caller.
func (a *API) serveEvents(w http.ResponseWriter, r *http.Request) {
	// A bad position is named first, as before a name (serve reads it).
	if _, err := parsePosition(r); err != nil {
		writeError(w, r, err)
		return
	}
	name := r.URL.Query().Get("name")
	if utf8.RuneCountInString(name) > maxPresenceName {
		writeProblem(w, r, problemf(http.StatusBadRequest, "invalid_request", "name is longer than %d characters", maxPresenceName))
		return
	}
	if !a.auth.jwt() {
		a.streams.serve(w, r, name, nil)
		return
	}
	// Presence names come from the token: nobody can pose as another.
	p, roomID := callerFrom(r.Context()).p, roomIDFrom(r)
	name = p.Name
	if utf8.RuneCountInString(name) > maxPresenceName {
		name = string([]rune(name)[:maxPresenceName])
	}
	changed := a.watchers.add(roomID)
	defer a.watchers.remove(roomID, changed)
	a.streams.serve(w, r, name, &streamAuth{
		expires: p.Expires, changed: changed, recheck: a.members.ttl,
		allowed: func(ctx context.Context) (bool, error) {
			role, err := a.roleAtLeast(ctx, p, roomID, auth.Viewer)
			return role >= auth.Viewer, err
		},
	})
}

// serve streams the room's events; sa, when not nil, ends the stream when
// its caller may no longer read the room.
func (s *streams) serve(w http.ResponseWriter, r *http.Request, name string, sa *streamAuth) {
	pos, err := parsePosition(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if r.Method == http.MethodHead {
		// The headers a stream would start with, and no stream.
		if _, _, err := s.store.RoomVersion(r.Context(), roomIDFrom(r)); err != nil {
			writeError(w, r, err)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
		w.WriteHeader(http.StatusOK)
		return
	}
	rm, join, err := s.rooms.Subscribe(r.Context(), roomIDFrom(r), name)
	if err != nil {
		writeError(w, r, err)
		return
	}
	defer join.Sub.Close()

	log := loggerFrom(r.Context()).With("room_id", rm.ID(), "subscriber", join.Sub.User.ID)
	start := time.Now()
	s.cfg.Metrics.StreamOpened()
	defer s.cfg.Metrics.StreamClosed()

	// Teardown order, which leaks no goroutine: cancel ctx (r3labs'
	// per-connection goroutine then deregisters the subscriber, which ends
	// ServeHTTP), remove the stream (which unblocks a pending Publish and
	// ends r3labs' stream goroutine), then wait for our pump.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	streamID := join.Sub.User.ID
	ready := make(chan struct{})
	s.ready.Store(streamID, ready)
	defer s.ready.Delete(streamID)
	s.srv.CreateStream(streamID)

	dw := newDeadlineWriter(w, s.cfg.WriteTimeout, cancel)
	dw.metrics = s.cfg.Metrics
	p := &pump{s: s, rm: rm, join: join, streamID: streamID, dw: dw, ready: ready, pos: pos, cancel: cancel, log: log, auth: sa}
	var wg sync.WaitGroup
	wg.Go(func() { p.run(ctx) })

	r2 := r.Clone(ctx)
	r2.Header.Del("Last-Event-ID")
	q := r2.URL.Query()
	q.Set("stream", streamID)
	r2.URL.RawQuery = q.Encode()
	log.Info("stream started", "position", pos, "version", join.Version, "name", join.Sub.User.Name)
	s.srv.ServeHTTP(dw, r2)

	cancel()
	s.srv.RemoveStream(streamID)
	wg.Wait()
	reason := p.reason
	if reason == "" {
		reason = "client gone"
	}
	log.Info("stream ended", "duration", time.Since(start), "events", p.sent, "reason", reason)
}

// pump feeds one connection: the start (snapshot or replay), then the live
// queue, heartbeats, and the end of the stream.
type pump struct {
	s        *streams
	rm       *room.Room
	join     room.Join
	streamID string
	dw       *deadlineWriter
	ready    chan struct{}
	pos      int64
	cancel   context.CancelFunc
	log      *slog.Logger
	auth     *streamAuth // nil: the stream never ends for want of a role

	sent         int64  // events handed to the writer
	presenceSeen int64  // the presence change last sent
	lastID       int64  // the stream's position: the id of the last event with one
	retried      bool   // the retry advice went out
	deletedSent  bool   // room_deleted went out
	reason       string // why the stream ended, set before cancel
}

func (p *pump) run(ctx context.Context) {
	select {
	case <-p.ready:
	case <-ctx.Done():
		return
	}
	if err := p.start(ctx); err != nil {
		if ctx.Err() == nil {
			p.log.Warn("stream start failed", "err", err)
		}
		p.stop("start failed")
		return
	}
	heartbeat := time.NewTicker(p.s.cfg.Heartbeat)
	defer heartbeat.Stop()
	// The presence throttle: after a presence event the stream does not
	// even listen for changes until the timer fires (throttleC is nil while
	// no timer runs), so a join storm wakes each stream once a period.
	throttle := time.NewTimer(presenceInterval)
	throttle.Stop()
	var throttleC <-chan time.Time
	var held *room.Message
	var expiredC, recheckC <-chan time.Time
	var changedC <-chan struct{}
	if p.auth != nil {
		expiry := time.NewTimer(time.Until(p.auth.expires))
		defer expiry.Stop()
		recheck := time.NewTicker(p.auth.recheck)
		defer recheck.Stop()
		expiredC, recheckC, changedC = expiry.C, recheck.C, p.auth.changed
	}
	for {
		var m *room.Message
		var ok bool
		if held != nil {
			m, ok, held = held, true, nil
		} else {
			var presenceC <-chan struct{}
			if throttleC == nil {
				seq, changed := p.join.Sub.PresenceChanged()
				if seq != p.presenceSeen {
					throttle.Reset(p.sendPresence())
					throttleC = throttle.C
				} else {
					presenceC = changed
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-p.s.cfg.Done:
				p.stop("shutdown")
				return
			case <-heartbeat.C:
				p.publish(&sse.Event{Comment: []byte("ping")})
				continue
			case <-expiredC:
				p.endAuth(ctx, "token expired")
				return
			case <-changedC:
				if !p.stillAllowed(ctx) {
					p.endAuth(ctx, "role taken away")
					return
				}
				continue
			case <-recheckC:
				if !p.stillAllowed(ctx) {
					p.endAuth(ctx, "role taken away")
					return
				}
				continue
			case <-presenceC:
				continue // sent at the top of the loop
			case <-throttleC:
				throttleC = nil // changes meanwhile are sent at the top of the loop
				continue
			case m, ok = <-p.join.Sub.C:
			}
		}
		if !ok {
			p.finish(ctx, p.join.Sub.Reason())
			return
		}
		if m.Seq >= 0 && m.Seq <= p.lastID {
			continue // the snapshot the stream started from already holds it
		}
		if m.Event == room.EventOps && m.First <= p.lastID {
			// Partly in the start snapshot (taken by another instance
			// mid-batch): send the rest from the log.
			if err := p.replay(ctx, p.lastID, m.Seq); err != nil {
				p.stop("replay failed")
				return
			}
			continue
		}
		if m.Event != room.EventOps {
			p.deletedSent = p.deletedSent || m.Event == room.EventRoomDeleted
			p.send(m.Event, m.Seq, m.Data)
			p.dw.expect(p.sent, m.Committed)
			continue
		}
		// Merge the ops events already queued behind this one.
		batch := []*room.Message{m}
	merge:
		for len(batch) < maxMergedMessages {
			select {
			case next, ok := <-p.join.Sub.C:
				if !ok {
					break merge // seen again, closed, on the next turn
				}
				if next.Event != room.EventOps {
					held = next
					break merge
				}
				batch = append(batch, next)
			default:
				break merge
			}
		}
		p.send(room.EventOps, batch[len(batch)-1].Seq, room.OpsData(batch))
		p.dw.expect(p.sent, batch[0].Committed)
	}
}

// start sends where the subscriber begins: the ops after its position from
// the op log when the log still holds them, otherwise the room's newest
// stored snapshot and the ops after it, up to the version it joined at.
func (p *pump) start(ctx context.Context) error {
	j := p.join
	_, prunedThrough, err := p.s.store.RoomVersion(ctx, p.rm.ID())
	if err != nil {
		return fmt.Errorf("read room: %w", err)
	}
	if p.pos >= 0 && p.pos <= j.Version && p.pos >= prunedThrough {
		p.lastID = p.pos
		return p.replay(ctx, p.pos, j.Version)
	}
	version, err := p.sendSnapshot(ctx)
	if err != nil {
		return err
	}
	if version < j.Version {
		return p.replay(ctx, version, j.Version)
	}
	return nil
}

// sendSnapshot sends the room's newest stored snapshot that verifies, and
// returns its version.
func (p *pump) sendSnapshot(ctx context.Context) (int64, error) {
	data, version, err := p.s.snapshots.StartEvent(ctx, p.rm.ID())
	if err != nil {
		return 0, err
	}
	p.send(room.EventSnapshot, version, data)
	return version, nil
}

// replay sends the logged ops with since < seq <= upto: consecutive ops as
// ops events of at most replayEventBytes, a reset op as a reset event. When
// the log no longer holds the ops after since (a snapshot pruned it
// meanwhile), it sends the newest snapshot and goes on after it.
func (p *pump) replay(ctx context.Context, since, upto int64) error {
	for since < upto {
		recs, err := p.s.store.OpsSince(ctx, p.rm.ID(), since, replayPageSize)
		if err != nil {
			return fmt.Errorf("replay ops after %d: %w", since, err)
		}
		if len(recs) == 0 || recs[0].Seq != since+1 {
			version, err := p.sendSnapshot(ctx)
			if err != nil {
				return fmt.Errorf("replay ops after %d, pruned: %w", since, err)
			}
			if version <= since {
				return fmt.Errorf("replay ops after %d: the log does not continue there", since)
			}
			since = version
			continue
		}
		msgs := make([]*room.Message, 0, len(recs))
		size := 0
		flush := func() {
			if len(msgs) > 0 {
				p.send(room.EventOps, msgs[len(msgs)-1].Seq, room.OpsData(msgs))
				msgs, size = msgs[:0], 0
			}
		}
		for _, rec := range recs {
			if rec.Seq > upto {
				break // later ops come from the live queue
			}
			since = rec.Seq
			if bytes.HasPrefix(rec.Op, resetPrefix) {
				flush()
				// Every subscriber reconnecting after a restore replays it:
				// its event is built once and shared.
				data, err := p.s.snapshots.SharedEvent(p.rm.ID(), snapshot.ResetEventKey(rec.Seq), func() ([]byte, error) {
					op, err := graph.ParseOp(rec.Op)
					if err != nil {
						return nil, fmt.Errorf("decode logged reset %d: %w", rec.Seq, err)
					}
					return room.ResetData(room.LoggedOp{Seq: rec.Seq, Op: op, CreatedAt: rec.CreatedAt})
				})
				if err != nil {
					return fmt.Errorf("reset event %d: %w", rec.Seq, err)
				}
				p.send(room.EventReset, rec.Seq, data)
				continue
			}
			entry, err := room.OpEntry(rec.Seq, rec.Op, rec.ClientID)
			if err != nil {
				return fmt.Errorf("encode logged op %d: %w", rec.Seq, err)
			}
			if size+len(entry) > replayEventBytes {
				flush()
			}
			msgs = append(msgs, &room.Message{Event: room.EventOps, Seq: rec.Seq, Entries: entry})
			size += len(entry)
		}
		flush()
	}
	return nil
}

// resetPrefix starts every logged reset op: the room encodes ops with
// encoding/json, which writes the "op" field first.
var resetPrefix = []byte(`{"op":"reset"`)

// sendPresence sends the room's presence if it changed since the last one,
// and returns how long to wait before the next.
func (p *pump) sendPresence() time.Duration {
	seq, users, data := p.join.Sub.Presence()
	if seq != p.presenceSeen && data != nil {
		p.presenceSeen = seq
		p.send(room.EventPresence, -1, data)
	}
	return presenceInterval + time.Duration(users)*presencePerUser
}

// send hands one event to the writer. Events without a position of their
// own repeat the stream's position: r3labs always writes an id: line, and an
// empty one would erase the client's Last-Event-ID.
func (p *pump) send(event string, seq int64, data []byte) {
	if seq >= 0 {
		p.lastID = seq
	}
	ev := &sse.Event{Event: []byte(event), Data: data}
	if p.lastID >= 0 {
		ev.ID = []byte(strconv.FormatInt(p.lastID, 10))
	}
	p.publish(ev)
}

func (p *pump) publish(ev *sse.Event) {
	if !p.retried {
		ev.Retry = []byte(strconv.FormatInt(p.s.cfg.Retry.Milliseconds(), 10))
		if len(ev.Data) == 0 {
			ev.Retry = nil // a comment-only event carries no fields
		} else {
			p.retried = true
		}
	}
	p.sent++
	if len(ev.Event) > 0 {
		p.s.cfg.Metrics.EventSent(string(ev.Event))
	}
	p.s.srv.Publish(p.streamID, ev)
}

// finish ends the stream after the hub closed the subscription: it lets
// what is queued reach the client, then cancels. A room_deleted event that
// did not fit a full queue is sent here.
func (p *pump) finish(ctx context.Context, reason string) {
	if reason == "room_deleted" && !p.deletedSent {
		p.send(room.EventRoomDeleted, -1, room.DeletedData(p.rm.ID()))
	}
	p.dw.waitFlushed(ctx, p.sent, p.s.cfg.WriteTimeout)
	p.stop(reason)
}

// stillAllowed reports whether the stream's caller may still read the
// room. A check that fails (the database is away) keeps the stream: the
// next one decides.
func (p *pump) stillAllowed(ctx context.Context) bool {
	ok, err := p.auth.allowed(ctx)
	if err != nil {
		if ctx.Err() == nil {
			p.log.Warn("stream access check failed", "err", err)
		}
		return true
	}
	return ok
}

// endAuth sends auth_expired and ends the stream: the client gets a fresh
// token (POST /session) and resumes with Last-Event-ID.
func (p *pump) endAuth(ctx context.Context, why string) {
	p.send(EventAuthExpired, -1, []byte("{}"))
	p.dw.waitFlushed(ctx, p.sent, p.s.cfg.WriteTimeout)
	p.stop(why)
}

// EventAuthExpired ends a stream whose caller may no longer read the room.
const EventAuthExpired = "auth_expired"

func (p *pump) stop(reason string) {
	p.reason = reason
	p.cancel()
}

// deadlineWriter gives every write to the subscriber a deadline; the first
// failed write ends the stream (r3labs ignores write errors).
type deadlineWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	onFail  func()

	failed  atomic.Bool
	flushes atomic.Int64
	flushed chan struct{} // signalled after each flush

	// metrics gets the delay from commit to flush of each live event:
	// pending holds, in order, the events awaiting their flush.
	metrics   *metrics.Metrics
	pendingMu sync.Mutex
	pending   []pendingWrite
}

// pendingWrite is a live event handed to the writer: the n-th event of the
// stream, carrying ops committed at committed.
type pendingWrite struct {
	n         int64
	committed time.Time
}

// expect records that the stream's n-th event carries ops committed at
// committed; its flush observes the delay. r3labs flushes once for the
// headers and once per event, so event n is written by flush n+1.
func (d *deadlineWriter) expect(n int64, committed time.Time) {
	if d.metrics == nil || committed.IsZero() {
		return
	}
	d.pendingMu.Lock()
	defer d.pendingMu.Unlock()
	if d.flushes.Load() >= n+1 { // flushed already
		d.metrics.CommitToWrite(time.Since(committed))
		return
	}
	d.pending = append(d.pending, pendingWrite{n: n, committed: committed})
}

// observeFlushed observes the pending events that the flushes so far wrote.
func (d *deadlineWriter) observeFlushed() {
	if d.metrics == nil {
		return
	}
	d.pendingMu.Lock()
	defer d.pendingMu.Unlock()
	flushed, now, i := d.flushes.Load(), time.Now(), 0
	for ; i < len(d.pending) && d.pending[i].n+1 <= flushed; i++ {
		d.metrics.CommitToWrite(now.Sub(d.pending[i].committed))
	}
	d.pending = d.pending[i:]
}

func newDeadlineWriter(w http.ResponseWriter, timeout time.Duration, onFail func()) *deadlineWriter {
	// The controller works on the innermost writer: middleware wrappers
	// offer Flush without an error, which would hide a failed flush.
	inner := w
	for {
		u, ok := inner.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			break
		}
		inner = u.Unwrap()
	}
	return &deadlineWriter{ResponseWriter: w, rc: http.NewResponseController(inner), timeout: timeout, onFail: onFail, flushed: make(chan struct{}, 1)}
}

func (d *deadlineWriter) fail(err error) {
	if d.failed.CompareAndSwap(false, true) {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			d.metrics.SlowSubscriber(metrics.SlowWriteTimeout)
		}
		d.onFail()
	}
}

func (d *deadlineWriter) Write(b []byte) (int, error) {
	if d.failed.Load() {
		return 0, errStreamFailed
	}
	_ = d.rc.SetWriteDeadline(time.Now().Add(d.timeout))
	n, err := d.ResponseWriter.Write(b)
	if err != nil {
		d.fail(err)
	}
	return n, err
}

// Flush is called by r3labs after the headers and after each event.
func (d *deadlineWriter) Flush() {
	if d.failed.Load() {
		return
	}
	_ = d.rc.SetWriteDeadline(time.Now().Add(d.timeout))
	if err := d.rc.Flush(); err != nil {
		d.fail(err)
		return
	}
	d.flushes.Add(1)
	d.observeFlushed()
	select {
	case d.flushed <- struct{}{}:
	default:
	}
}

func (d *deadlineWriter) Unwrap() http.ResponseWriter { return d.ResponseWriter }

// waitFlushed waits until events have been flushed (plus the headers'
// flush), the stream failed, ctx ended, or timeout passed.
func (d *deadlineWriter) waitFlushed(ctx context.Context, events int64, timeout time.Duration) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for d.flushes.Load() < events+1 && !d.failed.Load() {
		select {
		case <-d.flushed:
		case <-ctx.Done():
			return
		case <-t.C:
			return
		}
	}
}

var errStreamFailed = errors.New("event stream: an earlier write failed")
