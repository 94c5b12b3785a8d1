// Package graph is LiveShare's domain model: nodes, edges, the ops that change
// them, their validation and their all-or-nothing application. It is pure and
// does no IO, so every other package can rely on it without setup.
package graph

import (
	"bytes"
	"encoding/json"
	"fmt"
	"iter"
	"maps"
	"sort"
)

// Node is a vertex of a room's graph.
//
// Data is always a canonical JSON object (see [Op.Validate]) once it has been
// through this package; "{}" when absent.
type Node struct {
	ID    string          `json:"id"`
	Kind  string          `json:"kind"`
	Label string          `json:"label"`
	X     float64         `json:"x"`
	Y     float64         `json:"y"`
	Data  json.RawMessage `json:"data"`
}

// Edge is a directed connection between two nodes (possibly the same node).
// Data follows the same rules as [Node.Data].
type Edge struct {
	ID     string          `json:"id"`
	Kind   string          `json:"kind"`
	Source string          `json:"source"`
	Target string          `json:"target"`
	Label  string          `json:"label"`
	Data   json.RawMessage `json:"data"`
}

// State is a whole graph. States returned by this package have nodes and
// edges each sorted by id and never nil slices, so their JSON shows [].
type State struct {
	Nodes []Node `json:"nodes"`
	Edges []Edge `json:"edges"`
}

// Graph is a room's live graph. It is not safe for concurrent use; the owner
// (a room) serialises access.
//
// Data bytes held by a Graph are never modified in place, only replaced, so
// clones may share them; accessors hand out copies, except Elements, which
// shares them for a cheap snapshot and says so.
type Graph struct {
	// nodes and edges can be frozen cheaply (see Freeze), so that a room
	// copies its elements out of a view with its lock released.
	nodes cowMap[Node]
	edges cowMap[Edge]
	// adj indexes edge ids by the node ids they touch, so removing a node
	// does not scan every edge.
	adj map[string]map[string]struct{}
	// size is SizeBound, kept up to date by every change.
	size int64
}

// ElementOverhead bounds the bytes a binary encoding of one element may
// spend beyond the bytes of its strings and data: field names, length
// prefixes and the two 8-byte coordinates.
const ElementOverhead = 64

func nodeSize(n Node) int64 {
	return ElementOverhead + int64(len(n.ID)+len(n.Kind)+len(n.Label)+len(n.Data))
}

func edgeSize(e Edge) int64 {
	return ElementOverhead + int64(len(e.ID)+len(e.Kind)+len(e.Source)+len(e.Target)+len(e.Label)+len(e.Data))
}

// SizeBound is an upper bound of the bytes a snapshot of this graph takes
// before compression: the sum over elements of their strings, data and
// ElementOverhead. Rooms refuse ops that would take it past their budget,
// so that a room can never outgrow its snapshot.
func (g *Graph) SizeBound() int64 { return g.size }

// New returns an empty graph.
func New() *Graph {
	return &Graph{
		nodes: newCowMap[Node](0),
		edges: newCowMap[Edge](0),
		adj:   make(map[string]map[string]struct{}),
	}
}

// FromState builds a graph from s after checking it like a reset op: valid
// elements, ids unique across nodes and edges, edge endpoints present. s is
// not retained.
func FromState(s State) (*Graph, error) {
	ns, ferr := validateState(s, "")
	if ferr != nil {
		return nil, fmt.Errorf("invalid state: %s", ferr.detail())
	}
	return buildGraph(ns), nil
}

