package graph

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"unicode/utf8"
)

// Limits of DESIGN.md §3.
const (
	MaxIDLen    = 128       // bytes; ids are ASCII
	MaxTextLen  = 256       // characters (runes), for kind and label
	MaxDataSize = 64 * 1024 // bytes of canonical JSON
)

const idRule = "must be 1-128 characters of [A-Za-z0-9_.:-]"

// Validate checks the op's shape without a graph and normalises it: Data
// becomes canonical JSON (compact, keys sorted, numbers verbatim, "{}" when
// absent), Patch becomes canonical JSON, a reset State gets non-nil slices.
// Normalisation replaces op's pointers and slices with new ones and never
// writes through the ones it was given, so a caller's Node, Edge or State is
// left as it was.
//
// Rules: a known kind; exactly the fields of that kind (add_node: node;
// add_edge: edge; update_*: id and patch; remove_*: id; reset: state and an
// optional snapshot_id); ids of 1-128 characters of [A-Za-z0-9_.:-]; kind and
// label at most 256 characters of valid UTF-8; x and y finite; data a JSON object
// of at most 64 KiB encoded, holding no number beyond float64; patch a JSON
// object whose top-level keys are fields of the element, with the right types
// and without null except for data. A reset's state must be valid as a whole
// (see [FromState]). What needs the graph (existence, id clashes, the id a
// patch keeps) is checked by [Graph.Apply].
func (op *Op) Validate() error {
	if ferr := op.validate(); ferr != nil {
		ferr.Op = op.Kind
		return ferr
	}
	return nil
}

// fields an op may carry, in the order they are reported.
const (
	fID = 1 << iota
	fNode
	fEdge
	fPatch
	fSnapshotID
	fState
)

var fieldNames = []struct {
	bit  int
	name string
}{{fID, "id"}, {fNode, "node"}, {fEdge, "edge"}, {fPatch, "patch"}, {fSnapshotID, "snapshot_id"}, {fState, "state"}}

var opShapes = map[OpKind]struct{ required, optional int }{
	OpAddNode:    {fNode, 0},
	OpUpdateNode: {fID | fPatch, 0},
	OpRemoveNode: {fID, 0},
	OpAddEdge:    {fEdge, 0},
	OpUpdateEdge: {fID | fPatch, 0},
	OpRemoveEdge: {fID, 0},
	OpReset:      {fState, fSnapshotID},
}

func (op *Op) validate() *OpError {
	_, ferr := op.validateDecoded()
	return ferr
}

// validateDecoded is validate that also returns an update's patch as it
// decoded it (keys sorted), so that applying the op does not decode the
// patch a second time.
func (op *Op) validateDecoded() (*decodedPatch, *OpError) {
	shape, ok := opShapes[op.Kind]
	if !ok {
		if op.Kind == "" {
			return nil, fieldErr("op", "is required")
		}
		return nil, fieldErr("op", "unknown op %q", string(op.Kind))
	}
	var patch *decodedPatch
	present := presentFields(op)
	for _, f := range fieldNames {
		if present&f.bit != 0 && (shape.required|shape.optional)&f.bit == 0 {
			return nil, fieldErr(f.name, "not allowed in %s", string(op.Kind))
		}
	}
	for _, f := range fieldNames {
		if shape.required&f.bit != 0 && present&f.bit == 0 {
			return nil, fieldErr(f.name, "is required for %s", string(op.Kind))
		}
	}

	switch op.Kind {
	case OpAddNode:
		n, ferr := validateNode(*op.Node, "node")
		if ferr != nil {
			return nil, ferr
		}
		op.Node = &n
	case OpAddEdge:
		e, ferr := validateEdge(*op.Edge, "edge")
		if ferr != nil {
			return nil, ferr
		}
		op.Edge = &e
	case OpUpdateNode, OpUpdateEdge:
		if !ValidID(op.ID) {
			return nil, fieldErr("id", idRule)
		}
		if c := op.checkedPatch(); c != nil {
			patch = c
			break
		}
		edge := op.Kind == OpUpdateEdge
		p, m, ferr := validatePatch(op.Patch, edge)
		if ferr != nil {
			return nil, ferr
		}
		m.raw, m.edge = p, edge
		op.Patch, op.checked = p, m
		patch = m
	case OpRemoveNode, OpRemoveEdge:
		if !ValidID(op.ID) {
			return nil, fieldErr("id", idRule)
		}
	case OpReset:
		if op.SnapshotID != "" && !ValidID(op.SnapshotID) {
			return nil, fieldErr("snapshot_id", idRule)
		}
		s, ferr := validateState(*op.State, "state")
		if ferr != nil {
			return nil, ferr
		}
		op.State = &s
	}
	return patch, nil
}

