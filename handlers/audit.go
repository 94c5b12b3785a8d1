package handlers

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/liveshare/liveshare/store"
)

// AuditLog takes the audit rows that are not written in the transaction of
// a change (reads, snapshots taken, rooms created, sessions, and every
// denied or limited attempt) and writes them in batches.
type AuditLog interface {
	// Record queues e; it never blocks on the database.
	Record(e store.AuditEntry)
	// Flush writes what is queued now and returns when it is written.
	Flush(ctx context.Context) error
}

const (
	outcomeOK      = store.OutcomeOK
	outcomeDenied  = store.OutcomeDenied
	outcomeLimited = store.OutcomeLimited

	defaultAuditLimit = 50
	maxAuditLimit     = 100
)

// auditSlot is the audit row of one request, filled in as the request goes:
// the access rule or the rate limit set a refusal, the handler success and
// what it touched.
type auditSlot struct {
	entry store.AuditEntry
	// inTx: the handler gave the row to the store, which writes it in
	// the change's own transaction (or not at all).
	inTx bool
}

type auditKey struct{}

func auditFrom(ctx context.Context) *auditSlot {
	s, _ := ctx.Value(auditKey{}).(*auditSlot)
	return s
}

// markAudit sets the request's outcome, when its route is audited and no
// outcome was set before.
func markAudit(ctx context.Context, outcome string) {
	if s := auditFrom(ctx); s != nil && s.entry.Outcome == "" {
		s.entry.Outcome = outcome
	}
}

// auditOK records the request as done, with what fill adds (the snapshot,
// its version and size).
func auditOK(r *http.Request, fill func(e *store.AuditEntry)) {
	s := auditFrom(r.Context())
	if s == nil {
		return
	}
	s.entry.Outcome = outcomeOK
	if fill != nil {
		fill(&s.entry)
	}
}

// auditInTx returns the request's row for the store to write in the
// transaction of the change; the request records nothing else. nil when
// the route is not audited.
func auditInTx(r *http.Request) *store.AuditEntry {
	s := auditFrom(r.Context())
	if s == nil {
		return nil
	}
	s.inTx = true
	e := s.entry
	e.Outcome = outcomeOK
	return &e
}

// audited records the route's requests under action: done, denied by the
// access rule, or limited. It must come before the access rule and the
// rate limit, which mark the refusals. Requests that fail otherwise (bad
// input, a missing snapshot, a database fault) are not recorded: nothing
// was accessed.
func (a *API) audited(action string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := r.Context()
			s := &auditSlot{entry: store.AuditEntry{Action: action, RoomID: roomIDFrom(r),
				Address: addressFrom(ctx), RequestID: requestIDFrom(ctx)}}
			if p := callerFrom(ctx).p; p != nil {
				s.entry.Subject = p.Subject
			}
			next.ServeHTTP(w, r.WithContext(context.WithValue(ctx, auditKey{}, s)))
			if s.inTx || s.entry.Outcome == "" {
				return
			}
			s.entry.At = time.Now()
			a.recordAudit(ctx, s.entry)
		})
	}
}

// recordAudit queues e for the batcher; without one (handlers' own tests)
// it writes e at once.
func (a *API) recordAudit(ctx context.Context, e store.AuditEntry) {
	if a.audit != nil {
		a.audit.Record(e)
		return
	}
	if err := a.store.InsertAudit(context.WithoutCancel(ctx), []store.AuditEntry{e}); err != nil {
		loggerFrom(ctx).Error("audit row not written", "action", e.Action, "err", err)
	}
}

// auditResponse is one audit row as clients see it.
type auditResponse struct {
	ID         int64     `json:"id"`
	At         time.Time `json:"at"`
	Subject    string    `json:"subject"`
	Address    string    `json:"address"`
	Action     string    `json:"action"`
	RoomID     *string   `json:"room_id"`
	SnapshotID *string   `json:"snapshot_id"`
	Version    *int64    `json:"version"`
	Bytes      *int64    `json:"bytes"`
	Outcome    string    `json:"outcome"`
	RequestID  string    `json:"request_id"`
	Detail     string    `json:"detail,omitempty"`
}

type auditListResponse struct {
	Entries    []auditResponse `json:"entries"`
	NextCursor *string         `json:"next_cursor"`
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func (a *API) roomAudit(w http.ResponseWriter, r *http.Request) {
	// In open mode everyone may ask of any id: one that names no room is
	// 404, as for every other endpoint of a room.
	if !a.roomExists(w, r) {
		return
	}
	a.listAudit(w, r, roomIDFrom(r))
}

func (a *API) globalAudit(w http.ResponseWriter, r *http.Request) {
	a.listAudit(w, r, "")
}

// listAudit answers a page of the audit log, newest first, of one room or
// ("" ) of all. What this instance queued before the request is written
// first, so a caller reads every access answered here before it asked.
func (a *API) listAudit(w http.ResponseWriter, r *http.Request, roomID string) {
	q := r.URL.Query()
	limit, err := intParam(q.Get("limit"), "limit", defaultAuditLimit, 1, maxAuditLimit)
	if err != nil {
		writeError(w, r, err)
		return
	}
	action := q.Get("action")
	if action != "" && !slices.Contains(store.AuditActions, action) {
		writeProblem(w, r, problemf(http.StatusBadRequest, "invalid_parameter",
			"action %q is not one of %s", truncate(action, 64), strings.Join(store.AuditActions, ", ")))
		return
	}
	if a.audit != nil {
		if err := a.audit.Flush(r.Context()); err != nil {
			writeError(w, r, err)
			return
		}
	}
	rows, next, err := a.store.ListAudit(r.Context(), store.AuditFilter{RoomID: roomID, Action: action, Limit: int(limit), Cursor: q.Get("cursor")})
	if err != nil {
		writeError(w, r, err)
		return
	}
	resp := auditListResponse{Entries: make([]auditResponse, 0, len(rows))}
	for _, e := range rows {
		resp.Entries = append(resp.Entries, auditResponse{ID: e.ID, At: e.At, Subject: e.Subject, Address: e.Address,
			Action: e.Action, RoomID: nullable(e.RoomID), SnapshotID: nullable(e.SnapshotID), Version: e.Version,
			Bytes: e.Bytes, Outcome: e.Outcome, RequestID: e.RequestID, Detail: e.Detail})
	}
	if next != "" {
		resp.NextCursor = &next
	}
	writeJSON(w, r, http.StatusOK, resp)
}
