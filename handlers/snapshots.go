package handlers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/liveshare/liveshare/graph"
	"github.com/liveshare/liveshare/room"
	"github.com/liveshare/liveshare/snapshot"
	"github.com/liveshare/liveshare/store"
)

// snapshotMeta is a snapshot's metadata as clients see it.
type snapshotMeta struct {
	ID           string    `json:"id"`
	RoomID       string    `json:"room_id"`
	Version      int64     `json:"version"`
	CreatedAt    time.Time `json:"created_at"`
	SizeBytes    int64     `json:"size_bytes"`
	ElementCount int64     `json:"element_count"`
	Trigger      string    `json:"trigger"`
}

func metaOf(m store.SnapshotMeta) snapshotMeta {
	return snapshotMeta{ID: m.ID, RoomID: m.RoomID, Version: m.Version, CreatedAt: m.CreatedAt,
		SizeBytes: m.SizeBytes, ElementCount: m.ElementCount, Trigger: m.Trigger}
}

type snapshotWithState struct {
	snapshotMeta
	State graph.State `json:"state"`
}

type snapshotIDKeyType struct{}

// snapshotIDParam checks that {snapshotID} is a UUID.
func snapshotIDParam(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw := chi.URLParam(r, "snapshotID")
		id, err := uuid.Parse(raw)
		if err != nil || len(raw) != 36 {
			writeProblem(w, r, problemf(http.StatusBadRequest, "invalid_snapshot_id", "snapshot id %q is not a UUID", truncate(raw, 64)))
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), snapshotIDKeyType{}, id.String())))
	})
}

func snapshotIDFrom(r *http.Request) string {
	id, _ := r.Context().Value(snapshotIDKeyType{}).(string)
	return id
}

// roomExists answers 404 for a room that does not exist.
func (a *API) roomExists(w http.ResponseWriter, r *http.Request) bool {
	if _, err := a.store.GetRoom(r.Context(), roomIDFrom(r)); err != nil {
		writeError(w, r, err)
		return false
	}
	return true
}

func (a *API) listSnapshots(w http.ResponseWriter, r *http.Request) {
	if !a.roomExists(w, r) {
		return
	}
	metas, err := a.snapshots.List(r.Context(), roomIDFrom(r))
	if err != nil {
		writeError(w, r, err)
		return
	}
	out := make([]snapshotMeta, 0, len(metas))
	for _, m := range metas {
		out = append(out, metaOf(m))
	}
	auditOK(r, nil)
	writeJSON(w, r, http.StatusOK, map[string]any{"snapshots": out})
}

func (a *API) latestSnapshot(w http.ResponseWriter, r *http.Request) {
	if !a.roomExists(w, r) {
		return
	}
	s, err := a.snapshots.Latest(r.Context(), roomIDFrom(r))
	if err != nil {
		writeError(w, r, err)
		return
	}
	auditOK(r, auditSnapshot(s.SnapshotMeta))
	a.writeSnapshot(w, r, s)
}

func (a *API) getSnapshot(w http.ResponseWriter, r *http.Request) {
	if !a.roomExists(w, r) {
		return
	}
	s, err := a.snapshots.Get(r.Context(), roomIDFrom(r), snapshotIDFrom(r))
	if err != nil {
		writeError(w, r, err)
		return
	}
	auditOK(r, auditSnapshot(s.SnapshotMeta))
	a.writeSnapshot(w, r, s)
}

// auditSnapshot fills an audit row with the snapshot it is about.
func auditSnapshot(m store.SnapshotMeta) func(e *store.AuditEntry) {
	return func(e *store.AuditEntry) {
		v, n := m.Version, m.SizeBytes
		e.SnapshotID, e.Version, e.Bytes = m.ID, &v, &n
	}
}

// writeSnapshot answers the stored binary with Accept:
// application/octet-stream, JSON with the decoded state otherwise.
func (a *API) writeSnapshot(w http.ResponseWriter, r *http.Request, s store.Snapshot) {
	tag := `"` + s.ID + `"`
	w.Header().Set("ETag", tag)
	w.Header().Set("Vary", "Accept")
	if inm := r.Header.Get("If-None-Match"); inm != "" && etagMatches(inm, tag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if acceptsBinary(r) {
		h := w.Header()
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Length", strconv.Itoa(len(s.Data)))
		h.Set("X-Snapshot-Id", s.ID)
		h.Set("X-Snapshot-Version", strconv.FormatInt(s.Version, 10))
		h.Set("X-Element-Count", strconv.FormatInt(s.ElementCount, 10))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(s.Data)
		return
	}
	state, _, err := snapshot.Decode(s.Data)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, r, http.StatusOK, snapshotWithState{snapshotMeta: metaOf(s.SnapshotMeta), State: state})
}

// acceptsBinary reports whether the client asked for the stored binary.
func acceptsBinary(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		if containsMediaType(v, "application/octet-stream") {
			return true
		}
	}
	return false
}

