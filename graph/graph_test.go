package graph_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/liveshare/liveshare/graph"
)

func parse(t testing.TB, s string) graph.Op {
	t.Helper()
	op, err := graph.ParseOp([]byte(s))
	if err != nil {
		t.Fatalf("ParseOp(%s): %v", s, err)
	}
	return op
}

func parseAll(t testing.TB, ss ...string) []graph.Op {
	t.Helper()
	ops := make([]graph.Op, len(ss))
	for i, s := range ss {
		ops[i] = parse(t, s)
	}
	return ops
}

// base is a: {a,b,c}, e1 a→b, e2 b→c, e3 c→c (self-loop), e4 a→c.
func base(t testing.TB) *graph.Graph {
	t.Helper()
	g := graph.New()
	err := g.Apply(parseAll(t,
		`{"op":"add_node","node":{"id":"a","kind":"table","label":"A","x":1,"y":2,"data":{"cols":[1,2],"meta":{"k":"v","n":1}}}}`,
		`{"op":"add_node","node":{"id":"b"}}`,
		`{"op":"add_node","node":{"id":"c"}}`,
		`{"op":"add_edge","edge":{"id":"e1","kind":"fk","source":"a","target":"b","label":"l","data":{"w":1}}}`,
		`{"op":"add_edge","edge":{"id":"e2","source":"b","target":"c"}}`,
		`{"op":"add_edge","edge":{"id":"e3","source":"c","target":"c"}}`,
		`{"op":"add_edge","edge":{"id":"e4","source":"a","target":"c"}}`,
	))
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func ids(s graph.State) (nodes, edges string) {
	var n, e []string
	for _, x := range s.Nodes {
		n = append(n, x.ID)
	}
	for _, x := range s.Edges {
		e = append(e, x.ID)
	}
	return strings.Join(n, ","), strings.Join(e, ",")
}

func TestApply(t *testing.T) {
	type check func(t *testing.T, g *graph.Graph)
	nodeIs := func(id, wantJSON string) check {
		return func(t *testing.T, g *graph.Graph) {
			t.Helper()
			n, ok := g.Node(id)
			if !ok {
				t.Fatalf("node %q missing", id)
			}
			b, _ := json.Marshal(n)
			if string(b) != wantJSON {
				t.Fatalf("node %s:\n got %s\nwant %s", id, b, wantJSON)
			}
		}
	}
	edgeIs := func(id, wantJSON string) check {
		return func(t *testing.T, g *graph.Graph) {
			t.Helper()
			e, ok := g.Edge(id)
			if !ok {
				t.Fatalf("edge %q missing", id)
			}
			b, _ := json.Marshal(e)
			if string(b) != wantJSON {
				t.Fatalf("edge %s:\n got %s\nwant %s", id, b, wantJSON)
			}
		}
	}
	idsAre := func(nodes, edges string) check {
		return func(t *testing.T, g *graph.Graph) {
			t.Helper()
			n, e := ids(g.State())
			if n != nodes || e != edges {
				t.Fatalf("ids: nodes %q edges %q, want %q %q", n, e, nodes, edges)
			}
			if g.NodeCount() != len(g.State().Nodes) || g.EdgeCount() != len(g.State().Edges) || g.ElementCount() != g.NodeCount()+g.EdgeCount() {
				t.Fatal("counts disagree with State")
			}
		}
	}

	tests := []struct {
		name   string
		ops    []string
		index  int    // of the failing op, when field or reason is set
		field  string // expected OpError.Field
		reason string // substring of OpError.Reason; "" means success expected
		checks []check
	}{
		// add_node
		{name: "add node", ops: []string{`{"op":"add_node","node":{"id":"d","x":-3.5}}`},
			checks: []check{nodeIs("d", `{"id":"d","kind":"","label":"","x":-3.5,"y":0,"data":{}}`), idsAre("a,b,c,d", "e1,e2,e3,e4")}},
		{name: "dup node/node", ops: []string{`{"op":"add_node","node":{"id":"a"}}`}, field: "node.id", reason: `id "a" is already used by a node`},
		{name: "dup node/edge", ops: []string{`{"op":"add_node","node":{"id":"e1"}}`}, field: "node.id", reason: `id "e1" is already used by an edge`},
		{name: "dup within batch", ops: []string{`{"op":"add_node","node":{"id":"d"}}`, `{"op":"add_node","node":{"id":"d"}}`}, index: 1, field: "node.id", reason: "already used"},
		// add_edge
		{name: "add edge", ops: []string{`{"op":"add_edge","edge":{"id":"e5","source":"c","target":"a","data":{"b":1,"a":[true,null]}}}`},
			checks: []check{edgeIs("e5", `{"id":"e5","kind":"","source":"c","target":"a","label":"","data":{"a":[true,null],"b":1}}`)}},
		{name: "add self-loop", ops: []string{`{"op":"add_edge","edge":{"id":"loop","source":"b","target":"b"}}`}, checks: []check{idsAre("a,b,c", "e1,e2,e3,e4,loop")}},
		{name: "dup edge/edge", ops: []string{`{"op":"add_edge","edge":{"id":"e1","source":"a","target":"b"}}`}, field: "edge.id", reason: `already used by an edge`},
		{name: "dup edge/node", ops: []string{`{"op":"add_edge","edge":{"id":"a","source":"a","target":"b"}}`}, field: "edge.id", reason: `already used by a node`},
		{name: "edge missing source", ops: []string{`{"op":"add_edge","edge":{"id":"e9","source":"x","target":"b"}}`}, field: "edge.source", reason: `node "x" does not exist`},
		{name: "edge missing target", ops: []string{`{"op":"add_edge","edge":{"id":"e9","source":"a","target":"x"}}`}, field: "edge.target", reason: `node "x" does not exist`},
		{name: "edge to edge", ops: []string{`{"op":"add_edge","edge":{"id":"e9","source":"a","target":"e1"}}`}, field: "edge.target", reason: `"e1" is an edge`},
		{name: "edge to node added in batch", ops: []string{`{"op":"add_node","node":{"id":"d"}}`, `{"op":"add_edge","edge":{"id":"e9","source":"d","target":"a"}}`}, checks: []check{idsAre("a,b,c,d", "e1,e2,e3,e4,e9")}},
		// update_node
		{name: "update node fields", ops: []string{`{"op":"update_node","id":"a","patch":{"kind":"view","label":"AA","x":10.25,"y":-1}}`},
			checks: []check{nodeIs("a", `{"id":"a","kind":"view","label":"AA","x":10.25,"y":-1,"data":{"cols":[1,2],"meta":{"k":"v","n":1}}}`)}},
		{name: "update node same id", ops: []string{`{"op":"update_node","id":"a","patch":{"id":"a","label":"x"}}`},
			checks: []check{nodeIs("a", `{"id":"a","kind":"table","label":"x","x":1,"y":2,"data":{"cols":[1,2],"meta":{"k":"v","n":1}}}`)}},
		{name: "update node empty patch", ops: []string{`{"op":"update_node","id":"b","patch":{}}`}, checks: []check{nodeIs("b", `{"id":"b","kind":"","label":"","x":0,"y":0,"data":{}}`)}},
		{name: "update node change id", ops: []string{`{"op":"update_node","id":"a","patch":{"id":"z"}}`}, field: "patch.id", reason: `cannot change the id`},
		{name: "update node missing", ops: []string{`{"op":"update_node","id":"zz","patch":{"x":1}}`}, field: "id", reason: `node "zz" does not exist`},
		{name: "update node on edge id", ops: []string{`{"op":"update_node","id":"e1","patch":{"x":1}}`}, field: "id", reason: `"e1" is an edge`},
		{name: "update node removed in batch", ops: []string{`{"op":"remove_node","id":"b"}`, `{"op":"update_node","id":"b","patch":{}}`}, index: 1, field: "id", reason: "does not exist"},
		// merge patch semantics on data (RFC 7396)
		{name: "merge data", ops: []string{`{"op":"update_node","id":"a","patch":{"data":{"meta":{"k":null,"new":{"x":null,"y":2}},"cols":[3,null],"added":"s","absent":null}}}`},
			checks: []check{nodeIs("a", `{"id":"a","kind":"table","label":"A","x":1,"y":2,"data":{"added":"s","cols":[3,null],"meta":{"n":1,"new":{"y":2}}}}`)}},
		{name: "merge data replaces scalar with object", ops: []string{`{"op":"update_node","id":"a","patch":{"data":{"cols":{"a":1}}}}`},
			checks: []check{nodeIs("a", `{"id":"a","kind":"table","label":"A","x":1,"y":2,"data":{"cols":{"a":1},"meta":{"k":"v","n":1}}}`)}},
		{name: "merge data replaces object with scalar", ops: []string{`{"op":"update_node","id":"a","patch":{"data":{"meta":0.10}}}`},
			checks: []check{nodeIs("a", `{"id":"a","kind":"table","label":"A","x":1,"y":2,"data":{"cols":[1,2],"meta":0.10}}`)}},
		{name: "data null clears", ops: []string{`{"op":"update_node","id":"a","patch":{"data":null}}`},
			checks: []check{nodeIs("a", `{"id":"a","kind":"table","label":"A","x":1,"y":2,"data":{}}`)}},
		{name: "data empty patch keeps", ops: []string{`{"op":"update_node","id":"a","patch":{"data":{}}}`},
			checks: []check{nodeIs("a", `{"id":"a","kind":"table","label":"A","x":1,"y":2,"data":{"cols":[1,2],"meta":{"k":"v","n":1}}}`)}},
		{name: "data grows too big", ops: []string{
			`{"op":"update_node","id":"b","patch":{"data":{"a":"` + strings.Repeat("x", 40000) + `"}}}`,
			`{"op":"update_node","id":"b","patch":{"data":{"b":"` + strings.Repeat("x", 40000) + `"}}}`,
		}, index: 1, field: "patch.data", reason: "at most 65536"},
		// update_edge
		{name: "update edge", ops: []string{`{"op":"update_edge","id":"e1","patch":{"kind":"k2","label":"L","source":"c","target":"c","data":{"w":null,"v":2}}}`},
			checks: []check{edgeIs("e1", `{"id":"e1","kind":"k2","source":"c","target":"c","label":"L","data":{"v":2}}`)}},
		{name: "update edge moves adjacency", ops: []string{`{"op":"update_edge","id":"e1","patch":{"source":"c"}}`, `{"op":"remove_node","id":"a"}`},
			checks: []check{idsAre("b,c", "e1,e2,e3")}},
		{name: "update edge missing source", ops: []string{`{"op":"update_edge","id":"e1","patch":{"source":"nope"}}`}, field: "patch.source", reason: `node "nope" does not exist`},
		{name: "update edge missing target", ops: []string{`{"op":"update_edge","id":"e1","patch":{"target":"e2"}}`}, field: "patch.target", reason: `node "e2" does not exist`},
		{name: "update edge change id", ops: []string{`{"op":"update_edge","id":"e1","patch":{"id":"e2"}}`}, field: "patch.id", reason: "cannot change the id"},
		{name: "update edge missing", ops: []string{`{"op":"update_edge","id":"nope","patch":{}}`}, field: "id", reason: `edge "nope" does not exist`},
		{name: "update edge on node id", ops: []string{`{"op":"update_edge","id":"a","patch":{}}`}, field: "id", reason: `"a" is a node`},
		// removes
		{name: "remove node cascades", ops: []string{`{"op":"remove_node","id":"c"}`}, checks: []check{idsAre("a,b", "e1")}},
		{name: "remove node no edges", ops: []string{`{"op":"add_node","node":{"id":"d"}}`, `{"op":"remove_node","id":"d"}`}, checks: []check{idsAre("a,b,c", "e1,e2,e3,e4")}},
		{name: "remove all nodes", ops: []string{`{"op":"remove_node","id":"a"}`, `{"op":"remove_node","id":"b"}`, `{"op":"remove_node","id":"c"}`}, checks: []check{idsAre("", "")}},
		{name: "remove node missing", ops: []string{`{"op":"remove_node","id":"x"}`}, field: "id", reason: `node "x" does not exist`},
		{name: "remove node twice", ops: []string{`{"op":"remove_node","id":"a"}`, `{"op":"remove_node","id":"a"}`}, index: 1, field: "id", reason: `node "a" does not exist`},
		{name: "remove edge", ops: []string{`{"op":"remove_edge","id":"e3"}`}, checks: []check{idsAre("a,b,c", "e1,e2,e4")}},
		{name: "remove edge missing", ops: []string{`{"op":"remove_edge","id":"x"}`}, field: "id", reason: `edge "x" does not exist`},
		{name: "remove edge cascaded", ops: []string{`{"op":"remove_node","id":"b"}`, `{"op":"remove_edge","id":"e1"}`}, index: 1, field: "id", reason: `edge "e1" does not exist`},
		{name: "id reusable after remove", ops: []string{`{"op":"remove_edge","id":"e1"}`, `{"op":"add_node","node":{"id":"e1"}}`}, checks: []check{idsAre("a,b,c,e1", "e2,e3,e4")}},
		// reset
		{name: "reset", ops: []string{`{"op":"reset","snapshot_id":"s1","state":{"nodes":[{"id":"z","data":{"q":1}},{"id":"y"}],"edges":[{"id":"zy","source":"z","target":"y"}]}}`},
			checks: []check{idsAre("y,z", "zy"), nodeIs("z", `{"id":"z","kind":"","label":"","x":0,"y":0,"data":{"q":1}}`)}},
		{name: "reset then ops", ops: []string{`{"op":"reset","state":{"nodes":[{"id":"a"}]}}`, `{"op":"add_edge","edge":{"id":"e1","source":"a","target":"a"}}`, `{"op":"remove_node","id":"a"}`},
			checks: []check{idsAre("", "")}},
		{name: "reset empty", ops: []string{`{"op":"reset","state":{"nodes":[],"edges":[]}}`}, checks: []check{idsAre("", "")}},
		{name: "ops then reset then failure", ops: []string{`{"op":"remove_node","id":"a"}`, `{"op":"reset","state":{"nodes":[{"id":"q"}]}}`, `{"op":"remove_node","id":"q"}`, `{"op":"remove_node","id":"b"}`},
			index: 3, field: "id", reason: `node "b" does not exist`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := base(t)
			before := g.State()
			ops := parseAll(t, tt.ops...)

			cerr := g.Check(ops)
			if !g.State().Equal(before) {
				t.Fatal("Check changed the graph")
			}
			err := g.Apply(ops)
			if (cerr == nil) != (err == nil) || (err != nil && cerr.Error() != err.Error()) {
				t.Fatalf("Check said %v, Apply said %v", cerr, err)
			}
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("Apply: %v", err)
				}
				for _, c := range tt.checks {
					c(t, g)
				}
				return
			}
			var oe *graph.OpError
			if !errors.As(err, &oe) {
				t.Fatalf("want *OpError, got %v", err)
			}
			wantOp := ops[tt.index].Kind
			if oe.Index != tt.index || oe.Op != wantOp || oe.Field != tt.field || !strings.Contains(oe.Reason, tt.reason) {
				t.Fatalf("got %+v\nwant index=%d op=%s field=%q reason~%q", *oe, tt.index, wantOp, tt.field, tt.reason)
			}
			if !g.State().Equal(before) {
				t.Fatalf("failed Apply changed the graph:\n%+v\n%+v", g.State(), before)
			}
		})
	}
}

