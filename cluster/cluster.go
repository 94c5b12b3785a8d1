// Package cluster makes several LiveShare processes on one PostgreSQL
// database one service (DESIGN.md section 10). PostgreSQL carries
// everything: the op log is the truth, and NOTIFY on one channel wakes the
// other instances; no broker is involved.
//
// A notification is only a wake-up, never data: an instance that hears
// "room R is at version V" catches R up from the op log. Notifications can
// be lost (the listening connection drops, a process dies between its
// commit and its notification), so each instance also polls the versions of
// the rooms it holds for subscribers every PollInterval, in one query, and
// at once after its listener reconnects. A lost notification delays
// delivery; it never loses an op.
//
// Presence is the room's across instances: each instance writes its
// subscribers' joins and leaves to the presence table (in batches, without
// waiting for the disk: presence is ephemeral), heartbeats every few
// seconds, and reaps instances that stopped heartbeating together with
// their subscribers.
//
// Concurrency contract: Committed, Deleted, MembersChanged, Joined and Left
// never block; they queue work for the goroutines of Run, which the caller
// owns and stops by cancelling Run's context.
package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/lib/pq"

	"github.com/liveshare/liveshare/room"
	"github.com/liveshare/liveshare/store"
)

// Store is what the cluster needs of the database; *store.Store satisfies it.
type Store interface {
	DatabaseURL() string
	NotifyChannel() string
	Notify(ctx context.Context, payloads []string) error
	RoomVersions(ctx context.Context, ids []string) (map[string]int64, error)
	Heartbeat(ctx context.Context, instanceID string) (registered bool, err error)
	RemoveInstance(ctx context.Context, instanceID string) error
	ReapInstances(ctx context.Context, deadAfter time.Duration) ([]string, error)
	SyncPresence(ctx context.Context, instanceID string, joins []store.PresenceRow, leaves []store.PresenceKey) error
	RoomPresence(ctx context.Context, roomIDs []string, exclude string, aliveWithin time.Duration) (map[string][]store.PresenceRow, error)
}

// Defaults of Config.
const (
	DefaultPollInterval = 2 * time.Second
	// heartbeatEvery and deadAfter make an instance that died lose its
	// subscribers within 30 s: it is dead 20 s after its last heartbeat,
	// and reaped within the next heartbeat of any other.
	heartbeatEvery = 5 * time.Second
	deadAfter      = 20 * time.Second
	// presenceFlush is how long joins and leaves gather before they are
	// written; presenceRefresh how often a room's remote presence is read
	// again after notifications.
	presenceFlush   = 10 * time.Millisecond
	presenceRefresh = 50 * time.Millisecond
	// dbTimeout bounds each statement of the cluster's own work.
	dbTimeout = 10 * time.Second
)

// Config tunes a Cluster.
type Config struct {
	// PollInterval is how often the versions of the rooms held for
	// subscribers are compared with the database (LIVESHARE_POLL_INTERVAL).
	PollInterval time.Duration
	Logger       *slog.Logger
}

// Notification kinds on the channel.
const (
	kindOps      = "o" // the room is at version V
	kindDeleted  = "d"
	kindMembers  = "m"
	kindPresence = "p"
	// kindState carries a subscriber's new presence state, set through
	// another instance than the one holding its stream, as JSON in place
	// of the version: s:instance:room:{"p":…,"o":…,"s":…}.
	kindState = "s"
)

// stateNote is the data of a kindState notification.
type stateNote struct {
	PresenceID string              `json:"p"`
	Owner      string              `json:"o"`
	State      *room.PresenceState `json:"s"`
}

// Cluster is this instance's part in a cluster of instances. Make one with
// New, give it to the room manager (Events, Presence), and run it.
type Cluster struct {
	store Store
	cfg   Config
	log   *slog.Logger
	id    string // this instance

	rooms     *room.Manager
	onMembers func(roomID string)

	mu sync.Mutex
	// outgoing notifications, one per room and kind (the newest version
	// wins), and the joins and leaves not yet written.
	outgoing map[string]note
	joins    map[store.PresenceKey]store.PresenceRow
	leaves   map[store.PresenceKey]struct{}
	// rooms whose remote presence is to be read again.
	stalePresence map[string]struct{}
	wakeNotify    chan struct{}
	wakePresence  chan struct{}
	pollNow       chan struct{}
}

type note struct {
	kind    string
	room    string
	version int64
	data    string // kindState's JSON
}