// ValidID reports whether id is a valid node or edge id (idRule).
func ValidID(id string) bool {
	if len(id) == 0 || len(id) > MaxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '_', c == '.', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

func checkText(s, path string) *OpError {
	if !utf8.ValidString(s) {
		// JSON cannot carry invalid UTF-8 faithfully; refuse it rather than
		// let the op log and the live state disagree.
		return fieldErr(path, "must be valid UTF-8")
	}
	if n := utf8.RuneCountInString(s); n > MaxTextLen {
		return fieldErr(path, "must be at most %d characters, is %d", MaxTextLen, n)
	}
	return nil
}

func checkCoord(f float64, path string) *OpError {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return fieldErr(path, "must be a finite number")
	}
	return nil
}

// validateNode returns n normalised, with Data in fresh canonical bytes.
func validateNode(n Node, path string) (Node, *OpError) {
	if !ValidID(n.ID) {
		return n, fieldErr(join(path, "id"), idRule)
	}
	if ferr := checkText(n.Kind, join(path, "kind")); ferr != nil {
		return n, ferr
	}
	if ferr := checkText(n.Label, join(path, "label")); ferr != nil {
		return n, ferr
	}
	if ferr := checkCoord(n.X, join(path, "x")); ferr != nil {
		return n, ferr
	}
	if ferr := checkCoord(n.Y, join(path, "y")); ferr != nil {
		return n, ferr
	}
	d, ferr := validateData(n.Data, join(path, "data"))
	if ferr != nil {
		return n, ferr
	}
	n.Data = d
	return n, nil
}

func validateEdge(e Edge, path string) (Edge, *OpError) {
	if !ValidID(e.ID) {
		return e, fieldErr(join(path, "id"), idRule)
	}
	if ferr := checkText(e.Kind, join(path, "kind")); ferr != nil {
		return e, ferr
	}
	if !ValidID(e.Source) {
		return e, fieldErr(join(path, "source"), idRule)
	}
	if !ValidID(e.Target) {
		return e, fieldErr(join(path, "target"), idRule)
	}
	if ferr := checkText(e.Label, join(path, "label")); ferr != nil {
		return e, ferr
	}
	d, ferr := validateData(e.Data, join(path, "data"))
	if ferr != nil {
		return e, ferr
	}
	e.Data = d
	return e, nil
}

func validateData(raw json.RawMessage, path string) (json.RawMessage, *OpError) {
	d, err := canonicalData(raw)
	if err != nil {
		return nil, fieldErr(path, "%s", err.Error())
	}
	if len(d) > MaxDataSize {
		return nil, fieldErr(path, "must be at most %d bytes encoded, is %d", MaxDataSize, len(d))
	}
	return d, nil
}

// validateState checks s as a whole graph and returns a normalised copy that
// shares no memory with s.
func validateState(s State, path string) (State, *OpError) {
	out := State{Nodes: make([]Node, len(s.Nodes)), Edges: make([]Edge, len(s.Edges))}
	// owner records what each id names, to report clashes across kinds.
	owner := make(map[string]string, len(s.Nodes)+len(s.Edges))
	// Element paths are formatted only for an error: a 100k-element state
	// would otherwise format 100k of them to report nothing.
	nodePath := func(i int) string { return fmt.Sprintf("%s[%d]", join(path, "nodes"), i) }
	edgePath := func(i int) string { return fmt.Sprintf("%s[%d]", join(path, "edges"), i) }
	for i, n := range s.Nodes {
		vn, ferr := validateNode(n, "")
		if ferr != nil {
			_, ferr = validateNode(n, nodePath(i)) // the same error, named
			return State{}, ferr
		}
		if _, dup := owner[n.ID]; dup {
			return State{}, fieldErr(nodePath(i)+".id", "id %q is used by another node", n.ID)
		}
		owner[n.ID] = "node"
		out.Nodes[i] = vn
	}
	for i, e := range s.Edges {
		ve, ferr := validateEdge(e, "")
		if ferr != nil {
			_, ferr = validateEdge(e, edgePath(i))
			return State{}, ferr
		}
		if kind, dup := owner[e.ID]; dup {
			return State{}, fieldErr(edgePath(i)+".id", "id %q is used by another %s", e.ID, kind)
		}
		owner[e.ID] = "edge"
		if owner[e.Source] != "node" {
			return State{}, fieldErr(edgePath(i)+".source", "node %q does not exist", e.Source)
		}
		if owner[e.Target] != "node" {
			return State{}, fieldErr(edgePath(i)+".target", "node %q does not exist", e.Target)
		}
		out.Edges[i] = ve
	}
	return out, nil
}

