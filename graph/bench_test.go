package graph_test

import (
	"fmt"
	"testing"

	"github.com/liveshare/liveshare/graph"
)

// bigGraph has 50k nodes in a chain and 50k edges between neighbours.
func bigGraph(b *testing.B) *graph.Graph {
	b.Helper()
	const n = 50000
	s := graph.State{}
	for i := 0; i < n; i++ {
		s.Nodes = append(s.Nodes, graph.Node{ID: fmt.Sprintf("n%d", i), Kind: "table", Data: []byte(`{"cols":[{"name":"id","type":"uuid"}]}`)})
	}
	for i := 0; i < n; i++ {
		s.Edges = append(s.Edges, graph.Edge{ID: fmt.Sprintf("e%d", i), Source: fmt.Sprintf("n%d", i), Target: fmt.Sprintf("n%d", (i+1)%n)})
	}
	g, err := graph.FromState(s)
	if err != nil {
		b.Fatal(err)
	}
	return g
}

// A rejected batch on a 100k-element room costs about as much as the batch,
// not the room.
func BenchmarkApplyRejectedBatchLargeGraph(b *testing.B) {
	g := bigGraph(b)
	ops := []graph.Op{
		{Kind: graph.OpRemoveNode, ID: "n10"},
		{Kind: graph.OpUpdateNode, ID: "n11", Patch: []byte(`{"x":5,"data":{"note":"hi"}}`)},
		{Kind: graph.OpRemoveNode, ID: "missing"},
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := g.Apply(ops); err == nil {
			b.Fatal("accepted")
		}
	}
}

func BenchmarkCheckLargeGraph(b *testing.B) {
	g := bigGraph(b)
	ops := []graph.Op{
		{Kind: graph.OpAddNode, Node: &graph.Node{ID: "new", Data: []byte(`{"a":1}`)}},
		{Kind: graph.OpAddEdge, Edge: &graph.Edge{ID: "new-e", Source: "new", Target: "n1"}},
		{Kind: graph.OpRemoveNode, ID: "n1"},
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := g.Check(ops); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkClone(b *testing.B) {
	g := bigGraph(b)
	b.ReportAllocs()
	for b.Loop() {
		_ = g.Clone()
	}
}

// BenchmarkApplyLargeGraph applies accepted ops one request at a time to a
// 100k-element graph, as a room's sequencer does after a commit: a move, a
// data patch, and an add then remove of a node with an edge.
func BenchmarkApplyLargeGraph(b *testing.B) {
	g := bigGraph(b)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		id := fmt.Sprintf("n%d", i%50000)
		ops := []graph.Op{
			{Kind: graph.OpUpdateNode, ID: id, Patch: []byte(fmt.Sprintf(`{"x":%d,"y":7}`, i))},
			{Kind: graph.OpUpdateNode, ID: id, Patch: []byte(`{"data":{"note":"hi"}}`)},
			{Kind: graph.OpAddNode, Node: &graph.Node{ID: "tmp", Data: []byte(`{"a":1}`)}},
			{Kind: graph.OpAddEdge, Edge: &graph.Edge{ID: "tmp-e", Source: "tmp", Target: id}},
			{Kind: graph.OpRemoveNode, ID: "tmp"},
		}
		if err := g.Apply(ops); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFromState builds a 100k-element graph from a state, as decoding
// a snapshot does.
func BenchmarkFromState(b *testing.B) {
	s := bigGraph(b).State()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := graph.FromState(s); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkElements copies a 100k-element graph's elements, as a snapshot
// or GET /graph does.
func BenchmarkElements(b *testing.B) {
	g := bigGraph(b)
	b.ReportAllocs()
	for b.Loop() {
		_ = g.Elements()
	}
}

// BenchmarkFreezeThenApply is the most a write pays for a freeze before
// it: the freeze, then a move whose piece of the 100k-element graph is
// copied first.
func BenchmarkFreezeThenApply(b *testing.B) {
	g := bigGraph(b)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		_ = g.Freeze()
		op := graph.Op{Kind: graph.OpUpdateNode, ID: fmt.Sprintf("n%d", i%50000), Patch: []byte(`{"x":1}`)}
		if err := g.Apply([]graph.Op{op}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFreeze is what a room's lock is held for when it is captured for
// a snapshot or a read of a 100k-element graph (BenchmarkElements was, before
// the graph could be frozen).
func BenchmarkFreeze(b *testing.B) {
	g := bigGraph(b)
	b.ReportAllocs()
	for b.Loop() {
		_ = g.Freeze()
	}
}

// BenchmarkFromStateSmall builds a room of 10 nodes and 5 edges, the common
// size: its B/op is what a small room costs in memory.
func BenchmarkFromStateSmall(b *testing.B) {
	var s graph.State
	for i := range 10 {
		s.Nodes = append(s.Nodes, graph.Node{ID: fmt.Sprintf("n%d", i), Kind: "table", Data: []byte(`{"a":1}`)})
	}
	for i := range 5 {
		s.Edges = append(s.Edges, graph.Edge{ID: fmt.Sprintf("e%d", i), Source: "n0", Target: fmt.Sprintf("n%d", i)})
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := graph.FromState(s); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTrialThenApplyParsedUpdate is what a room does with one posted
// update_node of ssebench's shape: parse it, try it in a transaction that is
// rolled back (the sequencer's check before the commit), then apply it.
func BenchmarkTrialThenApplyParsedUpdate(b *testing.B) {
	g := graph.New()
	if err := g.Apply([]graph.Op{{Kind: graph.OpAddNode, Node: &graph.Node{ID: "n1"}}}); err != nil {
		b.Fatal(err)
	}
	pad := make([]byte, 200)
	for i := range pad {
		pad[i] = 'x'
	}
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		op, err := graph.ParseOp(fmt.Appendf(nil, `{"op":"update_node","id":"n1","patch":{"data":{"t":%d,"s":%d,"pad":"%s"}}}`, 1764700000000000000+i, i, pad))
		if err != nil {
			b.Fatal(err)
		}
		ops := []graph.Op{op}
		x := g.Begin()
		if err := x.Apply(ops); err != nil {
			b.Fatal(err)
		}
		x.Rollback()
		if err := g.Apply(ops); err != nil {
			b.Fatal(err)
		}
	}
}