func (a *API) createSnapshot(w http.ResponseWriter, r *http.Request) {
	rm, err := a.rooms.Fresh(r.Context(), roomIDFrom(r))
	if err != nil {
		writeError(w, r, err)
		return
	}
	status := http.StatusCreated
	meta, err := a.snapshots.Take(r.Context(), rm, snapshot.TriggerManual)
	if errors.Is(err, store.ErrSnapshotExists) {
		// The room did not change since a snapshot of its version was
		// stored: answer that one rather than store a copy.
		// Writers may have moved the room on since: any stored snapshot at
		// that version or later answers the request.
		status = http.StatusOK
		version := meta.Version
		meta, err = a.store.LatestSnapshotMeta(r.Context(), rm.ID())
		if err == nil && meta.Version < version {
			err = fmt.Errorf("the snapshot at version %d is still being stored: %w", version, room.ErrUnavailable)
		}
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	auditOK(r, auditSnapshot(meta))
	w.Header().Set("Location", "/rooms/"+rm.ID()+"/snapshots/"+meta.ID)
	writeJSON(w, r, status, metaOf(meta))
}

func (a *API) clearSnapshots(w http.ResponseWriter, r *http.Request) {
	rm, err := a.rooms.Fresh(r.Context(), roomIDFrom(r))
	if err != nil {
		writeError(w, r, err)
		return
	}
	if _, err := a.snapshots.Clear(r.Context(), rm, auditInTx(r)); err != nil {
		writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// restoreSnapshot appends a reset op holding the snapshot's state: a new
// version, a reset event to subscribers, and the history kept. It takes the
// one path of every restore (restore).
func (a *API) restoreSnapshot(w http.ResponseWriter, r *http.Request) {
	a.restore(w, r, a.snapshotSource(snapshotIDFrom(r)))
}

type roomSnapshotStats struct {
	Count          int64      `json:"count"`
	Checkpoints    int64      `json:"checkpoints"`
	TotalBytes     int64      `json:"total_bytes"`
	LatestVersion  *int64     `json:"latest_version"`
	LatestAt       *time.Time `json:"latest_at"`
	VersionsBehind int64      `json:"versions_behind"`
	LastEncodeMS   *float64   `json:"last_encode_ms"`
}

func (a *API) roomSnapshotStats(w http.ResponseWriter, r *http.Request) {
	roomID := roomIDFrom(r)
	info, err := a.store.GetRoom(r.Context(), roomID)
	if err != nil {
		writeError(w, r, err)
		return
	}
	st, err := a.snapshots.Stats(r.Context(), roomID)
	if err != nil {
		writeError(w, r, err)
		return
	}
	out := roomSnapshotStats{Count: st.Count, Checkpoints: st.Checkpoints, TotalBytes: st.TotalBytes, VersionsBehind: info.Version}
	if st.Latest != nil {
		out.LatestVersion, out.LatestAt = &st.Latest.Version, &st.Latest.CreatedAt
		out.VersionsBehind = info.Version - st.Latest.Version
	}
	if st.LastEncode > 0 {
		ms := float64(st.LastEncode.Microseconds()) / 1000
		out.LastEncodeMS = &ms
	}
	writeJSON(w, r, http.StatusOK, out)
}

type globalSnapshotStats struct {
	Rooms       int64      `json:"rooms"`
	Snapshots   int64      `json:"snapshots"`
	Checkpoints int64      `json:"checkpoints"`
	Bytes       int64      `json:"bytes"`
	Taken       int64      `json:"taken"`
	Failures    int64      `json:"failures"`
	LastRun     *time.Time `json:"last_run"`
}

func (a *API) globalSnapshotStats(w http.ResponseWriter, r *http.Request) {
	tot, err := a.snapshots.StoredTotals(r.Context())
	if err != nil {
		writeError(w, r, err)
		return
	}
	proc := a.snapshots.Totals()
	out := globalSnapshotStats{Rooms: tot.Rooms, Snapshots: tot.Snapshots, Checkpoints: tot.Checkpoints, Bytes: tot.Bytes,
		Taken: proc.Taken.Load(), Failures: proc.Failures.Load()}
	if ns := proc.LastRun.Load(); ns > 0 {
		t := time.Unix(0, ns).UTC()
		out.LastRun = &t
	}
	writeJSON(w, r, http.StatusOK, out)
}

// snapshotProblem maps the errors of snapshots; asProblem calls it.
func snapshotProblem(err error) *Problem {
	switch {
	case errors.Is(err, store.ErrSnapshotNotFound):
		return newProblem(http.StatusNotFound, "snapshot_not_found", "snapshot not found in this room")
	case errors.Is(err, snapshot.ErrTooLarge):
		return newProblem(http.StatusRequestEntityTooLarge, "snapshot_too_large", "the room's snapshot is larger than LIVESHARE_SNAPSHOT_MAX_BYTES and was not stored")
	case errors.Is(err, snapshot.ErrMalformed):
		return newProblem(http.StatusUnprocessableEntity, "snapshot_corrupt", "the stored snapshot does not verify; restore another one")
	case errors.Is(err, store.ErrSealOpen):
		// An op of the log does not open (altered, or moved from another
		// room or seq): the room cannot be replayed past it.
		return newProblem(http.StatusServiceUnavailable, "room_unrecoverable", "the room's op log holds an op that does not open; it cannot be replayed")
	case errors.Is(err, room.ErrUnrecoverable):
		return newProblem(http.StatusServiceUnavailable, "room_unrecoverable", "the room has no snapshot that verifies and its op log is pruned")
	}
	return nil
}

// containsMediaType reports whether an Accept header value lists mediaType.
func containsMediaType(accept, mediaType string) bool {
	for _, part := range strings.Split(accept, ",") {
		mt, _, _ := strings.Cut(part, ";")
		if strings.EqualFold(strings.TrimSpace(mt), mediaType) {
			return true
		}
	}
	return false
}