var (
	nodePatchKeys = []string{"data", "id", "kind", "label", "x", "y"}
	edgePatchKeys = []string{"data", "id", "kind", "label", "source", "target"}
)

// validatePatch checks what can be checked of a merge patch without the
// graph and returns it canonical.
func validatePatch(raw json.RawMessage, edge bool) (json.RawMessage, *decodedPatch, *OpError) {
	// Numbers are checked per member below, so errors name the member.
	v, canonical, ok := decodeLoose(raw)
	if !ok {
		var err error
		if v, err = decodeJSON(raw); err != nil {
			return nil, nil, fieldErr("patch", "%s", err.Error())
		}
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, nil, fieldErr("patch", "must be a JSON object")
	}
	allowed := nodePatchKeys
	if edge {
		allowed = edgePatchKeys
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		val := m[k]
		if !contains(allowed, k) {
			return nil, nil, fieldErr("patch."+k, "unknown field")
		}
		if k == "data" {
			if val == nil {
				continue
			}
			if _, ok := val.(map[string]any); !ok {
				return nil, nil, fieldErr("patch."+k, "must be a JSON object or null")
			}
			if err := checkNumbers(val); err != nil {
				return nil, nil, fieldErr("patch."+k, "%s", err.Error())
			}
			continue
		}
		if val == nil {
			return nil, nil, fieldErr("patch."+k, "cannot be removed (null)")
		}
		switch k {
		case "x", "y":
			num, ok := val.(json.Number)
			if !ok {
				return nil, nil, fieldErr("patch."+k, "must be a number")
			}
			f, err := strconv.ParseFloat(string(num), 64)
			if err != nil || math.IsInf(f, 0) {
				return nil, nil, fieldErr("patch."+k, "must be a finite number (%s is out of range)", string(num))
			}
		case "id", "source", "target":
			s, ok := val.(string)
			if !ok {
				return nil, nil, fieldErr("patch."+k, "must be a string")
			}
			if !ValidID(s) {
				return nil, nil, fieldErr("patch."+k, idRule)
			}
		case "kind", "label":
			s, ok := val.(string)
			if !ok {
				return nil, nil, fieldErr("patch."+k, "must be a string")
			}
			if ferr := checkText(s, "patch."+k); ferr != nil {
				return nil, nil, ferr
			}
		}
	}
	// A patch already in canonical form (every logged op's, and a
	// well-behaved client's) is what Marshal would write of it.
	if canonical {
		return bytes.Clone(raw), &decodedPatch{keys: keys, m: m}, nil
	}
	b, err := marshalCanonical(m)
	if err != nil {
		return nil, nil, fieldErr("patch", "%s", err.Error())
	}
	// m is what decoding b gives (keys and values survive Marshal), so
	// the patch is applied from it.
	return b, &decodedPatch{keys: keys, m: m}, nil
}

// canonicalData returns raw as canonical JSON in fresh bytes: "{}" for
// absent or null, otherwise compact with sorted keys and numbers verbatim.
// The form is what json.Marshal writes, so that re-marshalling a Node (which
// HTML-escapes embedded raw JSON) cannot change it.
func canonicalData(raw json.RawMessage) (json.RawMessage, error) {
	if isCanonicalObject(raw) {
		return bytes.Clone(raw), nil
	}
	return slowCanonicalData(raw)
}