func TestApplyBatchAtomicity(t *testing.T) {
	g := base(t)
	before := g.State()
	ops := parseAll(t,
		`{"op":"remove_node","id":"c"}`, // cascades e2, e3, e4
		`{"op":"update_node","id":"a","patch":{"label":"changed","data":{"meta":null}}}`,
		`{"op":"add_edge","edge":{"id":"e2","source":"a","target":"c"}}`, // c is gone
		`{"op":"add_node","node":{"id":"never"}}`,
	)
	err := g.Apply(ops)
	var oe *graph.OpError
	if !errors.As(err, &oe) || oe.Index != 2 || oe.Op != graph.OpAddEdge || oe.Field != "edge.target" {
		t.Fatalf("got %v", err)
	}
	if want := `op 2 (add_edge): edge.target: node "c" does not exist`; err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
	if !g.State().Equal(before) {
		t.Fatalf("graph changed:\n%+v\n%+v", g.State(), before)
	}
	// The adjacency index must be restored too: a cascade now removes
	// exactly the original edges.
	if err := g.Apply(parseAll(t, `{"op":"remove_node","id":"c"}`)); err != nil {
		t.Fatal(err)
	}
	if n, e := ids(g.State()); n != "a,b" || e != "e1" {
		t.Fatalf("after cascade: %s / %s", n, e)
	}

	// An invalid op built in Go fails validation inside Apply, also atomically.
	g = base(t)
	bad := []graph.Op{
		parse(t, `{"op":"remove_node","id":"a"}`),
		{Kind: graph.OpAddNode, Node: &graph.Node{ID: "bad id"}},
	}
	err = g.Apply(bad)
	if !errors.As(err, &oe) || oe.Index != 1 || oe.Field != "node.id" {
		t.Fatalf("got %v", err)
	}
	if !g.State().Equal(before) {
		t.Fatal("graph changed")
	}
}

