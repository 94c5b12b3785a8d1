package room

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/r3labs/sse/v2"

	"github.com/liveshare/liveshare/graph"
	"github.com/liveshare/liveshare/internal/sseframe"
	"github.com/liveshare/liveshare/metrics"
)

// Event names on the wire (DESIGN.md section 5).
const (
	EventSnapshot    = "snapshot"
	EventOps         = "ops"
	EventReset       = "reset"
	EventPresence    = "presence"
	EventRoomDeleted = "room_deleted"
)

// Message is one event for a subscriber, encoded once and shared by all
// subscribers of the room: nobody may modify its byte slices.
type Message struct {
	Event string
	// Seq is the event's id: the last seq it carries, or -1 when the event
	// has no position of its own (presence, room_deleted).
	Seq int64
	// Data is the event's JSON, one line.
	Data []byte
	// Frame, when not nil, is the whole event as it goes on the wire
	// (sseframe), framed once for every stream; Data and Entries are
	// slices of it. Events without one are framed piece by piece.
	Frame []byte
	// First is, for ops events, the seq of the first op.
	First int64
	// Entries is, for ops events, the comma-separated JSON of the ops
	// array's elements, so that a subscriber that is behind can merge
	// consecutive ops events into one.
	Entries []byte
	// Committed is when the ops it carries were committed (zero for
	// events that carry none).
	Committed time.Time
}

// Size is how many bytes the message holds: what it counts against a
// subscriber's queue.
func (m *Message) Size() int64 {
	return int64(max(len(m.Frame), len(m.Data)+len(m.Entries)))
}

// OpsData builds the data of one ops event from consecutive ops messages
// (whose Data may be nil: Entries is enough).
func OpsData(msgs []*Message) []byte {
	if len(msgs) == 1 && msgs[0].Data != nil {
		return msgs[0].Data
	}
	n := 0
	for _, m := range msgs {
		n += len(m.Entries) + 1
	}
	entries := make([]byte, 0, n)
	for i, m := range msgs {
		if i > 0 {
			entries = append(entries, ',')
		}
		entries = append(entries, m.Entries...)
	}
	return buildOps(msgs[len(msgs)-1].Seq, entries)
}

// AppendOpsHead appends what comes before the entries in the data of an
// ops event whose last seq is version; OpsTail comes after them. A stream
// that merges queued ops events writes head, entries and tail as they are,
// without copying the shared entries into one slice.
func AppendOpsHead(dst []byte, version int64) []byte {
	dst = append(dst, `{"version":`...)
	dst = strconv.AppendInt(dst, version, 10)
	return append(dst, `,"ops":[`...)
}

// OpsTail ends the data of an ops event.
var OpsTail = []byte("]}")

// opsMessage builds the ops event of consecutive ops first..last, framed
// once: its Data and Entries are slices of its Frame.
func opsMessage(first, last int64, entries []byte, committed time.Time) *Message {
	id := strconv.AppendInt(nil, last, 10)
	head := AppendOpsHead(nil, last)
	dataLen := len(head) + len(entries) + len(OpsTail)
	ev := &sse.Event{ID: id, Event: []byte(EventOps)}
	frame := sseframe.Append(make([]byte, 0, dataLen+len(id)+32), ev, head, entries, OpsTail)
	start := len("id: ") + len(id) + len("\ndata: ")
	if len(frame) != start+dataLen+len("\nevent: ops\n\n") {
		// A newline in the data split it over data: lines (never for
		// encoding/json's output): keep the data whole, frame per stream.
		return &Message{Event: EventOps, Seq: last, First: first, Entries: entries, Data: buildOps(last, entries), Committed: committed}
	}
	data := frame[start : start+dataLen]
	return &Message{Event: EventOps, Seq: last, First: first, Frame: frame, Data: data,
		Entries: data[len(head) : len(head)+len(entries)], Committed: committed}
}

// User is one subscriber as presence shows it.
type User struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	ConnectedAt time.Time `json:"connected_at"`
	// PresenceID is the id the subscriber's client chose for itself
	// (?presence_id=), so that a client can tell itself apart in the list;
	// empty when it chose none.
	PresenceID string `json:"presence_id,omitempty"`
	// Owner is who may set State (the token's subject, "" in open mode):
	// never sent, but written to the presence rows so that another
	// instance can check a PATCH as this one would.
	Owner string `json:"-"`
	// State is what the subscriber last said about itself with PATCH
	// …/presence/{presence_id} (nil until then).
	State *PresenceState `json:"state,omitempty"`
}

