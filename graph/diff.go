package graph

import (
	"bytes"
	"encoding/json"
	"sort"
)

// Diff is what changed from one state to another (DESIGN.md section 11):
// elements added, removed (as they were) and changed (before and after,
// with the paths of the fields that differ). An edge removed with its node
// is listed among the removed edges like any other.
type Diff struct {
	Nodes NodeDiff `json:"nodes"`
	Edges EdgeDiff `json:"edges"`
}

// NodeDiff is the nodes' part of a Diff; each list is sorted by id and
// never nil.
type NodeDiff struct {
	Added   []Node       `json:"added"`
	Removed []Node       `json:"removed"`
	Changed []NodeChange `json:"changed"`
}

// EdgeDiff is the edges' part of a Diff; each list is sorted by id and
// never nil.
type EdgeDiff struct {
	Added   []Edge       `json:"added"`
	Removed []Edge       `json:"removed"`
	Changed []EdgeChange `json:"changed"`
}

// NodeChange is a node present on both sides with different fields.
type NodeChange struct {
	ID     string   `json:"id"`
	Before Node     `json:"before"`
	After  Node     `json:"after"`
	Fields []string `json:"fields"` // "kind", "label", "x", "y", "data.<key>"
}

// EdgeChange is an edge present on both sides with different fields.
type EdgeChange struct {
	ID     string   `json:"id"`
	Before Edge     `json:"before"`
	After  Edge     `json:"after"`
	Fields []string `json:"fields"` // "kind", "source", "target", "label", "data.<key>"
}

// Empty reports whether nothing changed.
func (d Diff) Empty() bool {
	return len(d.Nodes.Added)+len(d.Nodes.Removed)+len(d.Nodes.Changed)+
		len(d.Edges.Added)+len(d.Edges.Removed)+len(d.Edges.Changed) == 0
}

// DiffStates returns what changed from a to b. Neither is modified; the
// result shares their Data bytes.
func DiffStates(a, b State) Diff {
	d := Diff{
		Nodes: NodeDiff{Added: []Node{}, Removed: []Node{}, Changed: []NodeChange{}},
		Edges: EdgeDiff{Added: []Edge{}, Removed: []Edge{}, Changed: []EdgeChange{}},
	}
	before := make(map[string]Node, len(a.Nodes))
	for _, n := range a.Nodes {
		before[n.ID] = n
	}
	for _, n := range b.Nodes {
		old, ok := before[n.ID]
		if !ok {
			d.Nodes.Added = append(d.Nodes.Added, n)
			continue
		}
		delete(before, n.ID)
		if fields := nodeFields(old, n); len(fields) > 0 {
			d.Nodes.Changed = append(d.Nodes.Changed, NodeChange{ID: n.ID, Before: old, After: n, Fields: fields})
		}
	}
	for _, n := range before {
		d.Nodes.Removed = append(d.Nodes.Removed, n)
	}
	beforeEdges := make(map[string]Edge, len(a.Edges))
	for _, e := range a.Edges {
		beforeEdges[e.ID] = e
	}
	for _, e := range b.Edges {
		old, ok := beforeEdges[e.ID]
		if !ok {
			d.Edges.Added = append(d.Edges.Added, e)
			continue
		}
		delete(beforeEdges, e.ID)
		if fields := edgeFields(old, e); len(fields) > 0 {
			d.Edges.Changed = append(d.Edges.Changed, EdgeChange{ID: e.ID, Before: old, After: e, Fields: fields})
		}
	}
	for _, e := range beforeEdges {
		d.Edges.Removed = append(d.Edges.Removed, e)
	}
	sort.Slice(d.Nodes.Added, func(i, j int) bool { return d.Nodes.Added[i].ID < d.Nodes.Added[j].ID })
	sort.Slice(d.Nodes.Removed, func(i, j int) bool { return d.Nodes.Removed[i].ID < d.Nodes.Removed[j].ID })
	sort.Slice(d.Nodes.Changed, func(i, j int) bool { return d.Nodes.Changed[i].ID < d.Nodes.Changed[j].ID })
	sort.Slice(d.Edges.Added, func(i, j int) bool { return d.Edges.Added[i].ID < d.Edges.Added[j].ID })
	sort.Slice(d.Edges.Removed, func(i, j int) bool { return d.Edges.Removed[i].ID < d.Edges.Removed[j].ID })
	sort.Slice(d.Edges.Changed, func(i, j int) bool { return d.Edges.Changed[i].ID < d.Edges.Changed[j].ID })
	return d
}

func nodeFields(a, b Node) []string {
	var f []string
	if a.Kind != b.Kind {
		f = append(f, "kind")
	}
	if a.Label != b.Label {
		f = append(f, "label")
	}
	if a.X != b.X {
		f = append(f, "x")
	}
	if a.Y != b.Y {
		f = append(f, "y")
	}
	return append(f, dataFields(a.Data, b.Data)...)
}

func edgeFields(a, b Edge) []string {
	var f []string
	if a.Kind != b.Kind {
		f = append(f, "kind")
	}
	if a.Source != b.Source {
		f = append(f, "source")
	}
	if a.Target != b.Target {
		f = append(f, "target")
	}
	if a.Label != b.Label {
		f = append(f, "label")
	}
	return append(f, dataFields(a.Data, b.Data)...)
}

// dataFields names the top-level keys of data whose values differ
// ("data.columns"), sorted; "data" alone when the objects differ but not
// key by key (which canonical data never does).
func dataFields(a, b json.RawMessage) []string {
	if dataEqual(a, b) {
		return nil
	}
	var ma, mb map[string]json.RawMessage
	if json.Unmarshal(orEmpty(a), &ma) != nil || json.Unmarshal(orEmpty(b), &mb) != nil {
		return []string{"data"}
	}
	var f []string
	for k, va := range ma {
		if vb, ok := mb[k]; !ok || !bytes.Equal(va, vb) {
			f = append(f, "data."+k)
		}
	}
	for k := range mb {
		if _, ok := ma[k]; !ok {
			f = append(f, "data."+k)
		}
	}
	if len(f) == 0 {
		return []string{"data"}
	}
	sort.Strings(f)
	return f
}

func orEmpty(b json.RawMessage) json.RawMessage {
	if len(b) == 0 {
		return json.RawMessage("{}")
	}
	return b
}

// Apply returns s changed by d: what a client holding the state at the
// diff's from version does to reach its to version. Removed and changed
// elements are matched by id; s is not modified. The result is sorted by id.
func (d Diff) Apply(s State) State {
	nodes := make(map[string]Node, len(s.Nodes))
	for _, n := range s.Nodes {
		nodes[n.ID] = n
	}
	edges := make(map[string]Edge, len(s.Edges))
	for _, e := range s.Edges {
		edges[e.ID] = e
	}
	for _, e := range d.Edges.Removed {
		delete(edges, e.ID)
	}
	for _, n := range d.Nodes.Removed {
		delete(nodes, n.ID)
	}
	for _, n := range d.Nodes.Added {
		nodes[n.ID] = n
	}
	for _, c := range d.Nodes.Changed {
		nodes[c.ID] = c.After
	}
	for _, e := range d.Edges.Added {
		edges[e.ID] = e
	}
	for _, c := range d.Edges.Changed {
		edges[c.ID] = c.After
	}
	out := State{Nodes: make([]Node, 0, len(nodes)), Edges: make([]Edge, 0, len(edges))}
	for _, n := range nodes {
		out.Nodes = append(out.Nodes, n)
	}
	for _, e := range edges {
		out.Edges = append(out.Edges, e)
	}
	out.Sort()
	return out
}