func TestApplyDoesNotModifyOps(t *testing.T) {
	n := &graph.Node{ID: "d", Data: json.RawMessage(`{ "b":1, "a":2 }`)}
	ops := []graph.Op{{Kind: graph.OpAddNode, Node: n}}
	g := graph.New()
	if err := g.Apply(ops); err != nil {
		t.Fatal(err)
	}
	if string(ops[0].Node.Data) != `{ "b":1, "a":2 }` || ops[0].Node != n {
		t.Fatal("Apply modified its ops")
	}
	n.Data[3] = 'X' // the graph must not alias caller memory
	got, _ := g.Node("d")
	if string(got.Data) != `{"a":2,"b":1}` {
		t.Fatalf("data %s", got.Data)
	}
}

func TestStateSortedAndNonNil(t *testing.T) {
	s := graph.New().State()
	b, _ := json.Marshal(s)
	if string(b) != `{"nodes":[],"edges":[]}` {
		t.Fatalf("empty state %s", b)
	}
	g := graph.New()
	for _, id := range []string{"m", "b", "z", "A", "a", "0", "b.1"} {
		if err := g.Apply([]graph.Op{{Kind: graph.OpAddNode, Node: &graph.Node{ID: id}}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"y", "x", "e"} {
		if err := g.Apply([]graph.Op{{Kind: graph.OpAddEdge, Edge: &graph.Edge{ID: "edge-" + id, Source: "m", Target: "z"}}}); err != nil {
			t.Fatal(err)
		}
	}
	n, e := ids(g.State())
	if n != "0,A,a,b,b.1,m,z" || e != "edge-e,edge-x,edge-y" {
		t.Fatalf("not sorted: %s / %s", n, e)
	}
}

func TestCloneIndependence(t *testing.T) {
	g := base(t)
	before := g.State()
	c := g.Clone()
	if !c.State().Equal(before) {
		t.Fatal("clone differs")
	}
	err := c.Apply(parseAll(t,
		`{"op":"update_node","id":"a","patch":{"label":"changed","data":{"meta":{"k":"changed"}}}}`,
		`{"op":"update_edge","id":"e1","patch":{"data":{"w":2}}}`,
		`{"op":"remove_node","id":"c"}`,
		`{"op":"add_node","node":{"id":"new"}}`,
	))
	if err != nil {
		t.Fatal(err)
	}
	if !g.State().Equal(before) {
		t.Fatal("changing the clone changed the original")
	}
	// And the other way round, including the adjacency index.
	if err := g.Apply(parseAll(t, `{"op":"remove_node","id":"b"}`)); err != nil {
		t.Fatal(err)
	}
	if n, e := ids(c.State()); n != "a,b,new" || e != "e1" {
		t.Fatalf("clone after original changed: %s / %s", n, e)
	}

	// Bytes handed out are copies.
	g = base(t)
	n, _ := g.Node("a")
	n.Data[0] = 'X'
	s := g.State()
	s.Nodes[0].Data[0] = 'X'
	s.Edges[0].Data[0] = 'X'
	e, _ := g.Edge("e1")
	e.Data[0] = 'X'
	if !g.State().Equal(before) || string(mustNode(t, g, "a").Data) != `{"cols":[1,2],"meta":{"k":"v","n":1}}` {
		t.Fatal("mutating returned Data changed the graph")
	}
	c = g.Clone()
	cn, _ := c.Node("a")
	cn.Data[0] = 'X'
	if !g.State().Equal(before) {
		t.Fatal("mutating the clone's Data changed the original")
	}
}

func mustNode(t *testing.T, g *graph.Graph, id string) graph.Node {
	t.Helper()
	n, ok := g.Node(id)
	if !ok {
		t.Fatalf("node %q missing", id)
	}
	return n
}

func TestFromState(t *testing.T) {
	g, err := graph.FromState(graph.State{
		Nodes: []graph.Node{{ID: "b", Data: json.RawMessage(`{ "y" : 1, "x" : null }`)}, {ID: "a"}},
		Edges: []graph.Edge{{ID: "e", Source: "a", Target: "b"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(g.State())
	want := `{"nodes":[{"id":"a","kind":"","label":"","x":0,"y":0,"data":{}},{"id":"b","kind":"","label":"","x":0,"y":0,"data":{"x":null,"y":1}}],"edges":[{"id":"e","kind":"","source":"a","target":"b","label":"","data":{}}]}`
	if string(b) != want {
		t.Fatalf("got %s", b)
	}
	// The cascade index is built.
	if err := g.Apply(parseAll(t, `{"op":"remove_node","id":"a"}`)); err != nil || g.EdgeCount() != 0 {
		t.Fatalf("cascade after FromState: %v, %d edges", err, g.EdgeCount())
	}
	// Round trip through JSON.
	var back graph.State
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	g2, err := graph.FromState(back)
	if err != nil || !g2.State().Equal(back) {
		t.Fatalf("round trip: %v", err)
	}

	bad := []struct {
		name string
		s    graph.State
		want string
	}{
		{"dup node", graph.State{Nodes: []graph.Node{{ID: "a"}, {ID: "a"}}}, "nodes[1].id"},
		{"node/edge clash", graph.State{Nodes: []graph.Node{{ID: "a"}}, Edges: []graph.Edge{{ID: "a", Source: "a", Target: "a"}}}, "edges[0].id"},
		{"missing endpoint", graph.State{Nodes: []graph.Node{{ID: "a"}}, Edges: []graph.Edge{{ID: "e", Source: "x", Target: "a"}}}, "edges[0].source"},
		{"bad id", graph.State{Nodes: []graph.Node{{ID: ""}}}, "nodes[0].id"},
		{"bad data", graph.State{Nodes: []graph.Node{{ID: "a", Data: json.RawMessage(`[]`)}}}, "nodes[0].data"},
	}
	for _, tt := range bad {
		if _, err := graph.FromState(tt.s); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want mention of %s", tt.name, err, tt.want)
		}
	}
}

func TestStateEqual(t *testing.T) {
	a := graph.State{Nodes: []graph.Node{{ID: "a", Data: json.RawMessage(`{"b":1,"a":2}`)}}, Edges: []graph.Edge{}}
	b := graph.State{Nodes: []graph.Node{{ID: "a", Data: json.RawMessage(`{"a":2,"b":1}`)}}}
	if !a.Equal(b) {
		t.Fatal("same data in other key order should be equal")
	}
	c := graph.State{Nodes: []graph.Node{{ID: "a", Data: json.RawMessage(`{"a":2.0,"b":1}`)}}}
	if a.Equal(c) {
		t.Fatal("numbers are kept verbatim, so 2 and 2.0 differ")
	}
	d := graph.State{Nodes: []graph.Node{{ID: "a", X: 1, Data: json.RawMessage(`{"a":2,"b":1}`)}}}
	if a.Equal(d) {
		t.Fatal("x differs")
	}
	e := graph.State{Nodes: []graph.Node{{ID: "a", Data: json.RawMessage(`{}`)}}, Edges: []graph.Edge{{ID: "e"}}}
	if a.Equal(e) || e.Equal(a) {
		t.Fatal("edges differ")
	}
}

func TestApplyUndoableRestoresTheGraph(t *testing.T) {
	g := graph.New()
	if err := g.Apply([]graph.Op{
		{Kind: graph.OpAddNode, Node: &graph.Node{ID: "a"}},
		{Kind: graph.OpAddNode, Node: &graph.Node{ID: "b"}},
		{Kind: graph.OpAddEdge, Edge: &graph.Edge{ID: "ab", Source: "a", Target: "b"}},
	}); err != nil {
		t.Fatal(err)
	}
	before := g.State()
	undo, err := g.ApplyUndoable([]graph.Op{
		{Kind: graph.OpRemoveNode, ID: "a"},
		{Kind: graph.OpAddNode, Node: &graph.Node{ID: "c", Label: "new"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := g.ElementCount(); got != 2 {
		t.Fatalf("after apply: %d elements, want 2", got)
	}
	undo()
	if !g.State().Equal(before) {
		t.Fatalf("after undo: %+v, want %+v", g.State(), before)
	}
	if undo, err := g.ApplyUndoable([]graph.Op{{Kind: graph.OpRemoveNode, ID: "ghost"}}); err == nil || undo != nil {
		t.Fatalf("invalid batch: undo %v, err %v", undo != nil, err)
	}
}

func TestElementsSortedEqualsState(t *testing.T) {
	g := graph.New()
	if err := g.Apply([]graph.Op{
		{Kind: graph.OpAddNode, Node: &graph.Node{ID: "b"}},
		{Kind: graph.OpAddNode, Node: &graph.Node{ID: "a", Data: []byte(`{"k":1}`)}},
		{Kind: graph.OpAddEdge, Edge: &graph.Edge{ID: "e2", Source: "a", Target: "b"}},
		{Kind: graph.OpAddEdge, Edge: &graph.Edge{ID: "e1", Source: "b", Target: "a"}},
	}); err != nil {
		t.Fatal(err)
	}
	s := g.Elements()
	s.Sort()
	if !s.Equal(g.State()) {
		t.Fatalf("sorted Elements %+v, State %+v", s, g.State())
	}
}

// TestChangedPatchIsCheckedAgain: an op keeps its patch as validation
// decoded it, so that a trial and the apply do not decode it again; a patch
// or kind changed after that is validated and applied as it now is.
func TestChangedPatchIsCheckedAgain(t *testing.T) {
	t.Parallel()
	g := graph.New()
	mustApply(t, g, parseAll(t, `{"op":"add_node","node":{"id":"a"}}`, `{"op":"add_node","node":{"id":"b"}}`,
		`{"op":"add_edge","edge":{"id":"e","source":"a","target":"b"}}`)...)
	op := parse(t, `{"op":"update_node","id":"a","patch":{"x":1}}`)

	moved := op
	moved.Patch = []byte(`{"x":2}`)
	mustApply(t, g, moved)
	if n, _ := g.Node("a"); n.X != 2 {
		t.Errorf("after a changed patch x = %v, want 2", n.X)
	}
	mustApply(t, g, op)
	if n, _ := g.Node("a"); n.X != 1 {
		t.Errorf("after the parsed patch x = %v, want 1", n.X)
	}

	bad := op
	bad.Patch = []byte(`{"source":"b"}`)
	if err := g.Apply([]graph.Op{bad}); err == nil || !strings.Contains(err.Error(), "patch.source") {
		t.Errorf("a node patch changed to an edge's key: %v, want it refused at patch.source", err)
	}
	edge := parse(t, `{"op":"update_edge","id":"e","patch":{"source":"b"}}`)
	asNode := edge
	asNode.Kind, asNode.ID = graph.OpUpdateNode, "a"
	if err := g.Apply([]graph.Op{asNode}); err == nil || !strings.Contains(err.Error(), "patch.source") {
		t.Errorf("an edge's patch on an update_node: %v, want it refused at patch.source", err)
	}
}

func mustApply(t *testing.T, g *graph.Graph, ops ...graph.Op) {
	t.Helper()
	if err := g.Apply(ops); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}