// slowCanonicalData is canonicalData by decoding and re-encoding.
func slowCanonicalData(raw json.RawMessage) (json.RawMessage, error) {
	if isNull(raw) {
		return json.RawMessage("{}"), nil
	}
	v, err := decodeValue(raw)
	if err != nil {
		return nil, err
	}
	if _, ok := v.(map[string]any); !ok {
		return nil, errors.New("must be a JSON object")
	}
	return json.Marshal(v)
}

// decodeValue decodes exactly one JSON value keeping numbers verbatim, and
// rejects numbers that would become infinite in float64, as JavaScript
// clients would read them.
func decodeValue(raw []byte) (any, error) {
	if v, ok := decodeCanonical(raw); ok {
		return v, nil // canonical numbers are finite
	}
	v, err := decodeJSON(raw)
	if err != nil {
		return nil, err
	}
	if err := checkNumbers(v); err != nil {
		return nil, err
	}
	return v, nil
}

// decodeJSON decodes exactly one JSON value keeping numbers verbatim.
func decodeJSON(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("malformed JSON: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("malformed JSON: unexpected data after the value")
	}
	return v, nil
}

func checkNumbers(v any) error {
	switch t := v.(type) {
	case json.Number:
		f, err := strconv.ParseFloat(string(t), 64)
		if err != nil && math.IsInf(f, 0) {
			return fmt.Errorf("number %s is out of range", string(t))
		}
	case map[string]any:
		for _, x := range t {
			if err := checkNumbers(x); err != nil {
				return err
			}
		}
	case []any:
		for _, x := range t {
			if err := checkNumbers(x); err != nil {
				return err
			}
		}
	}
	return nil
}

// MaxDataDepth is how deeply an element's data may nest: the data object is
// level 1. Deeper data would be accepted by JSON but breaks the recursive
// encoders of common clients (Python's json, JavaScript's JSON.stringify).
const MaxDataDepth = 64

// CheckDataDepth rejects an op from a client whose data nests deeper than
// MaxDataDepth. It is not part of Validate: ops already in the log or in a
// snapshot load as they were stored.
func CheckDataDepth(op Op) *OpError {
	check := func(raw json.RawMessage, path string, extra int) *OpError {
		if d := jsonDepth(raw) - extra; d > MaxDataDepth {
			return fieldErr(path, "nests %d levels deep; at most %d are allowed", d, MaxDataDepth)
		}
		return nil
	}
	var err *OpError
	switch {
	case op.Node != nil:
		err = check(op.Node.Data, "node.data", 0)
	case op.Edge != nil:
		err = check(op.Edge.Data, "edge.data", 0)
	case op.Patch != nil:
		// The patch object is one level above its data.
		err = check(op.Patch, "patch.data", 1)
	case op.State != nil:
		for i, n := range op.State.Nodes {
			if err = check(n.Data, fmt.Sprintf("state.nodes[%d].data", i), 0); err != nil {
				break
			}
		}
		for i, e := range op.State.Edges {
			if err != nil {
				break
			}
			err = check(e.Data, fmt.Sprintf("state.edges[%d].data", i), 0)
		}
	}
	if err != nil {
		err.Op = op.Kind
	}
	return err
}

// jsonDepth returns how deeply the valid JSON text raw nests objects and
// arrays (0 for a scalar).
func jsonDepth(raw []byte) int {
	depth, deepest, inString := 0, 0, false
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; {
		case inString && c == '\\':
			i++ // skip the escaped character
		case c == '"':
			inString = !inString
		case inString:
		case c == '{' || c == '[':
			depth++
			deepest = max(deepest, depth)
		case c == '}' || c == ']':
			depth--
		}
	}
	return deepest
}

// presentFields is the set of an op's fields that are set, as the bits of
// opShapes.
func presentFields(op *Op) int {
	present := 0
	if op.ID != "" {
		present |= fID
	}
	if op.Node != nil {
		present |= fNode
	}
	if op.Edge != nil {
		present |= fEdge
	}
	if len(op.Patch) != 0 {
		present |= fPatch
	}
	if op.SnapshotID != "" {
		present |= fSnapshotID
	}
	if op.State != nil {
		present |= fState
	}
	return present
}
