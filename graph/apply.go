package graph

import (
	"encoding/json"
	"strconv"
)

// Apply applies ops in order, all or nothing. Each op is validated first (as
// [Op.Validate], on a copy: ops is not modified). On the first op that fails,
// every earlier op of the batch is undone, g is exactly as before, and the
// *OpError carries that op's Index.
func (g *Graph) Apply(ops []Op) error {
	t := tx{g: g}
	if err := t.run(ops); err != nil {
		t.rollback()
		return err
	}
	return nil
}

// ApplyUndoable is Apply that also returns a function undoing the whole
// batch. A room applies ops before it commits them, so that it knows the
// result is valid and how large it is, and undoes them if the commit fails.
// undo must be called before any other change to g; it is nil on error.
func (g *Graph) ApplyUndoable(ops []Op) (undo func(), err error) {
	t := &tx{g: g}
	if err := t.run(ops); err != nil {
		t.rollback()
		return nil, err
	}
	return t.rollback, nil
}

// Check reports the error Apply would return for ops, leaving g unchanged
// either way.
func (g *Graph) Check(ops []Op) error {
	t := tx{g: g}
	err := t.run(ops)
	t.rollback()
	return err
}

// Tx applies batches of ops to a graph speculatively, each batch all or
// nothing on its own, and can undo them all: a room validates a group of
// requests with one, each request against the state the ones before it
// leave, then restores the graph until the group is committed.
type Tx struct{ t tx }

// Begin starts a Tx on g. Nothing else may change g until the Tx is rolled
// back (or abandoned, keeping its changes).
func (g *Graph) Begin() *Tx { return &Tx{t: tx{g: g}} }

// Apply applies ops, all or nothing: on error the graph is as before the
// call, and the *OpError carries the failing op's Index within ops.
func (x *Tx) Apply(ops []Op) error {
	mark := len(x.t.log)
	if err := x.t.run(ops); err != nil {
		x.t.rollbackTo(mark)
		return err
	}
	return nil
}

// Mark returns a position to roll back to with RollbackTo.
func (x *Tx) Mark() int { return len(x.t.log) }

// RollbackTo undoes what was applied since Mark returned mark.
func (x *Tx) RollbackTo(mark int) { x.t.rollbackTo(mark) }

// Rollback undoes everything the Tx applied.
func (x *Tx) Rollback() { x.t.rollbackTo(0) }

// tx applies ops while journaling how to undo them. Undoing costs as much as
// the ops themselves, where cloning up front would cost the whole room.
type tx struct {
	g   *Graph
	log []undo
}

type undoKind uint8

const (
	undoNode undoKind = iota
	undoEdge
	undoReset
)

// undo restores one element (or, for a reset, the whole graph) to what it
// was before one primitive change.
type undo struct {
	kind undoKind
	id   string
	had  bool
	node Node
	edge Edge
	prev *Graph
}

func (t *tx) run(ops []Op) error {
	for i := range ops {
		op := ops[i]
		patch, ferr := op.validateDecoded()
		if ferr == nil {
			ferr = t.apply(&op, patch)
		}
		if ferr != nil {
			ferr.Index = i
			ferr.Op = op.Kind
			return ferr
		}
	}
	return nil
}

func (t *tx) rollback() { t.rollbackTo(0) }

// rollbackTo undoes the changes journaled after the first mark entries.
func (t *tx) rollbackTo(mark int) {
	g := t.g
	for i := len(t.log) - 1; i >= mark; i-- {
		u := &t.log[i]
		switch u.kind {
		case undoNode:
			if cur, ok := g.nodes.get(u.id); ok {
				g.size -= nodeSize(cur)
			}
			if u.had {
				g.nodes.set(u.id, u.node)
				g.size += nodeSize(u.node)
			} else {
				g.nodes.del(u.id)
			}
		case undoEdge:
			if cur, ok := g.edges.get(u.id); ok {
				g.unlink(cur)
				g.edges.del(u.id)
				g.size -= edgeSize(cur)
			}
			if u.had {
				g.edges.set(u.id, u.edge)
				g.link(u.edge)
				g.size += edgeSize(u.edge)
			}
		case undoReset:
			*g = *u.prev
		}
	}
	clear(t.log[mark:]) // let undone elements be collected
	t.log = t.log[:mark]
}

