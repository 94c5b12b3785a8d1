package room

import (
	"context"
	"errors"
	"slices"
	"time"
)

// PresenceState is what a subscriber says about itself besides its name:
// where its pointer is, what it has selected, a short status. It is
// ephemeral (never in the op log) and travels in presence events.
type PresenceState struct {
	Cursor    *Cursor  `json:"cursor,omitempty"`
	Selection []string `json:"selection,omitempty"`
	Status    string   `json:"status,omitempty"`
}

// Cursor is a point in the graph's coordinates.
type Cursor struct {
	X float64 `json:"x"`
	Y float64 `json:"y"`
}

// Equal reports whether s and o say the same (nil is no state).
func (s *PresenceState) Equal(o *PresenceState) bool {
	if s == nil || o == nil {
		return s == o
	}
	if (s.Cursor == nil) != (o.Cursor == nil) || s.Cursor != nil && *s.Cursor != *o.Cursor {
		return false
	}
	return s.Status == o.Status && slices.Equal(s.Selection, o.Selection)
}

// PresenceMinInterval is the least time between two state changes of one
// subscriber: faster ones are refused (ErrPresenceThrottled), so that a
// client sending a cursor per pointer event costs its room's streams, and
// the instances' presence rows, at most this rate.
const PresenceMinInterval = 20 * time.Millisecond

var (
	// ErrPresenceNotFound: no subscriber of the room through this
	// instance has that presence id (or the caller does not own it).
	ErrPresenceNotFound = errors.New("no subscriber with this presence id")
	// ErrPresenceThrottled: the subscriber's state changed less than
	// PresenceMinInterval ago.
	ErrPresenceThrottled = errors.New("presence state changed too recently")
)

// presenceAs names a subscriber for SetPresenceState: the client's
// presence id and who may set its state.
type presenceAs struct{ id, owner string }

type presenceKey struct{}

// WithPresence returns ctx carrying the presence id a subscriber chose and
// its owner (the token's subject, or "" in open mode), for
// Manager.Subscribe.
func WithPresence(ctx context.Context, presenceID, owner string) context.Context {
	return context.WithValue(ctx, presenceKey{}, presenceAs{id: presenceID, owner: owner})
}

func presenceFrom(ctx context.Context) presenceAs {
	as, _ := ctx.Value(presenceKey{}).(presenceAs)
	return as
}

// SetPresenceState changes the state of the room's subscribers through this
// instance with that presence id and owner (a tab that reconnects may
// briefly have two): update gets the current state (nil when none) and
// returns the new one. Their streams, and the other instances, learn it
// through the usual presence change.
func (r *Room) SetPresenceState(presenceID, owner string, now time.Time, update func(*PresenceState) *PresenceState) error {
	return r.hub.setState(presenceAs{id: presenceID, owner: owner}, now, update)
}

func (h *hub) setState(as presenceAs, now time.Time, update func(*PresenceState) *PresenceState) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var subs []*Subscription
	for s := range h.subs {
		if as.id != "" && s.User.PresenceID == as.id && s.owner == as.owner {
			subs = append(subs, s)
		}
	}
	if len(subs) == 0 {
		return ErrPresenceNotFound
	}
	for _, s := range subs {
		if now.Sub(s.stateAt) < PresenceMinInterval {
			return ErrPresenceThrottled
		}
	}
	changed := false
	for _, s := range subs {
		s.stateAt = now
		next := update(s.User.State)
		if next.Equal(s.User.State) {
			continue
		}
		s.User.State, changed = next, true
		if h.sink != nil {
			h.sink.Joined(h.roomID, s.User) // written again, with its state
		}
	}
	if changed {
		h.presenceLocked(nil, nil)
	}
	return nil
}
