package handlers

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"

	"github.com/liveshare/liveshare/graph"
	"github.com/liveshare/liveshare/history"
	"github.com/liveshare/liveshare/room"
	"github.com/liveshare/liveshare/snapshot"
	"github.com/liveshare/liveshare/store"
)

// History (DESIGN.md section 11): the graph at a version, the diff between
// two versions, and restoring a version.

// versionParam reads the query parameter name as a version: absent gives
// ok false; present, it must be an integer from 0 up.
func versionParam(q url.Values, name string) (v int64, ok bool, err error) {
	if !q.Has(name) {
		return 0, false, nil
	}
	raw := q.Get(name)
	v, perr := strconv.ParseInt(raw, 10, 64)
	if perr != nil || v < 0 {
		return 0, false, problemf(http.StatusBadRequest, "invalid_version", "%s must be a version: an integer from 0 to %d, not %q", name, int64(math.MaxInt64), truncate(raw, 32))
	}
	return v, true, nil
}

// stateAt returns the room's graph at version, sorted, and whether it is
// the live room's current state. The current version is served from the
// live room, which holds it whatever was pruned; an older one is read from
// the snapshots and the op log. name is the parameter the version came
// from, for the problem when it is past the room's version.
func (a *API) stateAt(ctx context.Context, rm *room.Room, version int64, name string) (graph.State, error) {
	current := rm.Version()
	if version == current {
		// Copied only when it is the one asked for: writers wait for the
		// copy.
		if state, v := rm.Capture(); v == version {
			state.Sort()
			return state, nil
		}
		// A write came in between: the version is a past one now.
	}
	if version > current {
		return graph.State{}, problemf(http.StatusBadRequest, "invalid_version", "%s %d is past the room's version %d", name, version, current)
	}
	s, err := a.history.StateAt(ctx, rm.ID(), version)
	if errors.Is(err, history.ErrAhead) {
		// Only when another instance's view of the room lags this one's.
		return graph.State{}, problemf(http.StatusBadRequest, "invalid_version", "%s %d is past the room's version", name, version)
	}
	if errors.Is(err, history.ErrGone) {
		return graph.State{}, a.historyGone(ctx, rm.ID(), name, version)
	}
	return s, err
}

// statesAt is stateAt for the two past versions of a diff, read together.
func (a *API) statesAt(ctx context.Context, rm *room.Room, from, to int64) (graph.State, graph.State, error) {
	before, after, err := a.history.StatesAt(ctx, rm.ID(), from, to)
	if errors.Is(err, history.ErrGone) {
		// The log is pruned from its start: the older of the two is gone.
		name, version := "from", from
		if to < from {
			name, version = "to", to
		}
		return graph.State{}, graph.State{}, a.historyGone(ctx, rm.ID(), name, version)
	}
	if errors.Is(err, history.ErrAhead) {
		// Only when another instance's view of the room lags this one's.
		return graph.State{}, graph.State{}, problemf(http.StatusBadRequest, "invalid_version", "version %d is past the room's version", max(from, to))
	}
	return before, after, err
}

// historyGone is the 410 for a version no longer kept, naming the oldest
// one that is.
func (a *API) historyGone(ctx context.Context, roomID, name string, version int64) error {
	_, pruned, err := a.store.RoomVersion(ctx, roomID)
	if err != nil {
		return err
	}
	return problemf(http.StatusGone, "history_gone",
		"%s %d is no longer kept; the oldest version kept is %d (see LIVESHARE_HISTORY_HOURLY and LIVESHARE_HISTORY_DAILY)", name, version, pruned)
}

