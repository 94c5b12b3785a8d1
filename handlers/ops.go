package handlers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/liveshare/liveshare/graph"
	"github.com/liveshare/liveshare/room"
)

const (
	maxOpsPerRequest  = 1000
	maxClientID       = 128
	maxIdempotencyKey = 128
	defaultOpsLimit   = 1000
	maxOpsLimit       = 10000
)

type graphResponse struct {
	RoomID  string       `json:"room_id"`
	Version int64        `json:"version"`
	Nodes   []graph.Node `json:"nodes"`
	Edges   []graph.Edge `json:"edges"`
}

func etag(version int64) string { return `"` + strconv.FormatInt(version, 10) + `"` }

// etagMatches reports whether an If-None-Match header names tag.
func etagMatches(header, tag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || t == tag || strings.TrimPrefix(t, "W/") == tag {
			return true
		}
	}
	return false
}

func (a *API) getGraph(w http.ResponseWriter, r *http.Request) {
	if version, ok, err := versionParam(r.URL.Query(), "version"); err != nil || ok {
		if err != nil {
			writeError(w, r, err)
			return
		}
		a.graphAtVersion(w, r, version)
		return
	}
	rm, err := a.rooms.Fresh(r.Context(), roomIDFrom(r))
	if err != nil {
		writeError(w, r, err)
		return
	}
	if v := rm.Version(); etagMatches(r.Header.Get("If-None-Match"), etag(v)) {
		w.Header().Set("ETag", etag(v))
		w.WriteHeader(http.StatusNotModified)
		return
	}
	// Capture holds the room's lock only for the copy; sorting happens
	// here, without keeping writers waiting.
	state, version := rm.Capture()
	state.Sort()
	w.Header().Set("ETag", etag(version))
	if w.Header().Get("Cache-Control") == "" { // no-store for a token's caller stays
		w.Header().Set("Cache-Control", "no-cache")
	}
	writeJSON(w, r, http.StatusOK, graphResponse{RoomID: rm.ID(), Version: version, Nodes: state.Nodes, Edges: state.Edges})
}

type postOpsRequest struct {
	Ops         []json.RawMessage `json:"ops"`
	ClientID    string            `json:"client_id"`
	BaseVersion *int64            `json:"base_version"`
}

type postOpsResponse struct {
	Version int64 `json:"version"`
	Applied int   `json:"applied"`
}