// Subscription is one subscriber's bounded queue of messages. C is closed
// when the subscription ends: the subscriber fell behind (Reason
// "slow"), the room was deleted ("room_deleted"), or Close was called.
//
// The queue is bounded in events (its capacity) and in bytes: every
// message counts against DefaultQueueBytes from when it is queued until
// the subscriber, having written it, calls Sent for it. The messages are
// shared by every subscriber, so the bound is what one slow subscriber
// can keep alive.
//
// Presence does not go through C: it is state, not history, so a
// subscriber waits on PresenceChanged and reads the latest with Presence. A
// storm of joins in a room of thousands then costs each subscriber one
// presence event now and then, not thousands in its queue, and costs the
// room one channel close per change, not one signal per subscriber.
type Subscription struct {
	C    <-chan *Message
	User User

	c      chan *Message
	hub    *hub
	queued atomic.Int64 // bytes queued or being written
	reason atomic.Value // string
	once   sync.Once
	// owner is who may set this subscriber's state (the token's subject;
	// empty in open mode), and stateAt when it was last set (the
	// throttle); both under the hub's lock.
	owner   string
	stateAt time.Time
}

// PresenceChanged returns the number of the current presence and a channel
// closed at the next change.
func (s *Subscription) PresenceChanged() (seq int64, changed <-chan struct{}) {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	return s.hub.presenceSeq, s.hub.presenceCh
}

// Presence returns the room's presence event data, encoded once per change
// and shared, with its number and how many users are present.
func (s *Subscription) Presence() (seq int64, users int, data []byte) {
	return s.hub.presenceEvent()
}

// Sent tells the hub that the subscriber is done with m (written or
// skipped): its bytes no longer count against the queue's bound.
func (s *Subscription) Sent(m *Message) {
	s.queued.Add(-m.Size())
}

// Reason says why C was closed ("" while it is open).
func (s *Subscription) Reason() string {
	r, _ := s.reason.Load().(string)
	return r
}

// Close ends the subscription and tells the others this user left. It is
// safe to call more than once and after the hub ended it.
func (s *Subscription) Close() {
	s.hub.remove(s, "closed")
}

// end closes the queue once; the hub's lock is held.
func (s *Subscription) end(reason string) {
	s.once.Do(func() {
		s.reason.Store(reason)
		close(s.c)
	})
}

// hub fans a room's events out to its subscribers without ever waiting for
// one: a subscriber whose queue is full is cut off (it resumes with
// Last-Event-ID) and counted.
type hub struct {
	roomID     string
	queueSize  int
	queueBytes int64
	metrics    *metrics.Metrics
	sink       PresenceSink // nil: presence stays in this process

	mu   sync.Mutex
	subs map[*Subscription]struct{}
	// nsubs is len(subs), readable without mu: every stream of the room
	// reads it per batch to pace its flushes (Room.LocalSubscribers).
	nsubs atomic.Int64
	// order holds subs oldest first, as presence lists them, kept in
	// order as they come and go (a newcomer is nearly always the
	// youngest), so that a presence event, which lists the oldest
	// MaxPresenceUsers, costs the same in a room of any size.
	order  []*Subscription
	closed bool
	// version is the last seq published: a subscriber registered now
	// receives every op after it.
	version int64

	// Presence: the change counter, a channel closed at the next change,
	// the last join and leave, and the event data encoded for the current
	// counter (nil until someone asks).
	presenceSeq    int64
	presenceCh     chan struct{}
	joined, left   *User
	presenceCached []byte
	// remote are the room's subscribers through other instances, oldest
	// first.
	remote []User
}

// PresenceSink learns who joins and leaves a room through this instance,
// so that other instances can list them; cluster.Cluster is one.
type PresenceSink interface {
	Joined(roomID string, u User)
	Left(roomID string, u User)
}

func newHub(roomID string, queueSize int, m *metrics.Metrics, sink PresenceSink) *hub {
	return &hub{roomID: roomID, queueSize: queueSize, queueBytes: DefaultQueueBytes, metrics: m, sink: sink, subs: make(map[*Subscription]struct{}),
		presenceCh: make(chan struct{})}
}

// add registers a subscriber named name and tells everyone, including the
// newcomer, who is present. It returns the subscription and the version it
// starts after, or nil when the hub is closed.
func (h *hub) add(name string, now time.Time, as presenceAs) (*Subscription, int64) {
	var b [8]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	if name == "" {
		name = "anonymous-" + id[:6]
	}
	c := make(chan *Message, h.queueSize)
	s := &Subscription{C: c, c: c, hub: h, owner: as.owner,
		User: User{ID: id, Name: name, ConnectedAt: now.UTC(), PresenceID: as.id, Owner: as.owner}}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, 0
	}
	h.subs[s] = struct{}{}
	h.nsubs.Store(int64(len(h.subs)))
	i, _ := slices.BinarySearchFunc(h.order, s, func(a, b *Subscription) int { return compareUsers(a.User, b.User) })
	h.order = slices.Insert(h.order, i, s)
	h.presenceLocked(&s.User, nil)
	if h.sink != nil {
		h.sink.Joined(h.roomID, s.User)
	}
	return s, h.version
}