func (n note) payload(instance string) string {
	if n.kind == kindState {
		return n.kind + ":" + instance + ":" + n.room + ":" + n.data
	}
	return n.kind + ":" + instance + ":" + n.room + ":" + strconv.FormatInt(n.version, 10)
}

func parseNote(s string) (instance string, n note, err error) {
	parts := strings.SplitN(s, ":", 4)
	if len(parts) != 4 {
		return "", note{}, fmt.Errorf("notification %q: want kind:instance:room:version", s)
	}
	if parts[0] == kindState {
		return parts[1], note{kind: kindState, room: parts[2], data: parts[3]}, nil
	}
	v, err := strconv.ParseInt(parts[3], 10, 64)
	if err != nil {
		return "", note{}, fmt.Errorf("notification %q: version: %w", s, err)
	}
	return parts[1], note{kind: parts[0], room: parts[2], version: v}, nil
}

// New returns a Cluster over st with a new instance id.
func New(st Store, cfg Config) *Cluster {
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Cluster{store: st, cfg: cfg, log: cfg.Logger, id: uuid.NewString(),
		outgoing: make(map[string]note), joins: make(map[store.PresenceKey]store.PresenceRow),
		leaves: make(map[store.PresenceKey]struct{}), stalePresence: make(map[string]struct{}),
		wakeNotify: make(chan struct{}, 1), wakePresence: make(chan struct{}, 1), pollNow: make(chan struct{}, 1)}
}

// InstanceID returns this instance's id.
func (c *Cluster) InstanceID() string { return c.id }

// OnMembersChanged sets what is called when another instance changed a
// room's members (to end streams the change no longer allows).
func (c *Cluster) OnMembersChanged(f func(roomID string)) { c.onMembers = f }

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (c *Cluster) queue(n note) {
	c.mu.Lock()
	key := n.kind + n.room
	if old, ok := c.outgoing[key]; !ok || old.version < n.version {
		c.outgoing[key] = n
	}
	c.mu.Unlock()
	signal(c.wakeNotify)
}

// Committed tells the other instances that the room is at version. It
// satisfies room.Events.
func (c *Cluster) Committed(roomID string, version int64) {
	c.queue(note{kind: kindOps, room: roomID, version: version})
}

// Deleted tells the other instances that the room is gone. It satisfies
// room.Events.
func (c *Cluster) Deleted(roomID string) { c.queue(note{kind: kindDeleted, room: roomID}) }

// MembersChanged tells the other instances that the room's members changed.
func (c *Cluster) MembersChanged(roomID string) { c.queue(note{kind: kindMembers, room: roomID}) }

// Joined records a subscriber of this instance, or its changed state. It
// satisfies room.PresenceSink.
func (c *Cluster) Joined(roomID string, u room.User) {
	key := store.PresenceKey{RoomID: roomID, SubID: u.ID}
	c.mu.Lock()
	row := store.PresenceRow{RoomID: roomID, SubID: u.ID, InstanceID: c.id, Name: u.Name, ConnectedAt: u.ConnectedAt,
		PresenceID: u.PresenceID, Owner: u.Owner}
	if u.State != nil {
		if b, err := json.Marshal(u.State); err == nil { // it always marshals
			row.State = string(b)
		}
	}
	c.joins[key] = row
	c.mu.Unlock()
	signal(c.wakePresence)
}

// Left records that a subscriber of this instance left. It satisfies
// room.PresenceSink.
func (c *Cluster) Left(roomID string, u room.User) {
	key := store.PresenceKey{RoomID: roomID, SubID: u.ID}
	c.mu.Lock()
	if _, pending := c.joins[key]; pending {
		delete(c.joins, key) // never written: nothing to delete
	} else {
		c.leaves[key] = struct{}{}
	}
	c.mu.Unlock()
	signal(c.wakePresence)
}

// Presence lists the room's subscribers through every live instance, this
// one's first known, oldest first.
func (c *Cluster) Presence(ctx context.Context, roomID string) ([]room.User, error) {
	users := c.rooms.LocalPresence(roomID)
	remote, err := c.store.RoomPresence(ctx, []string{roomID}, c.id, deadAfter)
	if err != nil {
		return nil, err
	}
	users = append(users, usersOf(remote[roomID])...)
	room.SortUsers(users)
	return users, nil
}

