package handlers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

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

// streams serves GET /rooms/{room}/events. Each stream is served by one
// goroutine alone: it writes the start (snapshot or replay), then takes the
// live queue, heartbeats and the end of the stream, writing every batch
// with one flush (sseWriter). Over HTTP/1.1 the stream takes its connection
// over from net/http and that goroutine is its own (takeover.go);
// otherwise it is the request's. The position is read by us and replayed
// from our op log.
type streams struct {
	cfg       StreamConfig
	rooms     *room.Manager
	store     *store.Store
	snapshots *snapshot.Registry

	chunks *sync.Pool     // the write buffers of taken-over streams (connSink)
	taken  sync.WaitGroup // the streams that took their connection over
	// cut ends when WaitStreams gives up waiting: the taken-over streams'
	// connections close. Each give-up cuts the streams open then.
	cutMu  sync.Mutex
	cut    context.Context
	cutAll context.CancelFunc
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
	s := &streams{cfg: cfg, rooms: rooms, store: st, snapshots: snaps, chunks: newChunkPool()}
	s.cut, s.cutAll = context.WithCancel(context.Background())
	return s
}

// cutContext is the context whose end cuts the taken-over streams open now.
func (s *streams) cutContext() context.Context {
	s.cutMu.Lock()
	defer s.cutMu.Unlock()
	return s.cut
}

// cutOpen closes the connections of the taken-over streams open now.
func (s *streams) cutOpen() {
	s.cutMu.Lock()
	defer s.cutMu.Unlock()
	s.cutAll()
	s.cut, s.cutAll = context.WithCancel(context.Background())
}

// WaitStreams waits until every event stream that took its connection over
// from net/http has ended: http.Server.Shutdown does not know of them.
// Call it after Shutdown, once StreamConfig.Done is closed (the streams end
// on it) and no request comes in any more. When ctx ends first, the
// streams' connections are closed, the streams are waited for, and the
// error says so.
func (a *API) WaitStreams(ctx context.Context) error {
	s := a.streams
	done := make(chan struct{})
	go func() {
		s.taken.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.cutOpen()
	<-done
	return fmt.Errorf("event streams did not end in time; their connections were closed: %w", context.Cause(ctx))
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
	defer afterResponse(r.Context(), func() { a.watchers.remove(roomID, changed) })
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
	var (
		rm   *room.Room
		join room.Join
	)
	onOwnStack(func() { rm, join, err = s.rooms.Subscribe(r.Context(), roomIDFrom(r), name) })
	if err != nil {
		writeError(w, r, err)
		return
	}

	log := loggerFrom(r.Context()).With("room_id", rm.ID(), "subscriber", join.Sub.User.ID)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no")
	st := &stream{s: s, rm: rm, join: join, pos: pos, log: log, auth: sa}
	if canTakeOver(w, r) {
		conn, err := takeOver(w, s.chunks)
		if err == nil {
			reqCtx := r.Context()
			s.taken.Add(1)
			handOff(reqCtx, func() { s.serveTaken(reqCtx, st, conn) }, s.taken.Done)
			return
		}
		log.Warn("event stream served through net/http", "err", err)
	}
	st.w = newSSEWriter(newResponseSink(w), s.cfg.WriteTimeout, s.cfg.Retry, s.cfg.Metrics)
	w.WriteHeader(http.StatusOK)
	st.serve(r.Context())
}

// serveTaken serves a stream on the connection it took over, on the
// goroutine requestContext starts once the handler returned. The
// request's context ends when the handler returns: the stream's keeps its
// values and ends when the client closes the connection (a goroutine waits
// for that), when the stream ends, or when WaitStreams gives up waiting.
func (s *streams) serveTaken(reqCtx context.Context, p *stream, conn *connSink) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(reqCtx))
	defer cancel()
	stopCut := context.AfterFunc(s.cutContext(), func() { _ = conn.conn.Close() })
	defer stopCut()
	clean := false
	closed := make(chan struct{})
	defer func() {
		// Also on a panic: the connection closes, which ends the goroutine
		// waiting for the client.
		conn.end(clean, s.cfg.WriteTimeout)
		<-closed
		takenOver(reqCtx).bytes = conn.bytes
	}()
	go func() {
		defer close(closed)
		defer cancel()
		conn.awaitClose()
	}()
	p.w = newSSEWriter(conn, s.cfg.WriteTimeout, s.cfg.Retry, s.cfg.Metrics)
	p.serve(ctx)
	// A stream the server ended (shutdown, room deleted, token expired)
	// ends its body; one whose client left or stopped taking writes does
	// not.
	clean = p.w.err == nil && ctx.Err() == nil
}

