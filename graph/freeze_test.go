package graph_test

import (
	"fmt"
	"slices"
	"testing"

	"pgregory.net/rapid"

	"github.com/liveshare/liveshare/graph"
)

// A frozen view keeps the state of its Freeze while the graph goes on
// changing: ops, refused batches, a Tx rolled back, resets.
func TestPropFreezeKeepsItsState(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		g := graph.New()
		type view struct {
			f    *graph.Frozen
			want graph.State
		}
		var views []view
		for range rapid.IntRange(1, 60).Draw(t, "steps") {
			switch rapid.IntRange(0, 4).Draw(t, "what") {
			case 0:
				views = append(views, view{g.Freeze(), g.State()})
			case 1:
				x := g.Begin()
				_ = x.Apply([]graph.Op{genOp(t, g), genOp(t, g)})
				if rapid.Bool().Draw(t, "freezeInTx") {
					// A view taken mid-Tx sees the Tx's changes and
					// keeps them after the rollback.
					views = append(views, view{g.Freeze(), g.State()})
				}
				x.Rollback()
			case 2:
				_ = g.Apply([]graph.Op{genOp(t, g), genBadOp(t)})
			default:
				if err := g.Apply([]graph.Op{genOp(t, g)}); err != nil {
					t.Fatalf("valid op rejected: %v", err)
				}
			}
			checkInvariants(t, g)
		}
		for i, v := range views {
			got := v.f.State()
			if !got.Equal(v.want) || v.f.ElementCount() != len(v.want.Nodes)+len(v.want.Edges) {
				t.Fatalf("view %d changed:\n%+v\nwant\n%+v", i, got, v.want)
			}
			// Iterated in id order, without a copy of the whole view,
			// it yields the same elements, in State's order.
			ordered := graph.State{Nodes: slices.Collect(v.f.NodesByID()), Edges: slices.Collect(v.f.EdgesByID())}
			if !ordered.Equal(v.want) || v.f.NodeCount() != len(v.want.Nodes) || v.f.EdgeCount() != len(v.want.Edges) {
				t.Fatalf("view %d in id order:\n%+v\nwant\n%+v", i, ordered, v.want)
			}
			// And unordered, the same elements once each.
			unordered := graph.State{Nodes: slices.Collect(v.f.Nodes()), Edges: slices.Collect(v.f.Edges())}
			unordered.Sort()
			if !unordered.Equal(v.want) {
				t.Fatalf("view %d unordered:\n%+v\nwant\n%+v", i, unordered, v.want)
			}
		}
	})
}

// A view of a graph large enough to be kept in pieces yields its elements in
// id order, as they were at the freeze, while the graph goes on changing.
func TestFrozenByIDLargeGraph(t *testing.T) {
	g := graph.New()
	var ops []graph.Op
	for i := range 3000 {
		ops = append(ops, graph.Op{Kind: graph.OpAddNode, Node: &graph.Node{ID: fmt.Sprintf("n%d", i), X: float64(i)}})
	}
	for i := range 1500 {
		ops = append(ops, graph.Op{Kind: graph.OpAddEdge, Edge: &graph.Edge{ID: fmt.Sprintf("e%d", i),
			Source: fmt.Sprintf("n%d", i), Target: fmt.Sprintf("n%d", (i*7)%3000)}})
	}
	if err := g.Apply(ops); err != nil {
		t.Fatal(err)
	}
	want := g.State()
	f := g.Freeze()
	if err := g.Apply([]graph.Op{
		{Kind: graph.OpRemoveNode, ID: "n5"},
		{Kind: graph.OpUpdateNode, ID: "n6", Patch: []byte(`{"x":-1}`)},
		{Kind: graph.OpAddNode, Node: &graph.Node{ID: "n0a"}},
	}); err != nil {
		t.Fatal(err)
	}
	got := graph.State{Nodes: slices.Collect(f.NodesByID()), Edges: slices.Collect(f.EdgesByID())}
	if !got.Equal(want) {
		t.Fatalf("view in id order is not the graph's state at the freeze (%d nodes, %d edges; want %d, %d)",
			len(got.Nodes), len(got.Edges), len(want.Nodes), len(want.Edges))
	}
	// Stopping early stops the iteration.
	n := 0
	for range f.NodesByID() {
		n++
		if n == 10 {
			break
		}
	}
	if n != 10 {
		t.Fatalf("iterated %d nodes after break at 10", n)
	}
}