// graphAtVersion answers GET /rooms/{room}/graph?version=N.
func (a *API) graphAtVersion(w http.ResponseWriter, r *http.Request, version int64) {
	rm, err := a.rooms.Fresh(r.Context(), roomIDFrom(r))
	if err != nil {
		writeError(w, r, err)
		return
	}
	state, err := a.stateAt(r.Context(), rm, version, "version")
	if err != nil {
		writeError(w, r, err)
		return
	}
	// A past version never changes: its ETag is its version, as the live
	// graph's is.
	if etagMatches(r.Header.Get("If-None-Match"), etag(version)) {
		w.Header().Set("ETag", etag(version))
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("ETag", etag(version))
	writeJSON(w, r, http.StatusOK, graphResponse{RoomID: rm.ID(), Version: version, Nodes: state.Nodes, Edges: state.Edges})
}

type diffResponse struct {
	From int64 `json:"from"`
	To   int64 `json:"to"`
	graph.Diff
}

// getDiff answers GET /rooms/{room}/diff?from=A&to=B; to defaults to the
// room's current version.
func (a *API) getDiff(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	from, ok, err := versionParam(q, "from")
	if err == nil && !ok {
		err = newProblem(http.StatusBadRequest, "invalid_version", "from is required: the version to compare from")
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	to, hasTo, err := versionParam(q, "to")
	if err != nil {
		writeError(w, r, err)
		return
	}
	rm, err := a.rooms.Fresh(r.Context(), roomIDFrom(r))
	if err != nil {
		writeError(w, r, err)
		return
	}
	var before, after graph.State
	if current := rm.Version(); hasTo && from < current && to < current {
		// Two past versions: one replay serves both when it can.
		before, after, err = a.statesAt(r.Context(), rm, from, to)
	} else {
		if hasTo {
			after, err = a.stateAt(r.Context(), rm, to, "to")
		} else {
			after, to = rm.Capture()
			after.Sort()
		}
		if err == nil {
			before, err = a.stateAt(r.Context(), rm, from, "from")
		}
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, r, http.StatusOK, diffResponse{From: from, To: to, Diff: graph.DiffStates(before, after)})
}

type restoreVersionRequest struct {
	Version *int64 `json:"version"`
}

// restoreVersion answers POST /rooms/{room}/restore {"version":N}: a reset
// op to the state at N, by the same path as restoring a snapshot.
func (a *API) restoreVersion(w http.ResponseWriter, r *http.Request) {
	var req restoreVersionRequest
	if err := decodeJSON(w, r, a.maxBody, a.bodyTimeout, &req, false); err != nil {
		writeError(w, r, err)
		return
	}
	if req.Version == nil {
		writeError(w, r, newProblem(http.StatusBadRequest, "invalid_version", "version is required: the version to restore"))
		return
	}
	if *req.Version < 0 {
		writeError(w, r, problemf(http.StatusBadRequest, "invalid_version", "version must be 0 or more, not %d", *req.Version))
		return
	}
	version := *req.Version
	a.restore(w, r, func(ctx context.Context, rm *room.Room) (graph.State, *store.SnapshotMeta, error) {
		state, err := a.stateAt(ctx, rm, version, "version")
		return state, nil, err
	})
}

// restoreSource returns the state a restore resets the room to, and the
// stored snapshot it comes from (nil for a version).
type restoreSource func(ctx context.Context, rm *room.Room) (state graph.State, from *store.SnapshotMeta, err error)

// restore is the one path of every restore (a snapshot's, a version's):
// it reads the state from src and appends a reset op holding it, which
// makes a new version, sends reset to subscribers and keeps the history.
// What every restore must do belongs here: the restore happens only with
// its audit row, both written in the transaction that commits the reset op.
func (a *API) restore(w http.ResponseWriter, r *http.Request, src restoreSource) {
	roomID := roomIDFrom(r)
	key, err := idempotencyKey(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	rm, err := a.rooms.Fresh(r.Context(), roomID)
	if err != nil {
		writeError(w, r, err)
		return
	}
	state, from, err := src(r.Context(), rm)
	if err != nil {
		writeError(w, r, err)
		return
	}
	var snapshotID string
	audit := auditInTx(r)
	if from != nil {
		snapshotID = from.ID
		if audit != nil {
			auditSnapshot(*from)(audit)
		}
	}
	if audit != nil {
		audit.Version = nil // the store sets the version the reset made
	}
	res, err := a.rooms.Apply(r.Context(), roomID, room.Write{
		Ops:            []graph.Op{{Kind: graph.OpReset, SnapshotID: snapshotID, State: &state}},
		IdempotencyKey: key,
		Audit:          audit,
	})
	if err != nil {
		writeError(w, r, err)
		return
	}
	if res.Replayed {
		// Nothing was written this time: the first answer, again.
		if audit != nil {
			e, v := *audit, res.Version
			e.Version, e.Detail = &v, "idempotent replay: nothing restored again"
			a.recordAudit(r.Context(), e)
		}
		w.Header().Set("Idempotent-Replayed", "true")
	}
	writeJSON(w, r, http.StatusOK, map[string]int64{"version": res.Version})
}

// snapshotSource is the state of one of the room's stored snapshots.
func (a *API) snapshotSource(id string) restoreSource {
	return func(ctx context.Context, rm *room.Room) (graph.State, *store.SnapshotMeta, error) {
		s, err := a.snapshots.Get(ctx, rm.ID(), id)
		if err != nil {
			return graph.State{}, nil, err
		}
		state, _, err := snapshot.Decode(s.Data)
		if err != nil {
			return graph.State{}, nil, fmt.Errorf("decode snapshot %s: %w", id, err)
		}
		return state, &s.SnapshotMeta, nil
	}
}
