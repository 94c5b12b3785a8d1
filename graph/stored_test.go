package graph_test

import (
	"strings"
	"testing"

	"pgregory.net/rapid"

	"github.com/liveshare/liveshare/graph"
)

// FromStoredState builds the same graph as FromState from any state a graph
// holds, size bound included.
func TestPropFromStoredStateEqualsFromState(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		g := graph.New()
		for range rapid.IntRange(0, 40).Draw(t, "ops") {
			if err := g.Apply([]graph.Op{genOp(t, g)}); err != nil {
				t.Fatalf("valid op rejected: %v", err)
			}
		}
		s := g.State()
		got, err := graph.FromStoredState(g.State())
		if err != nil {
			t.Fatalf("FromStoredState: %v", err)
		}
		if !got.State().Equal(s) || got.SizeBound() != g.SizeBound() {
			t.Fatalf("FromStoredState gave %+v (size %d), want %+v (size %d)", got.State(), got.SizeBound(), s, g.SizeBound())
		}
		checkInvariants(t, got)
	})
}

func TestFromStoredStateRejectsInconsistentStates(t *testing.T) {
	n := func(id string) graph.Node { return graph.Node{ID: id} }
	e := func(id, s, tg string) graph.Edge { return graph.Edge{ID: id, Source: s, Target: tg} }
	for name, c := range map[string]struct {
		s    graph.State
		want string
	}{
		"duplicate node":    {graph.State{Nodes: []graph.Node{n("a"), n("a")}}, "used by another node"},
		"edge named a node": {graph.State{Nodes: []graph.Node{n("a")}, Edges: []graph.Edge{e("a", "a", "a")}}, "used by another node"},
		"duplicate edge":    {graph.State{Nodes: []graph.Node{n("a")}, Edges: []graph.Edge{e("x", "a", "a"), e("x", "a", "a")}}, "used by another edge"},
		"missing source":    {graph.State{Nodes: []graph.Node{n("a")}, Edges: []graph.Edge{e("x", "b", "a")}}, `node "b" does not exist`},
		"missing target":    {graph.State{Nodes: []graph.Node{n("a")}, Edges: []graph.Edge{e("x", "a", "b")}}, `node "b" does not exist`},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := graph.FromStoredState(c.s); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one mentioning %q", err, c.want)
			}
		})
	}
}