// remove ends s and, if it was still subscribed, tells the others it left.
func (h *hub) remove(s *Subscription, reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.removeLocked(s, reason)
}

func (h *hub) removeLocked(s *Subscription, reason string) {
	if _, ok := h.subs[s]; !ok {
		return
	}
	delete(h.subs, s)
	h.nsubs.Store(int64(len(h.subs)))
	if i, ok := slices.BinarySearchFunc(h.order, s, func(a, b *Subscription) int { return compareUsers(a.User, b.User) }); ok {
		h.order = slices.Delete(h.order, i, i+1)
	}
	s.end(reason)
	h.presenceLocked(nil, &s.User)
	if h.sink != nil {
		h.sink.Left(h.roomID, s.User)
	}
}

// users lists who is subscribed, oldest first.
func (h *hub) users() []User {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.usersLocked()
}

// local lists the subscribers through this instance.
func (h *hub) local() []User {
	h.mu.Lock()
	defer h.mu.Unlock()
	users := make([]User, 0, len(h.subs))
	for s := range h.subs {
		users = append(users, s.User)
	}
	return users
}

func (h *hub) usersLocked() []User {
	return h.oldestLocked(len(h.order) + len(h.remote))
}

// oldestLocked lists the n oldest users, local and remote: a merge of two
// lists already in order.
func (h *hub) oldestLocked(n int) []User {
	n = min(n, len(h.order)+len(h.remote))
	users := make([]User, 0, n)
	i, j := 0, 0
	for len(users) < n {
		if j == len(h.remote) || (i < len(h.order) && compareUsers(h.order[i].User, h.remote[j]) <= 0) {
			users = append(users, h.order[i].User)
			i++
		} else {
			users = append(users, h.remote[j])
			j++
		}
	}
	return users
}

// SortUsers sorts users oldest first (by id among equals), the order
// presence lists them in.
func SortUsers(users []User) {
	slices.SortFunc(users, compareUsers)
}

func compareUsers(a, b User) int {
	if c := a.ConnectedAt.Compare(b.ConnectedAt); c != 0 {
		return c
	}
	return cmp.Compare(a.ID, b.ID)
}

// count returns how many subscribers the room has through this instance.
func (h *hub) count() int { return int(h.nsubs.Load()) }

// setRemote replaces the room's subscribers through other instances and
// wakes the streams when they changed, naming one who joined or left.
func (h *hub) setRemote(users []User) {
	h.mu.Lock()
	defer h.mu.Unlock()
	old := make(map[string]User, len(h.remote))
	for _, u := range h.remote {
		old[u.ID] = u
	}
	var joined, left *User
	changed := len(users) != len(h.remote)
	for i := range users {
		prev, ok := old[users[i].ID]
		if !ok {
			joined, changed = &users[i], true
		} else if !prev.State.Equal(users[i].State) {
			changed = true
		}
		delete(old, users[i].ID)
	}
	for _, u := range old {
		left = &u
		break
	}
	if !changed {
		return
	}
	h.remote = slices.Clone(users)
	SortUsers(h.remote)
	h.presenceLocked(joined, left)
}

// MaxPresenceUsers bounds the users a presence event lists (the oldest
// first); count says how many are present, and GET …/presence lists all.
// Without the bound every change in a room of n subscribers would put n
// users on each of n streams.
const MaxPresenceUsers = 100

type presenceData struct {
	Users  []User `json:"users"`
	Count  int    `json:"count"`
	Joined *User  `json:"joined"`
	Left   *User  `json:"left"`
}

// presenceLocked records a join or leave and wakes the subscribers.
func (h *hub) presenceLocked(joined, left *User) {
	h.presenceSeq++
	h.joined, h.left = joined, left
	h.presenceCached = nil
	close(h.presenceCh)
	h.presenceCh = make(chan struct{})
}

func (h *hub) presenceEvent() (int64, int, []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.presenceCached == nil {
		users := h.oldestLocked(MaxPresenceUsers)
		data, err := json.Marshal(presenceData{Users: users, Count: len(h.order) + len(h.remote),
			Joined: h.joined, Left: h.left})
		if err != nil {
			return h.presenceSeq, len(h.subs), nil // cannot happen: the types marshal
		}
		h.presenceCached = data
	}
	return h.presenceSeq, len(h.subs), h.presenceCached
}

// DefaultQueueBytes bounds the bytes queued for one subscriber (and being
// written to it): room for several of the largest ops events a request
// makes (a 1 MiB body). An event alone in a queue is taken whatever its
// size, so that a large snapshot or reset event reaches a reader that keeps
// up.
const DefaultQueueBytes = 8 << 20

