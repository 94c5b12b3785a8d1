package handlers

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"

	"github.com/liveshare/liveshare/graph"
	"github.com/liveshare/liveshare/room"
)

// Presence state (DESIGN.md sections 4 and 5): a subscriber that named
// itself with ?presence_id= on its stream may say where its pointer is,
// what it selected and a short status with PATCH
// /rooms/{room}/presence/{presence_id}. The state is ephemeral: it is
// never in the op log, the audit log or the request log, and it goes to the
// room's streams with the presence events, at most once per
// room.PresenceMinInterval per subscriber.
const (
	maxPresenceBody      = 4 << 10
	maxPresenceIDLen     = 64
	maxPresenceSelection = 200
	maxPresenceStatus    = 64
)

// validPresenceID is DESIGN.md's presence id: 1–64 of [A-Za-z0-9_-].
func validPresenceID(id string) bool {
	if len(id) == 0 || len(id) > maxPresenceIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// presenceOwner is who may set the state of the caller's subscribers: the
// token's subject, or nobody in particular in open mode.
func presenceOwner(r *http.Request) string {
	if p := callerFrom(r.Context()).p; p != nil {
		return p.Subject
	}
	return ""
}

// presenceParam reads the stream's ?presence_id= (400 when malformed) and
// hands it, with its owner, to the room's Subscribe through the context.
func presenceParam(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if !q.Has("presence_id") {
			next.ServeHTTP(w, r)
			return
		}
		id := q.Get("presence_id")
		if !validPresenceID(id) {
			writeProblem(w, r, problemf(http.StatusBadRequest, "invalid_request",
				"presence_id %q is not 1–%d characters of [A-Za-z0-9_-]", truncate(id, 80), maxPresenceIDLen))
			return
		}
		next.ServeHTTP(w, r.WithContext(room.WithPresence(r.Context(), id, presenceOwner(r))))
	})
}

// presencePatch is the body of PATCH …/presence/{presence_id}: each member
// given replaces that part of the state, and null removes it.
type presencePatch struct {
	Cursor    json.RawMessage `json:"cursor"`
	Selection json.RawMessage `json:"selection"`
	Status    json.RawMessage `json:"status"`
}

func isNull(raw json.RawMessage) bool { return string(raw) == "null" }

// apply checks the patch and returns the state it makes of st; the
// problem names the first thing wrong.
func (p presencePatch) apply(st room.PresenceState) (room.PresenceState, error) {
	if p.Cursor == nil && p.Selection == nil && p.Status == nil {
		return st, newProblem(http.StatusBadRequest, "invalid_request", "the body names none of cursor, selection, status")
	}
	if p.Cursor != nil {
		if isNull(p.Cursor) {
			st.Cursor = nil
		} else {
			var c struct {
				X *float64 `json:"x"`
				Y *float64 `json:"y"`
			}
			if err := strictJSON(p.Cursor, &c); err != nil {
				return st, newProblem(http.StatusBadRequest, "invalid_request", "cursor: "+err.Error())
			}
			if c.X == nil || c.Y == nil {
				return st, newProblem(http.StatusBadRequest, "invalid_request", "cursor needs both x and y")
			}
			if math.IsInf(*c.X, 0) || math.IsInf(*c.Y, 0) || math.IsNaN(*c.X) || math.IsNaN(*c.Y) {
				return st, newProblem(http.StatusBadRequest, "invalid_request", "cursor x and y must be finite")
			}
			st.Cursor = &room.Cursor{X: *c.X, Y: *c.Y}
		}
	}
	if p.Selection != nil {
		if isNull(p.Selection) {
			st.Selection = nil
		} else {
			var sel []string
			if err := strictJSON(p.Selection, &sel); err != nil {
				return st, newProblem(http.StatusBadRequest, "invalid_request", "selection must be an array of element ids")
			}
			if len(sel) > maxPresenceSelection {
				return st, problemf(http.StatusBadRequest, "invalid_request", "selection holds %d ids, more than %d", len(sel), maxPresenceSelection)
			}
			for i, id := range sel {
				if !graph.ValidID(id) {
					return st, problemf(http.StatusBadRequest, "invalid_request", "selection[%d] %q is not an element id", i, truncate(id, 80))
				}
			}
			st.Selection = sel
			if len(sel) == 0 {
				st.Selection = nil
			}
		}
	}
	if p.Status != nil {
		if isNull(p.Status) {
			st.Status = ""
		} else {
			var s string
			if err := strictJSON(p.Status, &s); err != nil {
				return st, newProblem(http.StatusBadRequest, "invalid_request", "status must be a string")
			}
			if utf8.RuneCountInString(s) > maxPresenceStatus {
				return st, problemf(http.StatusBadRequest, "invalid_request", "status is longer than %d characters", maxPresenceStatus)
			}
			st.Status = s
		}
	}
	return st, nil
}