func (a *API) postOps(w http.ResponseWriter, r *http.Request) {
	key, err := idempotencyKey(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	body, err := readBody(w, r, a.maxBody, a.bodyTimeout)
	if err != nil {
		writeError(w, r, err)
		return
	}
	req, ok := decodeOpsFast(body)
	if !ok {
		// Anything the fast path does not take plainly, the general one
		// decodes or words the error of.
		req = postOpsRequest{}
		if err := decodeBody(body, &req, false); err != nil {
			writeError(w, r, err)
			return
		}
	}
	ops, err := parseOps(req)
	if err != nil {
		writeError(w, r, err)
		return
	}
	res, err := a.rooms.Apply(r.Context(), roomIDFrom(r), room.Write{
		Ops: ops, ClientID: req.ClientID, BaseVersion: req.BaseVersion, IdempotencyKey: key,
	})
	if err != nil {
		writeError(w, r, err)
		return
	}
	if res.Replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	writeOpsResponse(w, r, postOpsResponse{Version: res.Version, Applied: res.Applied})
}

// writeOpsResponse answers 200 with resp, the bytes writeJSON would write,
// without reflection.
func writeOpsResponse(w http.ResponseWriter, r *http.Request, resp postOpsResponse) {
	var buf [64]byte
	b := append(buf[:0], `{"version":`...)
	b = strconv.AppendInt(b, resp.Version, 10)
	b = append(b, `,"applied":`...)
	b = strconv.AppendInt(b, int64(resp.Applied), 10)
	b = append(b, "}\n"...) // json.Encoder ends each value with a newline
	w.Header()["Content-Type"] = contentTypeJSON
	w.WriteHeader(http.StatusOK)
	if _, err := w.Write(b); err != nil {
		loggerFrom(r.Context()).Debug("write response", "err", err)
	}
}

// opsDecoder is a reusable decoder of request bodies (decodeOpsFast).
type opsDecoder struct {
	src  []byte
	body bytes.Buffer // src, not copied: the decoder reads it in place
	dec  jsontext.Decoder
}

var opsDecoders = sync.Pool{New: func() any { return new(opsDecoder) }}

// decodeOpsFast decodes the body of a plain op post: one object with any of
// "ops" (an array of objects, or null), "client_id" (a string or null) and
// "base_version" (an integer or null), spelled exactly so, valid I-JSON
// without NUL escapes, nothing after it. It reports false for anything else,
// which decodeBody then decodes, or refuses with the words it always has:
// whatever it takes, decodeBody would decode to the same request. The ops
// are slices of body, which must not change while they are used.
func decodeOpsFast(body []byte) (req postOpsRequest, ok bool) {
	if bytes.Contains(body, []byte(`\u0000`)) {
		return postOpsRequest{}, false // checkIJSON's NUL rule
	}
	d := opsDecoders.Get().(*opsDecoder)
	d.src, d.body = body, *bytes.NewBuffer(body)
	d.dec.Reset(&d.body)
	defer func() {
		d.src, d.body = nil, bytes.Buffer{}
		d.dec.Reset(&d.body)
		opsDecoders.Put(d)
	}()
	req, ok = d.decode()
	if !ok {
		return postOpsRequest{}, false
	}
	return req, true
}

func (d *opsDecoder) decode() (req postOpsRequest, ok bool) {
	dec := &d.dec
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return req, false
	}
	for dec.PeekKind() == '"' {
		name, err := dec.ReadToken()
		if err != nil {
			return req, false
		}
		kind := dec.PeekKind()
		switch name.String() {
		case "ops":
			switch kind {
			case 'n':
				if _, err := dec.ReadToken(); err != nil {
					return req, false
				}
				req.Ops = nil
			case '[':
				if _, err := dec.ReadToken(); err != nil {
					return req, false
				}
				req.Ops = req.Ops[:0]
				for dec.PeekKind() == '{' {
					v, err := dec.ReadValue() // validated whole
					if err != nil {
						return req, false
					}
					// The op's bytes, located in the body by offset
					// rather than kept from the decoder's buffer.
					end := int(dec.InputOffset())
					req.Ops = append(req.Ops, json.RawMessage(d.src[end-len(v):end:end]))
				}
				if tok, err := dec.ReadToken(); err != nil || tok.Kind() != ']' {
					return req, false
				}
			default:
				return req, false
			}
		case "client_id":
			switch kind {
			case 'n':
				if _, err := dec.ReadToken(); err != nil {
					return req, false
				}
			case '"':
				tok, err := dec.ReadToken()
				if err != nil {
					return req, false
				}
				req.ClientID = tok.String()
			default:
				return req, false
			}
		case "base_version":
			switch kind {
			case 'n':
				if _, err := dec.ReadToken(); err != nil {
					return req, false
				}
				req.BaseVersion = nil
			case '0':
				v, err := dec.ReadValue()
				if err != nil {
					return req, false
				}
				// encoding/json's own reading of an int64.
				n, err := strconv.ParseInt(string(v), 10, 64)
				if err != nil {
					return req, false
				}
				req.BaseVersion = &n
			default:
				return req, false
			}
		default:
			return req, false // unknown, or a spelling only encoding/json matches
		}
	}
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '}' {
		return req, false
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return req, false // more after the object
	}
	return req, true
}

