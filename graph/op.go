package graph

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
)

// OpKind names an operation, as in the "op" field of its JSON.
type OpKind string

// The operations of DESIGN.md §3.
const (
	OpAddNode    OpKind = "add_node"
	OpUpdateNode OpKind = "update_node"
	OpRemoveNode OpKind = "remove_node"
	OpAddEdge    OpKind = "add_edge"
	OpUpdateEdge OpKind = "update_edge"
	OpRemoveEdge OpKind = "remove_edge"
	OpReset      OpKind = "reset"
)

// Op is one graph operation, as posted and as stored in the op log:
// json.Marshal(op) gives its wire form, holding only the fields of its kind.
type Op struct {
	Kind       OpKind          `json:"op"`
	ID         string          `json:"id,omitempty"`          // update_*, remove_*
	Node       *Node           `json:"node,omitempty"`        // add_node
	Edge       *Edge           `json:"edge,omitempty"`        // add_edge
	Patch      json.RawMessage `json:"patch,omitempty"`       // update_*: RFC 7396 merge patch object
	SnapshotID string          `json:"snapshot_id,omitempty"` // reset, optional
	State      *State          `json:"state,omitempty"`       // reset

	// checked is Patch as validation decoded it, kept so that applying
	// the op (the sequencer's trial, then the apply after the commit)
	// does not decode and check it again. It holds only while Patch is
	// the very slice it was decoded from (checkedPatch).
	checked *decodedPatch
}

// OpError says which op of a batch was rejected, at which field, and why.
type OpError struct {
	Index  int    // position of the op in its batch
	Op     OpKind // empty when the op could not be decoded that far
	Field  string // path such as "node.id", "edge.source", "patch.x"; "" for the whole op
	Reason string // human words
}

// Code is the problem code clients see for every OpError.
func (e *OpError) Code() string { return "invalid_op" }

// Error renders e as `op 3 (add_edge): edge.source: node "x" does not exist`.
func (e *OpError) Error() string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "op %d", e.Index)
	if e.Op != "" {
		fmt.Fprintf(&b, " (%s)", e.Op)
	}
	b.WriteString(": ")
	b.WriteString(e.detail())
	return b.String()
}

func (e *OpError) detail() string {
	if e.Field == "" {
		return e.Reason
	}
	return e.Field + ": " + e.Reason
}

func fieldErr(field, format string, args ...any) *OpError {
	return &OpError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// ParseOp strictly decodes one op from JSON and validates it (see
// [Op.Validate]). Unknown fields at any level, trailing data, wrong types and
// numbers outside float64 are rejected. Field names are matched exactly
// (case-sensitive), unlike encoding/json, so an op has exactly one spelling.
// A JSON null is treated as an absent field. The error is an *OpError with
// Index 0; callers decoding a batch set Index.
func ParseOp(data []byte) (Op, error) {
	op, ok := fastParseOp(data)
	var ferr *OpError
	if !ok {
		op, ferr = parseOp(data)
	}
	if ferr != nil {
		ferr.Op = op.Kind
		return Op{}, ferr
	}
	if err := op.Validate(); err != nil {
		return Op{}, err
	}
	return op, nil
}

func parseOp(data []byte) (Op, *OpError) {
	var op Op
	dec := json.NewDecoder(bytes.NewReader(data))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		if errors.Is(err, io.EOF) {
			return op, fieldErr("", "empty op")
		}
		return op, fieldErr("", "malformed JSON: %s", err.Error())
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return op, fieldErr("", "unexpected data after the op")
	}
	fields, ferr := decodeObject(raw, "", "op", "id", "node", "edge", "patch", "snapshot_id", "state")
	if ferr != nil {
		// Still name the kind in the error when it is readable.
		if k, ok := fields["op"]; ok {
			var s string
			if json.Unmarshal(k, &s) == nil {
				op.Kind = OpKind(s)
			}
		}
		return op, ferr
	}
	if fields == nil {
		return op, fieldErr("", "must be a JSON object")
	}
	var s string
	if ferr := decodeString(fields["op"], "op", &s); ferr != nil {
		return op, ferr
	}
	op.Kind = OpKind(s)
	if ferr := decodeString(fields["id"], "id", &op.ID); ferr != nil {
		return op, ferr
	}
	if v := fields["node"]; !isNull(v) {
		n, ferr := parseNode(v, "node")
		if ferr != nil {
			return op, ferr
		}
		op.Node = &n
	}
	if v := fields["edge"]; !isNull(v) {
		e, ferr := parseEdge(v, "edge")
		if ferr != nil {
			return op, ferr
		}
		op.Edge = &e
	}
	if v := fields["patch"]; !isNull(v) {
		op.Patch = cloneBytes(v)
	}
	if ferr := decodeString(fields["snapshot_id"], "snapshot_id", &op.SnapshotID); ferr != nil {
		return op, ferr
	}
	if v := fields["state"]; !isNull(v) {
		st, ferr := parseState(v, "state")
		if ferr != nil {
			return op, ferr
		}
		op.State = &st
	}
	return op, nil
}