// broadcastLocked queues m to every subscriber without blocking; a full
// queue, in events or bytes, cuts its subscriber off. Presence changes that
// cut-offs cause are sent after the loop so that the set is not changed
// while it is walked.
func (h *hub) broadcastLocked(m *Message) {
	var slow []*Subscription
	size := m.Size()
	for s := range h.subs {
		if q := s.queued.Add(size); q > h.queueBytes && q > size {
			s.queued.Add(-size)
			slow = append(slow, s)
			continue
		}
		select {
		case s.c <- m:
		default:
			s.queued.Add(-size)
			slow = append(slow, s)
		}
	}
	for _, s := range slow {
		h.metrics.SlowSubscriber(metrics.SlowQueueFull)
		h.removeLocked(s, "slow")
	}
}

// opEntry is one op in an ops event.
type opEntry struct {
	Seq      int64           `json:"seq"`
	Op       json.RawMessage `json:"op"`
	ClientID string          `json:"client_id"`
}

// OpEntry encodes one logged op as an element of an ops event's ops array;
// raw is the op as committed.
func OpEntry(seq int64, raw json.RawMessage, clientID string) ([]byte, error) {
	return json.Marshal(opEntry{Seq: seq, Op: raw, ClientID: clientID})
}

// DeletedData is the data of the room_deleted event.
func DeletedData(roomID string) []byte {
	data, _ := json.Marshal(map[string]string{"room_id": roomID}) // a map of strings always marshals
	return data
}

// publish sends a committed batch: its ops as one ops event, except that a
// reset op (a restore) goes out as a reset event of its own, in order.
func (h *hub) publish(b Batch) {
	var msgs []*Message
	var entries []byte
	var first, last int64
	flush := func() {
		if len(entries) > 0 {
			msgs = append(msgs, opsMessage(first, last, entries, b.Committed))
			entries = nil
		}
	}
	for _, op := range b.Ops {
		if op.Op.Kind == graph.OpReset {
			flush()
			data, err := ResetData(op)
			if err != nil {
				return // cannot happen: the state marshals
			}
			msgs = append(msgs, &Message{Event: EventReset, Seq: op.Seq, Data: data, Committed: b.Committed}) // large: framed piece by piece
			continue
		}
		enc, err := OpEntry(op.Seq, op.Raw, op.ClientID)
		if err != nil {
			return // cannot happen: Raw is JSON the room committed
		}
		if len(entries) > 0 {
			entries = append(entries, ',')
		} else {
			first = op.Seq
		}
		entries = append(entries, enc...)
		last = op.Seq
	}
	flush()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.version = max(h.version, b.Version)
	for _, m := range msgs {
		h.broadcastLocked(m)
	}
}

// publishSnapshot sends the room's state at version as a snapshot event:
// the room was reloaded from its snapshot because the ops before it were
// pruned.
func (h *hub) publishSnapshot(version int64, data []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.version = max(h.version, version)
	h.broadcastLocked(&Message{Event: EventSnapshot, Seq: version, Data: data})
}

// ResetData is the data of the reset event for a logged reset op.
func ResetData(op LoggedOp) ([]byte, error) {
	var id *string
	if op.Op.SnapshotID != "" {
		id = &op.Op.SnapshotID
	}
	state := graph.State{Nodes: []graph.Node{}, Edges: []graph.Edge{}}
	if op.Op.State != nil {
		state = *op.Op.State
	}
	at := op.CreatedAt.UTC()
	return json.Marshal(SnapshotData{SnapshotID: id, Version: op.Seq, CreatedAt: &at,
		ElementCount: len(state.Nodes) + len(state.Edges), State: state})
}

func buildOps(version int64, entries []byte) []byte {
	b := AppendOpsHead(make([]byte, 0, len(entries)+40), version)
	b = append(b, entries...)
	return append(b, OpsTail...)
}

// SnapshotData is the data of snapshot and reset events.
type SnapshotData struct {
	SnapshotID   *string     `json:"snapshot_id"`
	Version      int64       `json:"version"`
	CreatedAt    *time.Time  `json:"created_at"`
	ElementCount int         `json:"element_count"`
	State        graph.State `json:"state"`
}

// close ends every subscription, first telling each that the room is gone.
func (h *hub) close(roomID string) {
	m := &Message{Event: EventRoomDeleted, Seq: -1, Data: DeletedData(roomID)}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	h.order = nil
	for s := range h.subs {
		select {
		case s.c <- m:
			s.queued.Add(m.Size())
		default:
		}
		delete(h.subs, s)
		h.nsubs.Store(int64(len(h.subs)))
		s.end("room_deleted")
		if h.sink != nil {
			h.sink.Left(h.roomID, s.User)
		}
	}
}