// serve sends the stream from its first bytes to its end, and logs both.
func (p *stream) serve(ctx context.Context) {
	defer p.join.Sub.Close()
	start := time.Now()
	p.s.cfg.Metrics.StreamOpened()
	defer p.s.cfg.Metrics.StreamClosed()
	p.log.Info("stream started", "position", p.pos, "version", p.join.Version, "name", p.join.Sub.User.Name)
	if err := p.w.flush(); err == nil { // the first bytes go at once
		p.run(ctx)
	} else {
		p.reason = "write failed"
	}
	reason := p.reason
	if reason == "" {
		reason = "client gone"
	}
	p.log.Info("stream ended", "duration", time.Since(start), "events", p.w.written, "reason", reason)
}

// onOwnStack runs f on a goroutine of its own and returns when f has.
// Database calls (SQLite's above all) grow a goroutine's stack to tens of
// KiB, and a goroutine keeps its stack for its life: run on a stream's
// goroutine, the subscription and the start would leave every idle stream
// that much larger (docs/BENCHMARKS.md).
// A panic in f is raised again on the caller's goroutine, where the
// recoverer middleware sees it.
func onOwnStack(f func()) {
	done := make(chan struct{})
	var panicked any
	go func() {
		defer close(done)
		defer func() { panicked = recover() }()
		f()
	}()
	<-done
	if panicked != nil {
		panic(panicked)
	}
}

// stream feeds one connection: the start (snapshot or replay), then the
// live queue, presence, heartbeats, and the end of the stream.
type stream struct {
	s    *streams
	rm   *room.Room
	join room.Join
	w    *sseWriter
	pos  int64
	log  *slog.Logger
	auth *streamAuth // nil: the stream never ends for want of a role

	presenceSeen int64           // the presence change last sent
	lastID       int64           // the stream's position: the id of the last event with one
	deletedSent  bool            // room_deleted went out
	reason       string          // why the stream ended
	taken        []*room.Message // the batch being written, given back with Sent after its flush
	merge        []*room.Message // consecutive ops events to be written as one
}