func (t *tx) setNode(n Node) {
	old, had := t.g.nodes.get(n.ID)
	t.log = append(t.log, undo{kind: undoNode, id: n.ID, had: had, node: old})
	if had {
		t.g.size -= nodeSize(old)
	}
	t.g.nodes.set(n.ID, n)
	t.g.size += nodeSize(n)
}

func (t *tx) delNode(id string) {
	old, _ := t.g.nodes.get(id)
	t.log = append(t.log, undo{kind: undoNode, id: id, had: true, node: old})
	t.g.nodes.del(id)
	t.g.size -= nodeSize(old)
}

func (t *tx) setEdge(e Edge) {
	old, had := t.g.edges.get(e.ID)
	t.log = append(t.log, undo{kind: undoEdge, id: e.ID, had: had, edge: old})
	if had {
		t.g.unlink(old)
		t.g.size -= edgeSize(old)
	}
	t.g.edges.set(e.ID, e)
	t.g.link(e)
	t.g.size += edgeSize(e)
}

func (t *tx) delEdge(id string) {
	old, _ := t.g.edges.get(id)
	t.log = append(t.log, undo{kind: undoEdge, id: id, had: true, edge: old})
	t.g.unlink(old)
	t.g.edges.del(id)
	t.g.size -= edgeSize(old)
}

func (t *tx) reset(s State) {
	prev := *t.g
	t.log = append(t.log, undo{kind: undoReset, prev: &prev})
	*t.g = *buildGraph(s)
}

// apply performs one op that has passed validate; patch is its patch as
// validate decoded it, for updates.
func (t *tx) apply(op *Op, patch *decodedPatch) *OpError {
	g := t.g
	switch op.Kind {
	case OpAddNode:
		n := *op.Node
		if ferr := g.checkNewID(n.ID, "node.id"); ferr != nil {
			return ferr
		}
		t.setNode(n)

	case OpAddEdge:
		e := *op.Edge
		if ferr := g.checkNewID(e.ID, "edge.id"); ferr != nil {
			return ferr
		}
		if ferr := g.checkNode(e.Source, "edge.source"); ferr != nil {
			return ferr
		}
		if ferr := g.checkNode(e.Target, "edge.target"); ferr != nil {
			return ferr
		}
		t.setEdge(e)

	case OpUpdateNode:
		cur, ok := g.nodes.get(op.ID)
		if !ok {
			return g.missing("node", op.ID)
		}
		n, ferr := patchNode(cur, patch)
		if ferr != nil {
			return ferr
		}
		t.setNode(n)

	case OpUpdateEdge:
		cur, ok := g.edges.get(op.ID)
		if !ok {
			return g.missing("edge", op.ID)
		}
		e, ferr := patchEdge(cur, patch)
		if ferr != nil {
			return ferr
		}
		if e.Source != cur.Source {
			if ferr := g.checkNode(e.Source, "patch.source"); ferr != nil {
				return ferr
			}
		}
		if e.Target != cur.Target {
			if ferr := g.checkNode(e.Target, "patch.target"); ferr != nil {
				return ferr
			}
		}
		t.setEdge(e)

	case OpRemoveNode:
		if !g.nodes.has(op.ID) {
			return g.missing("node", op.ID)
		}
		touching := make([]string, 0, len(g.adj[op.ID]))
		for eid := range g.adj[op.ID] {
			touching = append(touching, eid)
		}
		for _, eid := range touching {
			t.delEdge(eid)
		}
		t.delNode(op.ID)

	case OpRemoveEdge:
		if !g.edges.has(op.ID) {
			return g.missing("edge", op.ID)
		}
		t.delEdge(op.ID)

	case OpReset:
		t.reset(*op.State)
	}
	return nil
}

func (g *Graph) checkNewID(id, field string) *OpError {
	if g.nodes.has(id) {
		return fieldErr(field, "id %q is already used by a node", id)
	}
	if g.edges.has(id) {
		return fieldErr(field, "id %q is already used by an edge", id)
	}
	return nil
}

func (g *Graph) checkNode(id, field string) *OpError {
	if g.nodes.has(id) {
		return nil
	}
	if g.edges.has(id) {
		return fieldErr(field, "node %q does not exist (%q is an edge)", id, id)
	}
	return fieldErr(field, "node %q does not exist", id)
}