func parseNode(raw json.RawMessage, path string) (Node, *OpError) {
	var n Node
	f, ferr := decodeObject(raw, path, "id", "kind", "label", "x", "y", "data")
	if ferr != nil {
		return n, ferr
	}
	if f == nil {
		return n, fieldErr(path, "must be a JSON object")
	}
	for _, d := range []struct {
		key string
		dst *string
	}{{"id", &n.ID}, {"kind", &n.Kind}, {"label", &n.Label}} {
		if ferr := decodeString(f[d.key], join(path, d.key), d.dst); ferr != nil {
			return n, ferr
		}
	}
	if ferr := decodeFloat(f["x"], join(path, "x"), &n.X); ferr != nil {
		return n, ferr
	}
	if ferr := decodeFloat(f["y"], join(path, "y"), &n.Y); ferr != nil {
		return n, ferr
	}
	if v := f["data"]; !isNull(v) {
		n.Data = cloneBytes(v)
	}
	return n, nil
}

func parseEdge(raw json.RawMessage, path string) (Edge, *OpError) {
	var e Edge
	f, ferr := decodeObject(raw, path, "id", "kind", "source", "target", "label", "data")
	if ferr != nil {
		return e, ferr
	}
	if f == nil {
		return e, fieldErr(path, "must be a JSON object")
	}
	for _, d := range []struct {
		key string
		dst *string
	}{{"id", &e.ID}, {"kind", &e.Kind}, {"source", &e.Source}, {"target", &e.Target}, {"label", &e.Label}} {
		if ferr := decodeString(f[d.key], join(path, d.key), d.dst); ferr != nil {
			return e, ferr
		}
	}
	if v := f["data"]; !isNull(v) {
		e.Data = cloneBytes(v)
	}
	return e, nil
}

func parseState(raw json.RawMessage, path string) (State, *OpError) {
	st := State{Nodes: []Node{}, Edges: []Edge{}}
	f, ferr := decodeObject(raw, path, "nodes", "edges")
	if ferr != nil {
		return st, ferr
	}
	if f == nil {
		return st, fieldErr(path, "must be a JSON object")
	}
	nodes, ferr := decodeArray(f["nodes"], join(path, "nodes"))
	if ferr != nil {
		return st, ferr
	}
	for i, r := range nodes {
		n, ferr := parseNode(r, fmt.Sprintf("%s[%d]", join(path, "nodes"), i))
		if ferr != nil {
			return st, ferr
		}
		st.Nodes = append(st.Nodes, n)
	}
	edges, ferr := decodeArray(f["edges"], join(path, "edges"))
	if ferr != nil {
		return st, ferr
	}
	for i, r := range edges {
		e, ferr := parseEdge(r, fmt.Sprintf("%s[%d]", join(path, "edges"), i))
		if ferr != nil {
			return st, ferr
		}
		st.Edges = append(st.Edges, e)
	}
	return st, nil
}

// decodeObject returns the members of a JSON object, nil for null, and
// rejects keys not in allowed (reporting the first in sorted order, so the
// error does not depend on map iteration).
func decodeObject(raw json.RawMessage, path string, allowed ...string) (map[string]json.RawMessage, *OpError) {
	if isNull(raw) {
		return nil, nil
	}
	if firstByte(raw) != '{' {
		return nil, fieldErr(path, "must be a JSON object")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fieldErr(path, "malformed JSON object: %s", err.Error())
	}
	var unknown []string
	for k := range m {
		if !contains(allowed, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return m, fieldErr(join(path, unknown[0]), "unknown field")
	}
	return m, nil
}

func decodeArray(raw json.RawMessage, path string) ([]json.RawMessage, *OpError) {
	if isNull(raw) {
		return nil, nil
	}
	if firstByte(raw) != '[' {
		return nil, fieldErr(path, "must be a JSON array")
	}
	var a []json.RawMessage
	if err := json.Unmarshal(raw, &a); err != nil {
		return nil, fieldErr(path, "malformed JSON array: %s", err.Error())
	}
	return a, nil
}

func decodeString(raw json.RawMessage, path string, dst *string) *OpError {
	if isNull(raw) {
		return nil
	}
	if firstByte(raw) != '"' || json.Unmarshal(raw, dst) != nil {
		return fieldErr(path, "must be a string")
	}
	return nil
}

func decodeFloat(raw json.RawMessage, path string, dst *float64) *OpError {
	if isNull(raw) {
		return nil
	}
	c := firstByte(raw)
	if c != '-' && (c < '0' || c > '9') {
		return fieldErr(path, "must be a number")
	}
	// encoding/json refuses numbers beyond float64 (1e400) rather than
	// turning them into infinities.
	if json.Unmarshal(raw, dst) != nil {
		return fieldErr(path, "must be a finite number (%s is out of range)", string(bytes.TrimSpace(raw)))
	}
	return nil
}

func isNull(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || string(t) == "null"
}

func firstByte(raw json.RawMessage) byte {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 {
		return 0
	}
	return t[0]
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// DecodeLogged decodes an op read back from a room's op log. Logged ops
// were validated and normalised by ParseOp before they were stored, so only
// the shape Apply relies on is checked here (a known kind carrying the
// fields it needs); whatever needs the graph is still checked by Apply.
// Replaying thousands of logged ops for a past version (the history
// endpoints) is dominated by decoding otherwise: this costs a fraction of
// ParseOp.
func DecodeLogged(data []byte) (Op, error) {
	var op Op
	if err := json.Unmarshal(data, &op); err != nil {
		return Op{}, fmt.Errorf("decode logged op: %w", err)
	}
	shape, ok := opShapes[op.Kind]
	if !ok {
		return Op{}, fmt.Errorf("decode logged op: unknown op %q", string(op.Kind))
	}
	if presentFields(&op)&shape.required != shape.required {
		return Op{}, fmt.Errorf("decode logged op: %s lacks a field it needs", op.Kind)
	}
	return op, nil
}