func strictJSON(raw json.RawMessage, dst any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return errors.New(describeJSONError(err))
	}
	return nil
}

// patchPresence serves PATCH /rooms/{room}/presence/{presence_id}: 204, or
// 404 presence_not_found when no stream of the caller's is named so,
// through this instance or (with several instances) another live one, or
// 429 when it changed less than room.PresenceMinInterval ago (checked by
// the instance holding the stream: through another one, a change that
// comes too soon is dropped there).
func (a *API) patchPresence(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "presenceID")
	if !validPresenceID(id) {
		writeProblem(w, r, problemf(http.StatusBadRequest, "invalid_request",
			"presence id %q is not 1–%d characters of [A-Za-z0-9_-]", truncate(id, 80), maxPresenceIDLen))
		return
	}
	var patch presencePatch
	if err := decodeJSON(w, r, maxPresenceBody, a.bodyTimeout, &patch, false); err != nil {
		writeError(w, r, err)
		return
	}
	// Checked against an empty state first, so that a bad body is named
	// before whether the subscriber exists.
	if _, err := patch.apply(room.PresenceState{}); err != nil {
		writeError(w, r, err)
		return
	}
	update := func(cur *room.PresenceState) *room.PresenceState {
		st := room.PresenceState{}
		if cur != nil {
			st = *cur
			st.Selection = append([]string(nil), cur.Selection...)
		}
		st, _ = patch.apply(st) // checked above
		if st.Cursor == nil && st.Selection == nil && st.Status == "" {
			return nil
		}
		return &st
	}
	roomID, owner := roomIDFrom(r), presenceOwner(r)
	err := room.ErrPresenceNotFound
	if live, ok := a.rooms.Loaded(roomID); ok {
		err = live.SetPresenceState(id, owner, time.Now(), update)
	} else if _, gerr := a.store.GetRoom(r.Context(), roomID); gerr != nil {
		writeError(w, r, gerr)
		return
	}
	if errors.Is(err, room.ErrPresenceNotFound) && a.cluster != nil {
		// The stream may be held by another instance (DESIGN.md
		// section 10: any instance takes any request).
		err = a.cluster.SetRemoteState(r.Context(), roomID, id, owner, update)
	}
	switch {
	case errors.Is(err, room.ErrPresenceNotFound):
		writeProblem(w, r, presenceNotFound(id))
	case errors.Is(err, room.ErrPresenceThrottled):
		p := problemf(http.StatusTooManyRequests, "rate_limited",
			"presence state changed less than %s ago; send at most one change per %s", room.PresenceMinInterval, room.PresenceMinInterval)
		p.retryAfter = 1
		// The headers of the other limits (section 9.4), in whole seconds.
		h := w.Header()
		h.Set("RateLimit-Limit", strconv.Itoa(int(time.Second/room.PresenceMinInterval)))
		h.Set("RateLimit-Remaining", "0")
		h.Set("RateLimit-Reset", "1")
		writeProblem(w, r, p)
	case err != nil:
		writeError(w, r, err)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

func presenceNotFound(id string) *Problem {
	return problemf(http.StatusNotFound, "presence_not_found",
		"no event stream of yours in this room is named %q (connect with ?presence_id=%s first)", id, id)
}