func (g *Graph) missing(kind, id string) *OpError {
	isNode := g.nodes.has(id)
	isEdge := g.edges.has(id)
	switch {
	case kind == "node" && isEdge:
		return fieldErr("id", "node %q does not exist (%q is an edge)", id, id)
	case kind == "edge" && isNode:
		return fieldErr("id", "edge %q does not exist (%q is a node)", id, id)
	}
	return fieldErr("id", "%s %q does not exist", kind, id)
}

// decodedPatch is a merge patch that passed validatePatch, decoded with
// numbers verbatim, its keys sorted so that errors are deterministic.
type decodedPatch struct {
	keys []string
	m    map[string]any
	// raw and edge are what it was decoded from: the canonical patch,
	// and whether of an edge (whose patches allow other keys).
	raw  json.RawMessage
	edge bool
}

// checkedPatch is the op's patch as an earlier validation decoded it, or
// nil when there was none or the op's Patch or kind changed since.
func (op *Op) checkedPatch() *decodedPatch {
	c := op.checked
	if c == nil || len(c.raw) == 0 || len(op.Patch) != len(c.raw) || &op.Patch[0] != &c.raw[0] ||
		c.edge != (op.Kind == OpUpdateEdge) {
		return nil
	}
	return c
}

func patchNode(n Node, patch *decodedPatch) (Node, *OpError) {
	m := patch.m
	for _, k := range patch.keys {
		v := m[k]
		switch k {
		case "id":
			if v.(string) != n.ID {
				return n, fieldErr("patch.id", "cannot change the id of node %q", n.ID)
			}
		case "kind":
			n.Kind = v.(string)
		case "label":
			n.Label = v.(string)
		case "x":
			n.X, _ = strconv.ParseFloat(string(v.(json.Number)), 64)
		case "y":
			n.Y, _ = strconv.ParseFloat(string(v.(json.Number)), 64)
		case "data":
			d, ferr := mergeData(n.Data, v)
			if ferr != nil {
				return n, ferr
			}
			n.Data = d
		}
	}
	return n, nil
}

func patchEdge(e Edge, patch *decodedPatch) (Edge, *OpError) {
	m := patch.m
	for _, k := range patch.keys {
		v := m[k]
		switch k {
		case "id":
			if v.(string) != e.ID {
				return e, fieldErr("patch.id", "cannot change the id of edge %q", e.ID)
			}
		case "kind":
			e.Kind = v.(string)
		case "label":
			e.Label = v.(string)
		case "source":
			e.Source = v.(string)
		case "target":
			e.Target = v.(string)
		case "data":
			d, ferr := mergeData(e.Data, v)
			if ferr != nil {
				return e, ferr
			}
			e.Data = d
		}
	}
	return e, nil
}

// mergeData applies the "data" member of a patch (nil or an object) to the
// current data as RFC 7396 says, and re-checks the size limit.
func mergeData(cur json.RawMessage, patch any) (json.RawMessage, *OpError) {
	if patch == nil {
		return json.RawMessage("{}"), nil
	}
	target, err := decodeValue(cur)
	if err != nil {
		// Stored data went through validateData; only a caller that
		// bypassed this package could get here.
		target = map[string]any{}
	}
	merged := mergePatch(target, patch)
	b, err := marshalCanonical(merged)
	if err != nil {
		return nil, fieldErr("patch.data", "%s", err.Error())
	}
	if len(b) > MaxDataSize {
		return nil, fieldErr("patch.data", "data would be %d bytes encoded, at most %d allowed", len(b), MaxDataSize)
	}
	return b, nil
}

// mergePatch is RFC 7396 MergePatch on decoded JSON. target is consumed;
// patch is not modified, but non-object members of it end up shared with
// the result, which is only marshalled.
func mergePatch(target, patch any) any {
	pm, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	tm, ok := target.(map[string]any)
	if !ok {
		tm = make(map[string]any, len(pm))
	}
	for k, v := range pm {
		if v == nil {
			delete(tm, k)
		} else {
			tm[k] = mergePatch(tm[k], v)
		}
	}
	return tm
}