// idempotencyKey reads the request's Idempotency-Key ("" when none).
func idempotencyKey(r *http.Request) (string, error) {
	key := r.Header.Get("Idempotency-Key")
	if len(key) > maxIdempotencyKey {
		return "", problemf(http.StatusBadRequest, "invalid_request", "Idempotency-Key is longer than %d bytes", maxIdempotencyKey)
	}
	// Printable ASCII only: a key is compared byte for byte and stored as
	// text by both databases, which must agree on what it is.
	for i := range len(key) {
		if c := key[i]; c < 0x20 || c > 0x7e {
			return "", problemf(http.StatusBadRequest, "invalid_request", "Idempotency-Key holds byte 0x%02x at %d: only printable ASCII is allowed", c, i)
		}
	}
	return key, nil
}

// parseOps checks the request's envelope and decodes each op strictly.
func parseOps(req postOpsRequest) ([]graph.Op, error) {
	switch {
	case len(req.Ops) == 0:
		return nil, newProblem(http.StatusBadRequest, "invalid_request", "ops must hold at least one op")
	case len(req.Ops) > maxOpsPerRequest:
		return nil, problemf(http.StatusBadRequest, "too_many_ops", "ops holds %d ops; at most %d are allowed per request", len(req.Ops), maxOpsPerRequest)
	case utf8.RuneCountInString(req.ClientID) > maxClientID:
		return nil, problemf(http.StatusBadRequest, "invalid_request", "client_id is longer than %d characters", maxClientID)
	case req.BaseVersion != nil && *req.BaseVersion < 0:
		return nil, newProblem(http.StatusBadRequest, "invalid_request", "base_version must not be negative")
	}
	ops := make([]graph.Op, len(req.Ops))
	for i, raw := range req.Ops {
		op, err := graph.ParseOp(raw)
		if err != nil {
			var opErr *graph.OpError
			if errors.As(err, &opErr) {
				opErr.Index = i
				return nil, opErr
			}
			return nil, &graph.OpError{Index: i, Reason: err.Error()}
		}
		if op.Kind == graph.OpReset {
			return nil, &graph.OpError{Index: i, Op: op.Kind, Reason: "reset is recorded by restoring a snapshot and cannot be posted"}
		}
		if opErr := graph.CheckDataDepth(op); opErr != nil {
			opErr.Index = i
			return nil, opErr
		}
		ops[i] = op
	}
	return ops, nil
}

type loggedOpResponse struct {
	Seq       int64           `json:"seq"`
	Op        json.RawMessage `json:"op"`
	ClientID  string          `json:"client_id"`
	CreatedAt time.Time       `json:"created_at"`
}

type listOpsResponse struct {
	Version int64              `json:"version"`
	Ops     []loggedOpResponse `json:"ops"`
}

func (a *API) listOps(w http.ResponseWriter, r *http.Request) {
	id := roomIDFrom(r)
	q := r.URL.Query()
	since, err := intParam(q.Get("since"), "since", 0, 0, math.MaxInt64)
	if err != nil {
		writeError(w, r, err)
		return
	}
	limit, err := intParam(q.Get("limit"), "limit", defaultOpsLimit, 1, maxOpsLimit)
	if err != nil {
		writeError(w, r, err)
		return
	}
	recs, err := a.store.OpsSince(r.Context(), id, since, int(limit))
	if err != nil {
		writeError(w, r, fmt.Errorf("list ops: %w", err))
		return
	}
	// Read the room after its ops so version is never behind the ops
	// listed, and so a prune that ran meanwhile is seen.
	rm, err := a.store.GetRoom(r.Context(), id)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if since < rm.PrunedThrough {
		p := problemf(http.StatusGone, "history_gone",
			"ops up to version %d are no longer kept; start from the latest snapshot (GET /rooms/%s/snapshots/latest)", rm.PrunedThrough, id)
		writeProblem(w, r, p)
		return
	}
	resp := listOpsResponse{Version: rm.Version, Ops: make([]loggedOpResponse, 0, len(recs))}
	for _, rec := range recs {
		resp.Ops = append(resp.Ops, loggedOpResponse{Seq: rec.Seq, Op: rec.Op, ClientID: rec.ClientID, CreatedAt: rec.CreatedAt})
	}
	writeJSON(w, r, http.StatusOK, resp)
}