// FromStoredState builds a graph from a state this service stored itself
// and read back intact: a snapshot whose checksum verified (and, with
// encryption at rest, whose seal opened), written by the codec from a
// Graph, so every element passed validation when it entered the graph and
// its Data is canonical. It checks only what keeps the graph consistent
// whatever the bytes — ids unique across nodes and edges, edge endpoints
// present, coordinates finite — and trusts the rest, which is most of
// FromState's cost (re-canonicalising every element's data). The graph
// takes ownership of s's Data bytes.
//
// A state from anywhere else (a download, an upload, a request, a snapshot
// that did not verify) must go through FromState.
func FromStoredState(s State) (*Graph, error) {
	g := &Graph{
		nodes: newCowMap[Node](len(s.Nodes)),
		edges: newCowMap[Edge](len(s.Edges)),
		adj:   make(map[string]map[string]struct{}),
	}
	for i, n := range s.Nodes {
		if g.nodes.has(n.ID) {
			return nil, fmt.Errorf("invalid state: nodes[%d].id: id %q is used by another node", i, n.ID)
		}
		if checkCoord(n.X, "") != nil || checkCoord(n.Y, "") != nil {
			return nil, fmt.Errorf("invalid state: nodes[%d]: coordinates must be finite", i)
		}
		if len(n.Data) == 0 {
			n.Data = json.RawMessage("{}")
		}
		g.nodes.set(n.ID, n)
		g.size += nodeSize(n)
	}
	for i, e := range s.Edges {
		switch {
		case g.nodes.has(e.ID):
			return nil, fmt.Errorf("invalid state: edges[%d].id: id %q is used by another node", i, e.ID)
		case g.edges.has(e.ID):
			return nil, fmt.Errorf("invalid state: edges[%d].id: id %q is used by another edge", i, e.ID)
		case !g.nodes.has(e.Source):
			return nil, fmt.Errorf("invalid state: edges[%d].source: node %q does not exist", i, e.Source)
		case !g.nodes.has(e.Target):
			return nil, fmt.Errorf("invalid state: edges[%d].target: node %q does not exist", i, e.Target)
		}
		if len(e.Data) == 0 {
			e.Data = json.RawMessage("{}")
		}
		g.edges.set(e.ID, e)
		g.link(e)
		g.size += edgeSize(e)
	}
	return g, nil
}

// buildGraph assumes s has passed validateState and owns its Data bytes.
func buildGraph(s State) *Graph {
	g := &Graph{
		nodes: newCowMap[Node](len(s.Nodes)),
		edges: newCowMap[Edge](len(s.Edges)),
		adj:   make(map[string]map[string]struct{}),
	}
	for _, n := range s.Nodes {
		g.nodes.set(n.ID, n)
		g.size += nodeSize(n)
	}
	for _, e := range s.Edges {
		g.edges.set(e.ID, e)
		g.link(e)
		g.size += edgeSize(e)
	}
	return g
}

// State returns a deep copy of the graph, nodes and edges sorted by id.
func (g *Graph) State() State {
	return g.view().State()
}

// Elements returns the graph's nodes and edges in no particular order,
// sharing their Data bytes with the graph (which never modifies them in
// place). Callers must not modify the Data bytes; Sort orders the result.
func (g *Graph) Elements() State {
	return g.view().Elements()
}

// view is the graph's elements as they are now, for reading them at once
// without freezing the graph.
func (g *Graph) view() *Frozen {
	return &Frozen{nodes: frozenMap[Node]{seed: g.nodes.seed, n: g.nodes.n, shards: g.nodes.shards},
		edges: frozenMap[Edge]{seed: g.edges.seed, n: g.edges.n, shards: g.edges.shards}}
}

// Freeze returns a view of the graph's elements as they are now, which
// later changes to the graph never reach. It costs at most a few hundred
// pointer copies whatever the size of the graph: the graph keeps its
// elements in pieces (one up to 1,024 elements of a kind, 256 past that) and
// copies a piece before it first writes to it after a freeze. A room
// freezes its graph under its lock and copies the elements out of the view
// with the lock released, so that writers never wait for a copy of the whole
// room. Freeze changes the graph (it must not run beside a writer or
// another Freeze); the view may be read from any goroutine.
func (g *Graph) Freeze() *Frozen {
	return &Frozen{nodes: g.nodes.freeze(), edges: g.edges.freeze()}
}

// Frozen is the elements of a graph at a Freeze. It never changes.
type Frozen struct {
	nodes frozenMap[Node]
	edges frozenMap[Edge]
}

// ElementCount is nodes plus edges.
func (f *Frozen) ElementCount() int { return f.nodes.n + f.edges.n }

// NodeCount is the number of nodes in the view.
func (f *Frozen) NodeCount() int { return f.nodes.n }

// EdgeCount is the number of edges in the view.
func (f *Frozen) EdgeCount() int { return f.edges.n }

// Nodes yields the view's nodes in no particular order without copying
// them out first; their Data bytes are shared with the graph (which never
// modifies them in place) and must not be modified.
func (f *Frozen) Nodes() iter.Seq[Node] { return f.nodes.values() }

// Edges is Nodes for the edges.
func (f *Frozen) Edges() iter.Seq[Edge] { return f.edges.values() }

// NodesByID yields the view's nodes in ascending id order, as State orders
// them, sharing their Data as Nodes does. It sorts the ids only (16 bytes a
// node) and looks each node up as it goes, so that a snapshot of a large
// room is written in order without a sorted copy of all its elements.
func (f *Frozen) NodesByID() iter.Seq[Node] { return f.nodes.byID() }

// EdgesByID is NodesByID for the edges.
func (f *Frozen) EdgesByID() iter.Seq[Edge] { return f.edges.byID() }

