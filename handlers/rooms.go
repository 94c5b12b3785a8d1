package handlers

import (
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/liveshare/liveshare/auth"
	"github.com/liveshare/liveshare/room"
	"github.com/liveshare/liveshare/store"
)

const (
	maxRoomName      = 256
	defaultRoomLimit = 20
	maxRoomLimit     = 100
)

// roomIDParam checks that {roomID} is a UUID and records its canonical
// form in the request's requestInfo; anything else can never name a room
// and is answered 400 invalid_room_id.
func roomIDParam(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw := chi.URLParam(r, "roomID")
		id, err := uuid.Parse(raw)
		if err != nil || len(raw) != 36 {
			writeProblem(w, r, problemf(http.StatusBadRequest, "invalid_room_id", "room id %q is not a UUID", truncate(raw, 64)))
			return
		}
		canonical := raw // 36 characters that parse: canonical unless upper case
		if strings.ToLower(raw) != raw {
			canonical = id.String()
		}
		if info := infoFrom(r.Context()); info != nil {
			info.roomID = canonical
		}
		next.ServeHTTP(w, r)
	})
}

func roomIDFrom(r *http.Request) string {
	if info := infoFrom(r.Context()); info != nil {
		return info.roomID
	}
	return ""
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// roomResponse is a room as clients see it.
type roomResponse struct {
	ID           string    `json:"id"`
	Name         string    `json:"name"`
	Version      int64     `json:"version"`
	ElementCount int64     `json:"element_count"`
	Subscribers  int       `json:"subscribers"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
	// Role is the caller's role in the room, in the answers about one room
	// (so the page knows what to offer).
	Role string `json:"role,omitempty"`
}

func (a *API) roomResponse(rm store.Room) roomResponse {
	subs := 0
	if live, ok := a.rooms.Loaded(rm.ID); ok {
		subs = live.Subscribers()
	}
	return roomResponse{
		ID: rm.ID, Name: rm.Name, Version: rm.Version, ElementCount: rm.ElementCount,
		Subscribers: subs, CreatedAt: rm.CreatedAt, UpdatedAt: rm.UpdatedAt,
	}
}

type presenceResponse struct {
	Users []room.User `json:"users"`
}

func (a *API) getPresence(w http.ResponseWriter, r *http.Request) {
	id := roomIDFrom(r)
	if _, err := a.store.GetRoom(r.Context(), id); err != nil {
		writeError(w, r, err)
		return
	}
	users := []room.User{}
	if a.cluster != nil {
		// Every instance's subscribers, as the database has them now.
		all, err := a.cluster.Presence(r.Context(), id)
		if err != nil {
			writeError(w, r, err)
			return
		}
		users = append(users, all...)
	} else if live, ok := a.rooms.Loaded(id); ok {
		users = live.Presence()
	}
	writeJSON(w, r, http.StatusOK, presenceResponse{Users: users})
}

type createRoomRequest struct {
	Name string `json:"name"`
}

func (a *API) createRoom(w http.ResponseWriter, r *http.Request) {
	var req createRoomRequest
	if err := decodeJSON(w, r, a.maxBody, a.bodyTimeout, &req, true); err != nil {
		writeError(w, r, err)
		return
	}
	if utf8.RuneCountInString(req.Name) > maxRoomName {
		writeProblem(w, r, problemf(http.StatusBadRequest, "invalid_request", "name is longer than %d characters", maxRoomName))
		return
	}
	// The creator owns the room; in open mode everyone does, so nobody is
	// recorded.
	createdBy := ""
	if p := callerFrom(r.Context()).p; !p.Anonymous {
		createdBy = p.Subject
	}
	rm, err := a.store.CreateRoomBy(r.Context(), req.Name, createdBy)
	if err != nil {
		writeError(w, r, err)
		return
	}
	auditOK(r, func(e *store.AuditEntry) { e.RoomID = rm.ID })
	w.Header().Set("Location", "/rooms/"+rm.ID)
	resp := a.roomResponse(rm)
	resp.Role = auth.Owner.String()
	writeJSON(w, r, http.StatusCreated, resp)
}

type listRoomsResponse struct {
	Rooms      []roomResponse `json:"rooms"`
	NextCursor *string        `json:"next_cursor"`
}

func (a *API) listRooms(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := intParam(q.Get("limit"), "limit", defaultRoomLimit, 1, maxRoomLimit)
	if err != nil {
		writeError(w, r, err)
		return
	}
	var rooms []store.Room
	var next string
	// Those with a role in every room see them all; others see the rooms
	// they created, are members of, or their token names.
	if p := callerFrom(r.Context()).p; p.Anonymous || p.TokenRole(auth.Wildcard) > auth.None {
		rooms, next, err = a.store.ListRooms(r.Context(), int(limit), q.Get("cursor"))
	} else {
		named := make([]string, 0, len(p.Rooms))
		for id := range p.Rooms {
			named = append(named, id)
		}
		rooms, next, err = a.store.ListRoomsFor(r.Context(), p.Subject, named, int(limit), q.Get("cursor"))
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	resp := listRoomsResponse{Rooms: make([]roomResponse, 0, len(rooms))}
	for _, rm := range rooms {
		resp.Rooms = append(resp.Rooms, a.roomResponse(rm))
	}
	if next != "" {
		resp.NextCursor = &next
	}
	writeJSON(w, r, http.StatusOK, resp)
}

func (a *API) getRoom(w http.ResponseWriter, r *http.Request) {
	rm, err := a.store.GetRoom(r.Context(), roomIDFrom(r))
	if err != nil {
		writeError(w, r, err)
		return
	}
	a.writeRoomWithRole(w, r, rm)
}

// writeRoomWithRole answers a room with the caller's role in it.
func (a *API) writeRoomWithRole(w http.ResponseWriter, r *http.Request, rm store.Room) {
	role, err := a.roleOf(r.Context(), callerFrom(r.Context()).p, rm.ID)
	if err != nil {
		writeError(w, r, err)
		return
	}
	resp := a.roomResponse(rm)
	resp.Role = min(role, auth.Owner).String() // admin is not a room's role
	writeJSON(w, r, http.StatusOK, resp)
}

func (a *API) deleteRoom(w http.ResponseWriter, r *http.Request) {
	id := roomIDFrom(r)
	if err := a.store.DeleteRoom(r.Context(), id, auditInTx(r)); err != nil {
		writeError(w, r, err)
		return
	}
	a.rooms.Forget(id)
	a.members.forget(id)
	w.WriteHeader(http.StatusNoContent)
}

type renameRoomRequest struct {
	Name *string `json:"name"`
}

// renameRoom sets the room's name (owner); the rename and its audit row
// are one transaction.
func (a *API) renameRoom(w http.ResponseWriter, r *http.Request) {
	var req renameRoomRequest
	if err := decodeJSON(w, r, a.maxBody, a.bodyTimeout, &req, false); err != nil {
		writeError(w, r, err)
		return
	}
	if req.Name == nil {
		writeProblem(w, r, newProblem(http.StatusBadRequest, "invalid_request", "name is required"))
		return
	}
	if utf8.RuneCountInString(*req.Name) > maxRoomName {
		writeProblem(w, r, problemf(http.StatusBadRequest, "invalid_request", "name is longer than %d characters", maxRoomName))
		return
	}
	audit := auditInTx(r)
	if audit != nil {
		audit.Detail = "name: " + *req.Name
	}
	rm, err := a.store.RenameRoom(r.Context(), roomIDFrom(r), *req.Name, audit)
	if err != nil {
		writeError(w, r, err)
		return
	}
	a.writeRoomWithRole(w, r, rm)
}

// intParam parses an optional integer query parameter within [lo, hi].
func intParam(raw, name string, def, lo, hi int64) (int64, error) {
	if raw == "" {
		return def, nil
	}
	v, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || v < lo || v > hi {
		return 0, problemf(http.StatusBadRequest, "invalid_parameter", "%s must be an integer from %d to %d", name, lo, hi)
	}
	return v, nil
}
