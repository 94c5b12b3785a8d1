package handlers

import (
	"errors"
	"net/http"
	"net/url"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"

	"github.com/liveshare/liveshare/auth"
	"github.com/liveshare/liveshare/store"
)

const maxSubject = 256

type memberResponse struct {
	Subject   string    `json:"subject"`
	Role      string    `json:"role"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

type membersResponse struct {
	Members []memberResponse `json:"members"`
}

func (a *API) listMembers(w http.ResponseWriter, r *http.Request) {
	ms, err := a.store.Members(r.Context(), roomIDFrom(r))
	if err != nil {
		writeError(w, r, err)
		return
	}
	resp := membersResponse{Members: make([]memberResponse, 0, len(ms))}
	for _, m := range ms {
		resp.Members = append(resp.Members, memberResponse{Subject: m.Subject, Role: m.Role, CreatedAt: m.CreatedAt, UpdatedAt: m.UpdatedAt})
	}
	writeJSON(w, r, http.StatusOK, resp)
}

// subjectParam reads {subject}: 1–256 characters, none of them a control
// character (it is logged and shown on the page).
func subjectParam(r *http.Request) (string, error) {
	s := chi.URLParam(r, "subject")
	if r.URL.RawPath != "" {
		// chi routes on the raw path when it has escapes of its own (a
		// subject with a "/" comes as %2F): the subject is the unescaped one.
		u, err := url.PathUnescape(s)
		if err != nil {
			return "", newProblem(http.StatusBadRequest, "invalid_subject", "subject is not a valid escaped path segment")
		}
		s = u
	}
	if s == "" || !utf8.ValidString(s) || utf8.RuneCountInString(s) > maxSubject {
		return "", problemf(http.StatusBadRequest, "invalid_subject", "subject must be 1 to %d characters of UTF-8", maxSubject)
	}
	for _, c := range s {
		if unicode.IsControl(c) {
			return "", newProblem(http.StatusBadRequest, "invalid_subject", "subject must not hold control characters")
		}
	}
	return s, nil
}

type setMemberRequest struct {
	Role string `json:"role"`
}

func (a *API) putMember(w http.ResponseWriter, r *http.Request) {
	subject, err := subjectParam(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	var req setMemberRequest
	if err := decodeJSON(w, r, a.maxBody, a.bodyTimeout, &req, false); err != nil {
		writeError(w, r, err)
		return
	}
	if _, ok := auth.ParseRoomRole(req.Role); !ok {
		writeProblem(w, r, problemf(http.StatusBadRequest, "invalid_role", "role is %q; it must be viewer, editor or owner", truncate(req.Role, 32)))
		return
	}
	id := roomIDFrom(r)
	audit := auditInTx(r)
	if audit != nil {
		audit.Detail = "member: " + subject + ", role: " + req.Role
	}
	if _, err := a.store.SetMember(r.Context(), id, subject, req.Role, audit); err != nil {
		writeError(w, r, err)
		return
	}
	a.membersChangedHere(id)
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) deleteMember(w http.ResponseWriter, r *http.Request) {
	subject, err := subjectParam(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	id := roomIDFrom(r)
	audit := auditInTx(r)
	if audit != nil {
		audit.Detail = "member: " + subject
	}
	if err := a.store.RemoveMember(r.Context(), id, subject, audit); err != nil {
		if errors.Is(err, store.ErrMemberNotFound) {
			writeProblem(w, r, problemf(http.StatusNotFound, "member_not_found", "%q is not a member of this room", truncate(subject, 64)))
			return
		}
		writeError(w, r, err)
		return
	}
	a.membersChangedHere(id)
	w.WriteHeader(http.StatusNoContent)
}

// membersChangedHere applies a member change made by this instance: here at
// once, and on the other instances through the cluster.
func (a *API) membersChangedHere(roomID string) {
	a.MembersChanged(roomID)
	if a.cluster != nil {
		a.cluster.MembersChanged(roomID)
	}
}

// MembersChanged is called when the room's members changed, here or on
// another instance: the next request reads them again, and every open
// stream of the room checks at once that its caller may still read it.
func (a *API) MembersChanged(roomID string) {
	a.members.forget(roomID)
	a.watchers.signal(roomID)
}

// watchers are the open streams of each room in jwt mode, to be told of
// member changes.
type watchers struct {
	mu    sync.Mutex
	rooms map[string]map[chan struct{}]struct{}
}

func (w *watchers) add(roomID string) chan struct{} {
	c := make(chan struct{}, 1)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.rooms == nil {
		w.rooms = map[string]map[chan struct{}]struct{}{}
	}
	if w.rooms[roomID] == nil {
		w.rooms[roomID] = map[chan struct{}]struct{}{}
	}
	w.rooms[roomID][c] = struct{}{}
	return c
}

func (w *watchers) remove(roomID string, c chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.rooms[roomID], c)
	if len(w.rooms[roomID]) == 0 {
		delete(w.rooms, roomID)
	}
}

// signal wakes every stream of the room without blocking: a stream that
// has a wake-up pending will check once for all of them.
func (w *watchers) signal(roomID string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for c := range w.rooms[roomID] {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}