// run serves the stream until it ends; it returns when ctx ends, the
// stream fails or it is ended (reason says why).
func (p *stream) run(ctx context.Context) {
	var err error
	onOwnStack(func() { err = p.start(ctx) })
	if err != nil {
		if ctx.Err() == nil && !errors.Is(err, errStreamWrite) {
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
	var expiredC, recheckC <-chan time.Time
	var changedC <-chan struct{}
	if p.auth != nil {
		expiry := time.NewTimer(time.Until(p.auth.expires))
		defer expiry.Stop()
		recheck := time.NewTicker(p.auth.recheck)
		defer recheck.Stop()
		expiredC, recheckC, changedC = expiry.C, recheck.C, p.auth.changed
	}
	// Pacing: after a batch the stream does not listen to its queue for
	// the room's flush gap, so that what the hub queues meanwhile neither
	// wakes it nor goes out in writes of its own (subC is nil meanwhile).
	subC := p.join.Sub.C
	pace := time.NewTimer(maxFlushGap)
	pace.Stop()
	defer pace.Stop()
	var paceC <-chan time.Time
	// presenceC, while not nil, is closed at the next presence change:
	// the stream asks the hub again only then, not once per event.
	var presenceC <-chan struct{}
	for p.reason == "" {
		if throttleC == nil && presenceC == nil {
			seq, changed := p.join.Sub.PresenceChanged()
			if seq != p.presenceSeen {
				throttle.Reset(p.sendPresence())
				throttleC = throttle.C
				continue
			}
			presenceC = changed
		}
		select {
		case <-ctx.Done():
			return
		case <-p.s.cfg.Done:
			p.stop("shutdown")
		case <-heartbeat.C:
			p.w.comment("ping")
			p.flush()
		case <-expiredC:
			p.endAuth("token expired")
		case <-changedC:
			if !p.stillAllowed(ctx) {
				p.endAuth("role taken away")
			}
		case <-recheckC:
			if !p.stillAllowed(ctx) {
				p.endAuth("role taken away")
			}
		case <-presenceC:
			presenceC = nil // sent at the top of the loop
		case <-throttleC:
			throttleC = nil // changes meanwhile are sent at the top of the loop
		case m, ok := <-subC:
			p.deliver(ctx, m, ok)
			if gap := p.flushGap(); gap > 0 && p.reason == "" {
				pace.Reset(gap)
				subC, paceC = nil, pace.C
			}
		case <-paceC:
			subC, paceC = p.join.Sub.C, nil
		}
	}
}

// Pacing: a stream of a room with n local subscribers takes its queue at
// most once per n × flushGapPerSubscriber (up to maxFlushGap). Every batch
// is a wake-up of the stream's goroutine and a write(2); in a crowded room
// every publish makes all n streams runnable at once, and the request that
// posts the next op waits behind them for a core (1,000 subscribers at 170
// events/s are 170,000 wake-ups and writes a second). Paced, the events
// that arrive in the gap wake nobody and go out in the next batch's one
// write. The gap keeps a room's streams to about 20,000 batches a second:
// 1,000 subscribers wait 50 ms, 100 wait 5 ms, 10 half a millisecond; the
// queue's bound (256 events) still allows 5,000 events/s at the longest
// gap. Measured with ssebench in docs/BENCHMARKS.md.
const (
	flushGapPerSubscriber = 50 * time.Microsecond
	maxFlushGap           = 50 * time.Millisecond
)

// flushGap is how long the stream leaves its queue alone after a flush.
func (p *stream) flushGap() time.Duration {
	return min(time.Duration(p.rm.LocalSubscribers())*flushGapPerSubscriber, maxFlushGap)
}

// deliver writes m and every message queued behind it as one batch, one
// flush: consecutive ops events merged into one event (up to
// maxMergedMessages). ok false means the hub ended the subscription.
func (p *stream) deliver(ctx context.Context, m *room.Message, ok bool) {
	const maxBatchBytes = 1 << 20 // a batch larger than this is flushed before more is taken
	size := int64(0)
	for ok {
		p.taken = append(p.taken, m)
		size += m.Size()
		if err := p.take(ctx, m); err != nil {
			p.stop("replay failed")
			break
		}
		if size >= maxBatchBytes {
			break
		}
		select {
		case m, ok = <-p.join.Sub.C:
			continue
		default:
		}
		break
	}
	p.writeMerged()
	p.flush()
	for i, m := range p.taken {
		p.join.Sub.Sent(m)
		p.taken[i] = nil
	}
	p.taken = p.taken[:0]
	if !ok && p.reason == "" {
		p.finish(p.join.Sub.Reason())
	}
}

// take writes one message of a batch (ops events wait in p.merge for the
// ops events behind them).
func (p *stream) take(ctx context.Context, m *room.Message) error {
	if m.Seq >= 0 && m.Seq <= p.lastID {
		return nil // the snapshot the stream started from already holds it
	}
	if m.Event == room.EventOps && m.First <= p.lastID {
		// Partly in the start snapshot (taken by another instance
		// mid-batch): send the rest from the log.
		p.writeMerged()
		return p.replay(ctx, p.lastID, m.Seq)
	}
	if m.Event == room.EventOps {
		p.merge = append(p.merge, m)
		p.lastID = m.Seq
		p.w.committedAt(m.Committed)
		if len(p.merge) == maxMergedMessages {
			p.writeMerged()
		}
		return nil
	}
	p.writeMerged()
	p.deletedSent = p.deletedSent || m.Event == room.EventRoomDeleted
	if m.Seq >= 0 {
		p.lastID = m.Seq
	}
	if m.Frame != nil {
		p.w.frame(m.Event, m.Frame)
	} else {
		p.send(m.Event, m.Seq, m.Data)
	}
	p.w.committedAt(m.Committed)
	return nil
}

// writeMerged writes the ops events waiting in p.merge as one ops event:
// the shared frame of a lone event, or the shared entries of several laid
// end to end, never copied.
func (p *stream) writeMerged() {
	switch len(p.merge) {
	case 0:
		return
	case 1:
		if m := p.merge[0]; m.Frame != nil {
			p.w.frame(room.EventOps, m.Frame)
			p.merge[0], p.merge = nil, p.merge[:0]
			return
		}
	}
	last := p.merge[len(p.merge)-1].Seq
	parts := make([][]byte, 0, 2*len(p.merge)+1)
	for i, m := range p.merge {
		if i > 0 {
			parts = append(parts, comma)
		}
		parts = append(parts, m.Entries)
	}
	parts = append(parts, room.OpsTail)
	p.w.event(room.EventOps, last, room.AppendOpsHead(nil, last), parts...)
	clear(p.merge)
	p.merge = p.merge[:0]
}

var comma = []byte(",")

// flush sends what was written since the last flush; a failed write ends
// the stream.
func (p *stream) flush() {
	if err := p.w.flush(); err != nil && p.reason == "" {
		p.stop("write failed: " + err.Error())
	}
}

// errStreamWrite: the client stopped taking the stream's writes.
var errStreamWrite = errors.New("event stream: write failed")

// start sends where the subscriber begins: the ops after its position from
// the op log when the log still holds them, otherwise the room's newest
// stored snapshot and the ops after it, up to the version it joined at.
func (p *stream) start(ctx context.Context) error {
	j := p.join
	_, prunedThrough, err := p.s.store.RoomVersion(ctx, p.rm.ID())
	if err != nil {
		return fmt.Errorf("read room: %w", err)
	}
	p.lastID = -1
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
// returns its version. The event's data is shared by every stream that
// starts from the snapshot and written as it is.
func (p *stream) sendSnapshot(ctx context.Context) (int64, error) {
	data, version, err := p.s.snapshots.StartEvent(ctx, p.rm.ID())
	if err != nil {
		return 0, err
	}
	p.send(room.EventSnapshot, version, data)
	if err := p.w.flush(); err != nil {
		return 0, fmt.Errorf("%w: %w", errStreamWrite, err)
	}
	return version, nil
}

// replay sends the logged ops with since < seq <= upto: consecutive ops as
// ops events of at most replayEventBytes, a reset op as a reset event, one
// flush per page read. When the log no longer holds the ops after since (a
// snapshot pruned it meanwhile), it sends the newest snapshot and goes on
// after it.
func (p *stream) replay(ctx context.Context, since, upto int64) error {
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
		size := 0
		for _, rec := range recs {
			if rec.Seq > upto {
				break // later ops come from the live queue
			}
			since = rec.Seq
			if bytes.HasPrefix(rec.Op, resetPrefix) {
				p.writeMerged()
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
				p.writeMerged()
				size = 0
			}
			p.merge = append(p.merge, &room.Message{Event: room.EventOps, Seq: rec.Seq, Entries: entry})
			p.lastID = rec.Seq
			size += len(entry)
		}
		p.writeMerged()
		if err := p.w.flush(); err != nil {
			return fmt.Errorf("%w: %w", errStreamWrite, err)
		}
	}
	return nil
}

// resetPrefix starts every logged reset op: the room encodes ops with
// encoding/json, which writes the "op" field first.
var resetPrefix = []byte(`{"op":"reset"`)

// sendPresence sends the room's presence if it changed since the last one,
// and returns how long to wait before the next.
func (p *stream) sendPresence() time.Duration {
	seq, users, data := p.join.Sub.Presence()
	if seq != p.presenceSeen && data != nil {
		p.presenceSeen = seq
		p.send(room.EventPresence, -1, data)
		p.flush()
	}
	return presenceInterval + time.Duration(users)*presencePerUser
}

// send writes one event. Events without a position of their own repeat the
// stream's position: every event has an id: line, and an empty one would
// erase the client's Last-Event-ID.
func (p *stream) send(event string, seq int64, data []byte) {
	if seq >= 0 {
		p.lastID = seq
	}
	p.w.event(event, p.lastID, data)
}

// finish ends the stream after the hub closed the subscription, what was
// queued having been written. A room_deleted event that did not fit a full
// queue is sent here.
func (p *stream) finish(reason string) {
	if reason == "room_deleted" && !p.deletedSent {
		p.send(room.EventRoomDeleted, -1, room.DeletedData(p.rm.ID()))
		p.flush()
	}
	p.stop(reason)
}

// stillAllowed reports whether the stream's caller may still read the
// room. A check that fails (the database is away) keeps the stream: the
// next one decides.
func (p *stream) stillAllowed(ctx context.Context) bool {
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
func (p *stream) endAuth(why string) {
	p.send(EventAuthExpired, -1, []byte("{}"))
	p.flush()
	p.stop(why)
}

// EventAuthExpired ends a stream whose caller may no longer read the room.
const EventAuthExpired = "auth_expired"

func (p *stream) stop(reason string) {
	if p.reason == "" {
		p.reason = reason
	}
}