func usersOf(rows []store.PresenceRow) []room.User {
	users := make([]room.User, len(rows))
	for i, p := range rows {
		users[i] = room.User{ID: p.SubID, Name: p.Name, ConnectedAt: p.ConnectedAt, PresenceID: p.PresenceID, Owner: p.Owner}
		if p.State != "" {
			var st room.PresenceState
			if json.Unmarshal([]byte(p.State), &st) == nil { // written by Joined: it decodes
				users[i].State = &st
			}
		}
	}
	return users
}

// Run runs the cluster's goroutines until ctx is done, then removes the
// instance and its presence from the database. It calls started once it
// listens; an error before that is returned at once. The caller owns the
// goroutine that calls it.
func (c *Cluster) Run(ctx context.Context, rooms *room.Manager, started func()) error {
	c.rooms = rooms
	if _, err := c.store.Heartbeat(ctx, c.id); err != nil {
		return fmt.Errorf("cluster: register instance: %w", err)
	}
	listener := pq.NewListener(c.store.DatabaseURL(), 100*time.Millisecond, 10*time.Second,
		func(ev pq.ListenerEventType, err error) {
			switch ev {
			case pq.ListenerEventConnectionAttemptFailed, pq.ListenerEventDisconnected:
				c.log.Warn("cluster: listening connection lost", "err", err)
			case pq.ListenerEventReconnected:
				c.log.Info("cluster: listening connection back")
			}
		})
	if err := listener.Listen(c.store.NotifyChannel()); err != nil {
		_ = listener.Close()
		return fmt.Errorf("cluster: listen on %s: %w", c.store.NotifyChannel(), err)
	}
	c.log.Info("cluster: instance joined", "instance", c.id, "channel", c.store.NotifyChannel(), "poll_interval", c.cfg.PollInterval)
	started()

	var wg sync.WaitGroup
	wg.Go(func() { c.listen(ctx, listener) })
	wg.Go(func() { c.notifyLoop(ctx) })
	wg.Go(func() { c.presenceLoop(ctx) })
	wg.Go(func() { c.pollLoop(ctx) })
	wg.Go(func() { c.heartbeatLoop(ctx) })
	wg.Wait()
	_ = listener.Close()

	// Leave: the others drop this instance's subscribers at once.
	stop, cancel := context.WithTimeout(context.WithoutCancel(ctx), dbTimeout)
	defer cancel()
	rooms2 := c.roomsWithSubscribers()
	if err := c.store.RemoveInstance(stop, c.id); err != nil {
		c.log.Warn("cluster: remove instance", "err", err)
	}
	c.flushNotes(stop, c.presenceNotes(rooms2))
	return nil
}

// listen handles notifications until ctx is done.
func (c *Cluster) listen(ctx context.Context, l *pq.Listener) {
	ping := time.NewTicker(30 * time.Second)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ping.C:
			// A dead connection is found by using it.
			go func() { _ = l.Ping() }()
		case n := <-l.Notify:
			if n == nil {
				// Reconnected: notifications may have been missed.
				signal(c.pollNow)
				continue
			}
			c.handle(n.Extra)
		}
	}
}

func (c *Cluster) handle(payload string) {
	instance, n, err := parseNote(payload)
	if err != nil {
		c.log.Warn("cluster: bad notification", "err", err)
		return
	}
	if instance == c.id {
		return
	}
	switch n.kind {
	case kindOps:
		if r, ok := c.rooms.Loaded(n.room); ok {
			r.RequestSync(n.version)
		}
	case kindDeleted:
		c.rooms.RoomDeleted(n.room)
	case kindMembers:
		if c.onMembers != nil {
			c.onMembers(n.room)
		}
	case kindState:
		c.applyState(n)
	case kindPresence:
		if _, ok := c.rooms.Loaded(n.room); ok {
			c.mu.Lock()
			c.stalePresence[n.room] = struct{}{}
			c.mu.Unlock()
			signal(c.wakePresence)
		}
	}
}

