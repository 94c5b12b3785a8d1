package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/liveshare/liveshare/graph"
	"github.com/liveshare/liveshare/room"
	"github.com/liveshare/liveshare/store"
)

// Problem is an RFC 9457 problem detail with LiveShare's stable Code.
type Problem struct {
	Type    string `json:"type"`
	Title   string `json:"title"`
	Status  int    `json:"status"`
	Detail  string `json:"detail,omitempty"`
	Code    string `json:"code"`
	OpIndex *int   `json:"op_index,omitempty"`
	// Current is the room's version, on a conflict.
	Current *int64 `json:"current_version,omitempty"`
	// RequestID lets an operator find the log lines of a failed request.
	RequestID string `json:"request_id,omitempty"`

	// retryAfter, when positive, is sent as Retry-After (seconds).
	retryAfter int
}

func (p *Problem) Error() string { return p.Code + ": " + p.Detail }

// problemTypeBase prefixes each code to make the problem's type URI.
const problemTypeBase = "https://liveshare.dev/problems/"

func newProblem(status int, code, detail string) *Problem {
	return &Problem{Type: problemTypeBase + code, Title: http.StatusText(status), Status: status, Code: code, Detail: detail}
}

func problemf(status int, code, format string, args ...any) *Problem {
	return newProblem(status, code, fmt.Sprintf(format, args...))
}

// asProblem maps an error from the domain, the room or the store to the
// problem a client sees. Errors it does not know become a 500 whose detail
// stays in the log, never in the answer.
func asProblem(err error) *Problem {
	var p *Problem
	var opErr *graph.OpError
	var conflict *room.ConflictError
	var tooLarge *http.MaxBytesError
	var roomTooLarge *room.TooLargeError
	if p := snapshotProblem(err); p != nil {
		return p
	}
	switch {
	case errors.As(err, &p):
		return p
	case errors.As(err, &opErr):
		p := newProblem(http.StatusUnprocessableEntity, "invalid_op", opErr.Error())
		idx := opErr.Index
		p.OpIndex = &idx
		return p
	case errors.As(err, &conflict):
		p := problemf(http.StatusConflict, "conflict", "base_version does not match: the room is at version %d", conflict.Current)
		cur := conflict.Current
		p.Current = &cur
		return p
	case errors.As(err, &roomTooLarge):
		return problemf(http.StatusRequestEntityTooLarge, "room_too_large",
			"these ops would take the room past its size budget of %d bytes (it would need up to %d); nothing was applied", roomTooLarge.Budget, roomTooLarge.Size)
	case errors.As(err, &tooLarge):
		return problemf(http.StatusRequestEntityTooLarge, "payload_too_large", "request body is larger than %d bytes", tooLarge.Limit)
	case errors.Is(err, store.ErrNotFound), errors.Is(err, room.ErrDeleted):
		return newProblem(http.StatusNotFound, "room_not_found", "room not found")
	case errors.Is(err, store.ErrInvalidCursor):
		return newProblem(http.StatusBadRequest, "invalid_cursor", "cursor is not one this server gave out")
	case errors.Is(err, room.ErrUnavailable), errors.Is(err, context.DeadlineExceeded), store.IsUnavailable(err):
		return unavailableProblem()
	default:
		return newProblem(http.StatusInternalServerError, "internal", "internal error")
	}
}

// unavailableProblem is the answer to a request the service could not
// finish in time.
func unavailableProblem() *Problem {
	p := newProblem(http.StatusServiceUnavailable, "unavailable", "the service cannot finish this request now (the database is slow or unreachable, or the service is stopping); nothing was applied unless a retry with the same Idempotency-Key says so")
	p.retryAfter = 1
	return p
}

// writeProblem answers with p as application/problem+json.
func writeProblem(w http.ResponseWriter, r *http.Request, p *Problem) {
	p.RequestID = requestIDFrom(r.Context())
	if p.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(p.retryAfter))
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

// writeError answers with the problem err maps to, logging server faults.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	p := asProblem(err)
	if p.Status == http.StatusInternalServerError && r.Context().Err() != nil {
		// The request's deadline cut a database call short: lib/pq says
		// "canceling statement" (57014), which wraps no context error.
		p = unavailableProblem()
	}
	switch {
	case p.Code == "unavailable":
		loggerFrom(r.Context()).Warn("request not finished", "err", err)
	case p.Status >= 500:
		loggerFrom(r.Context()).Error("request failed", "err", err)
	}
	writeProblem(w, r, p)
}

// contentTypeJSON is the Content-Type of JSON answers, one slice for every
// answer: header values are replaced, never changed in place.
var contentTypeJSON = []string{"application/json"}

// writeJSON answers status with v encoded as JSON.
func writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	w.Header()["Content-Type"] = contentTypeJSON
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		loggerFrom(r.Context()).Debug("write response", "err", err)
	}
}