// Elements returns the view's nodes and edges in no particular order,
// sharing their Data bytes with the graph (which never modifies them in
// place): the cheapest copy there is. Callers must not modify the Data
// bytes; Sort orders the result.
func (f *Frozen) Elements() State {
	s := State{Nodes: make([]Node, 0, f.nodes.n), Edges: make([]Edge, 0, f.edges.n)}
	for n := range f.nodes.values() {
		s.Nodes = append(s.Nodes, n)
	}
	for e := range f.edges.values() {
		s.Edges = append(s.Edges, e)
	}
	return s
}

// State returns a deep copy of the view, nodes and edges sorted by id.
func (f *Frozen) State() State {
	s := f.Elements()
	for i := range s.Nodes {
		s.Nodes[i].Data = cloneBytes(s.Nodes[i].Data)
	}
	for i := range s.Edges {
		s.Edges[i].Data = cloneBytes(s.Edges[i].Data)
	}
	s.Sort()
	return s
}

// Sort orders the state's nodes and edges by id, as State returns them.
func (s State) Sort() {
	sort.Slice(s.Nodes, func(i, j int) bool { return s.Nodes[i].ID < s.Nodes[j].ID })
	sort.Slice(s.Edges, func(i, j int) bool { return s.Edges[i].ID < s.Edges[j].ID })
}

// Clone returns an independent copy: changes to either graph are invisible
// to the other. Clone changes g as Freeze does.
func (g *Graph) Clone() *Graph {
	c := &Graph{
		nodes: g.nodes.clone(),
		edges: g.edges.clone(),
		adj:   make(map[string]map[string]struct{}, len(g.adj)),
		size:  g.size,
	}
	for id, set := range g.adj {
		c.adj[id] = maps.Clone(set)
	}
	return c
}

// NodeCount is the number of nodes.
func (g *Graph) NodeCount() int { return g.nodes.len() }

// EdgeCount is the number of edges.
func (g *Graph) EdgeCount() int { return g.edges.len() }

// ElementCount is nodes plus edges, the room's element_count.
func (g *Graph) ElementCount() int { return g.nodes.len() + g.edges.len() }

// Node returns a copy of the node with that id.
func (g *Graph) Node(id string) (Node, bool) {
	n, ok := g.nodes.get(id)
	if !ok {
		return Node{}, false
	}
	n.Data = cloneBytes(n.Data)
	return n, true
}

// Edge returns a copy of the edge with that id.
func (g *Graph) Edge(id string) (Edge, bool) {
	e, ok := g.edges.get(id)
	if !ok {
		return Edge{}, false
	}
	e.Data = cloneBytes(e.Data)
	return e, true
}

// Equal reports whether s and o hold the same elements in the same order,
// field for field. Data is compared in canonical form, so hand-written
// States compare equal to the graph's own when they mean the same JSON.
func (s State) Equal(o State) bool {
	if len(s.Nodes) != len(o.Nodes) || len(s.Edges) != len(o.Edges) {
		return false
	}
	for i := range s.Nodes {
		a, b := s.Nodes[i], o.Nodes[i]
		if a.ID != b.ID || a.Kind != b.Kind || a.Label != b.Label || a.X != b.X || a.Y != b.Y || !dataEqual(a.Data, b.Data) {
			return false
		}
	}
	for i := range s.Edges {
		a, b := s.Edges[i], o.Edges[i]
		if a.ID != b.ID || a.Kind != b.Kind || a.Source != b.Source || a.Target != b.Target || a.Label != b.Label || !dataEqual(a.Data, b.Data) {
			return false
		}
	}
	return true
}

func dataEqual(a, b json.RawMessage) bool {
	if bytes.Equal(a, b) {
		return true
	}
	ca, errA := canonicalData(a)
	cb, errB := canonicalData(b)
	return errA == nil && errB == nil && bytes.Equal(ca, cb)
}

func cloneBytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}

func (g *Graph) link(e Edge) {
	g.adjAdd(e.Source, e.ID)
	g.adjAdd(e.Target, e.ID)
}

func (g *Graph) unlink(e Edge) {
	g.adjDel(e.Source, e.ID)
	g.adjDel(e.Target, e.ID)
}

func (g *Graph) adjAdd(node, edge string) {
	set := g.adj[node]
	if set == nil {
		set = make(map[string]struct{})
		g.adj[node] = set
	}
	set[edge] = struct{}{}
}

func (g *Graph) adjDel(node, edge string) {
	set := g.adj[node]
	delete(set, edge)
	if len(set) == 0 {
		delete(g.adj, node)
	}
}