// SetRemoteState takes a PATCH …/presence/{presence_id} for a subscriber
// whose stream another instance holds (DESIGN.md section 10: any instance
// takes any request): it finds the subscriber in the presence rows, checks
// its owner as the holding instance would, and sends the new state that
// update makes of the one the rows hold to every instance; the holder sets
// it (its throttle still applies). room.ErrPresenceNotFound when no live
// instance holds a stream of that presence id and owner in the room.
func (c *Cluster) SetRemoteState(ctx context.Context, roomID, presenceID, owner string, update func(*room.PresenceState) *room.PresenceState) error {
	remote, err := c.store.RoomPresence(ctx, []string{roomID}, c.id, deadAfter)
	if err != nil {
		return err
	}
	for _, u := range usersOf(remote[roomID]) {
		if u.PresenceID != presenceID || u.Owner != owner {
			continue
		}
		b, err := json.Marshal(stateNote{PresenceID: presenceID, Owner: owner, State: update(u.State)})
		if err != nil {
			return fmt.Errorf("cluster: presence state: %w", err)
		}
		ctx, cancel := context.WithTimeout(ctx, dbTimeout)
		defer cancel()
		return c.store.Notify(ctx, []string{note{kind: kindState, room: roomID, data: string(b)}.payload(c.id)})
	}
	return room.ErrPresenceNotFound
}

// applyState sets the state another instance sent for a subscriber of
// this one, if it still holds it.
func (c *Cluster) applyState(n note) {
	var sn stateNote
	if err := json.Unmarshal([]byte(n.data), &sn); err != nil {
		c.log.Warn("cluster: bad presence state notification", "err", err)
		return
	}
	r, ok := c.rooms.Loaded(n.room)
	if !ok {
		return
	}
	err := r.SetPresenceState(sn.PresenceID, sn.Owner, time.Now(), func(*room.PresenceState) *room.PresenceState { return sn.State })
	if err != nil && !errors.Is(err, room.ErrPresenceNotFound) {
		// Throttled: the holder takes at most one change per
		// room.PresenceMinInterval, whichever instance it came through.
		c.log.Debug("cluster: presence state not set", "room", n.room, "err", err)
	}
}

// notifyLoop sends the queued notifications, all in one statement each
// time: after a commit, not inside it, because PostgreSQL serialises the
// commits of notifying transactions (with a database-wide lock held through
// the WAL flush), which would stop concurrent rooms' commits from sharing a
// flush (see PreCommit_Notify in PostgreSQL's async.c, and Recall.ai's
// "Postgres LISTEN/NOTIFY does not scale"). A notification sent after the
// commit can only be lost with the process that made it, and the pollers
// cover that.
func (c *Cluster) notifyLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.wakeNotify:
		}
		c.mu.Lock()
		notes := make([]note, 0, len(c.outgoing))
		for k, n := range c.outgoing {
			notes = append(notes, n)
			delete(c.outgoing, k)
		}
		c.mu.Unlock()
		c.flushNotes(ctx, notes)
	}
}

func (c *Cluster) flushNotes(ctx context.Context, notes []note) {
	if len(notes) == 0 {
		return
	}
	payloads := make([]string, len(notes))
	for i, n := range notes {
		payloads[i] = n.payload(c.id)
	}
	ctx, cancel := context.WithTimeout(ctx, dbTimeout)
	defer cancel()
	if err := c.store.Notify(ctx, payloads); err != nil && !errors.Is(err, context.Canceled) {
		// The others' polls find what this would have told them.
		c.log.Warn("cluster: notify", "err", err, "notifications", len(payloads))
	}
}

// presenceLoop writes joins and leaves in batches, and reads the remote
// presence of rooms other instances notified about.
func (c *Cluster) presenceLoop(ctx context.Context) {
	refresh := time.NewTicker(presenceRefresh)
	defer refresh.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.wakePresence:
			// Let a burst of joins gather into one write.
			select {
			case <-ctx.Done():
				return
			case <-time.After(presenceFlush):
			}
			c.writePresence(ctx)
		case <-refresh.C:
			c.mu.Lock()
			stale := make([]string, 0, len(c.stalePresence))
			for id := range c.stalePresence {
				stale = append(stale, id)
			}
			clear(c.stalePresence)
			c.mu.Unlock()
			c.readPresence(ctx, stale)
		}
	}
}

func (c *Cluster) writePresence(ctx context.Context) {
	c.mu.Lock()
	joins := make([]store.PresenceRow, 0, len(c.joins))
	leaves := make([]store.PresenceKey, 0, len(c.leaves))
	changed := make(map[string]struct{})
	for k, j := range c.joins {
		joins = append(joins, j)
		changed[k.RoomID] = struct{}{}
	}
	for k := range c.leaves {
		leaves = append(leaves, k)
		changed[k.RoomID] = struct{}{}
	}
	clear(c.joins)
	clear(c.leaves)
	c.mu.Unlock()
	if len(joins) == 0 && len(leaves) == 0 {
		return
	}
	wctx, cancel := context.WithTimeout(ctx, dbTimeout)
	defer cancel()
	if err := c.store.SyncPresence(wctx, c.id, joins, leaves); err != nil {
		c.warn(ctx, "write presence", err)
		// Put them back for the next try, unless newer news arrived.
		c.mu.Lock()
		for _, j := range joins {
			k := store.PresenceKey{RoomID: j.RoomID, SubID: j.SubID}
			if _, left := c.leaves[k]; !left {
				c.joins[k] = j
			}
		}
		for _, l := range leaves {
			c.leaves[l] = struct{}{}
		}
		c.mu.Unlock()
		return
	}
	rooms := make([]string, 0, len(changed))
	for id := range changed {
		rooms = append(rooms, id)
	}
	for _, n := range c.presenceNotes(rooms) {
		c.queue(n)
	}
}

func (c *Cluster) presenceNotes(rooms []string) []note {
	notes := make([]note, len(rooms))
	for i, id := range rooms {
		notes[i] = note{kind: kindPresence, room: id}
	}
	return notes
}

// readPresence reads the remote presence of rooms, in one query.
func (c *Cluster) readPresence(ctx context.Context, rooms []string) {
	if len(rooms) == 0 {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, dbTimeout)
	defer cancel()
	remote, err := c.store.RoomPresence(rctx, rooms, c.id, deadAfter)
	if err != nil {
		c.warn(ctx, "read presence", err)
		return
	}
	for _, id := range rooms {
		c.rooms.SetRemotePresence(id, usersOf(remote[id]))
	}
}

func (c *Cluster) roomsWithSubscribers() []string {
	var ids []string
	for _, r := range c.rooms.Live() {
		if r.Subscribers() > 0 {
			ids = append(ids, r.ID())
		}
	}
	return ids
}

// pollLoop compares the versions of the rooms held for subscribers with the
// database every PollInterval, and at once when the listener reconnected.
func (c *Cluster) pollLoop(ctx context.Context) {
	t := time.NewTicker(c.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-c.pollNow:
		}
		c.poll(ctx)
	}
}

// poll catches up the rooms held for subscribers that another instance
// moved, ends the streams of rooms deleted elsewhere, and reads their
// remote presence again (an instance may have died).
func (c *Cluster) poll(ctx context.Context) {
	ids := c.roomsWithSubscribers()
	if len(ids) == 0 {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, dbTimeout)
	defer cancel()
	versions, err := c.store.RoomVersions(pctx, ids)
	if err != nil {
		c.warn(ctx, "poll room versions", err)
		return
	}
	for _, id := range ids {
		v, ok := versions[id]
		if !ok {
			c.rooms.RoomDeleted(id)
			continue
		}
		if r, loaded := c.rooms.Loaded(id); loaded {
			r.RequestSync(v)
		}
	}
	c.readPresence(ctx, ids)
}

// heartbeatLoop keeps the instance alive in the database, writes all of its
// presence again if others took it for dead, and reaps dead instances.
func (c *Cluster) heartbeatLoop(ctx context.Context) {
	t := time.NewTicker(heartbeatEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		hctx, cancel := context.WithTimeout(ctx, dbTimeout)
		registered, err := c.store.Heartbeat(hctx, c.id)
		if err != nil {
			cancel()
			c.warn(ctx, "heartbeat", err)
			continue
		}
		if registered {
			c.log.Warn("cluster: this instance was taken for dead; writing its presence again")
			c.rejoinAll()
		}
		reaped, err := c.store.ReapInstances(hctx, deadAfter)
		cancel()
		if err != nil {
			c.warn(ctx, "reap dead instances", err)
			continue
		}
		if len(reaped) > 0 {
			c.log.Info("cluster: dropped the subscribers of dead instances", "rooms", len(reaped))
			c.readPresence(ctx, reaped)
			for _, n := range c.presenceNotes(reaped) {
				c.queue(n)
			}
		}
	}
}

// warn logs a failed database call, unless it failed because the instance
// is shutting down.
func (c *Cluster) warn(ctx context.Context, what string, err error) {
	if ctx.Err() == nil {
		c.log.Warn("cluster: "+what, "err", err)
	}
}

// rejoinAll queues every local subscriber as a join again.
func (c *Cluster) rejoinAll() {
	for _, r := range c.rooms.Live() {
		for _, u := range c.rooms.LocalPresence(r.ID()) {
			c.Joined(r.ID(), u)
		}
	}
}
