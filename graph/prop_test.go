package graph_test

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"github.com/liveshare/liveshare/graph"
)

// A small id pool makes collisions, reuse after removal and cascades common.
var idPool = []string{"a", "b", "c", "d", "e", "f", "g", "h", "n.1", "n:2", "x-y", "Z_9"}

var numberLiterals = []string{"0", "1", "-2", "2.50", "1e3", "-0", "3.14159", "12345678901234567890"}

// genJSON draws a JSON value as text; nulls appear only when allowNull, so
// the same generator makes stored data (nulls kept) and patches (nulls
// delete).
func genJSON(t *rapid.T, depth int, allowNull bool) string {
	max := 5
	if depth <= 0 {
		max = 3
	}
	switch rapid.IntRange(0, max).Draw(t, "jsonkind") {
	case 0:
		return rapid.SampledFrom(numberLiterals).Draw(t, "num")
	case 1:
		b, _ := json.Marshal(rapid.SampledFrom([]string{"", "s", "<&>", "é", "\u2028"}).Draw(t, "str"))
		return string(b)
	case 2:
		return rapid.SampledFrom([]string{"true", "false"}).Draw(t, "bool")
	case 3:
		if allowNull {
			return "null"
		}
		return "1"
	case 4:
		n := rapid.IntRange(0, 3).Draw(t, "arrlen")
		parts := make([]string, n)
		for i := range parts {
			parts[i] = genJSON(t, depth-1, true) // nulls in arrays are values
		}
		return "[" + strings.Join(parts, ",") + "]"
	default:
		return genObject(t, depth-1, allowNull)
	}
}

func genObject(t *rapid.T, depth int, allowNull bool) string {
	n := rapid.IntRange(0, 3).Draw(t, "objlen")
	parts := make([]string, n)
	for i := range parts {
		k := rapid.SampledFrom([]string{"a", "b", "c"}).Draw(t, "key")
		parts[i] = fmt.Sprintf("%q:%s", k, genJSON(t, depth, allowNull))
	}
	return "{" + strings.Join(parts, ",") + "}"
}

type model struct {
	nodes, edges []string
	used         map[string]bool
}

func modelOf(g *graph.Graph) model {
	s := g.State()
	m := model{used: map[string]bool{}}
	for _, n := range s.Nodes {
		m.nodes = append(m.nodes, n.ID)
		m.used[n.ID] = true
	}
	for _, e := range s.Edges {
		m.edges = append(m.edges, e.ID)
		m.used[e.ID] = true
	}
	return m
}

func (m model) free() []string {
	var f []string
	for _, id := range idPool {
		if !m.used[id] {
			f = append(f, id)
		}
	}
	return f
}

// genOp draws an op that is valid on g.
func genOp(t *rapid.T, g *graph.Graph) graph.Op {
	m := modelOf(g)
	free := m.free()
	var choices []string
	if len(free) > 0 {
		choices = append(choices, "add_node", "add_node")
		if len(m.nodes) > 0 {
			choices = append(choices, "add_edge", "add_edge")
		}
	}
	if len(m.nodes) > 0 {
		choices = append(choices, "update_node", "remove_node")
	}
	if len(m.edges) > 0 {
		choices = append(choices, "update_edge", "remove_edge")
	}
	choices = append(choices, "reset")
	var js string
	switch rapid.SampledFrom(choices).Draw(t, "op") {
	case "add_node":
		id := rapid.SampledFrom(free).Draw(t, "id")
		js = fmt.Sprintf(`{"op":"add_node","node":{"id":%q,"kind":"k","label":"l","x":%s,"y":%s,"data":%s}}`,
			id, rapid.SampledFrom(numberLiterals).Draw(t, "x"), rapid.SampledFrom(numberLiterals).Draw(t, "y"), genObject(t, 2, false))
	case "add_edge":
		id := rapid.SampledFrom(free).Draw(t, "id")
		js = fmt.Sprintf(`{"op":"add_edge","edge":{"id":%q,"source":%q,"target":%q,"data":%s}}`,
			id, rapid.SampledFrom(m.nodes).Draw(t, "src"), rapid.SampledFrom(m.nodes).Draw(t, "dst"), genObject(t, 2, false))
	case "update_node":
		id := rapid.SampledFrom(m.nodes).Draw(t, "id")
		var parts []string
		if rapid.Bool().Draw(t, "keepid") {
			parts = append(parts, fmt.Sprintf(`"id":%q`, id))
		}
		if rapid.Bool().Draw(t, "setx") {
			parts = append(parts, `"x":`+rapid.SampledFrom(numberLiterals).Draw(t, "x"))
		}
		if rapid.Bool().Draw(t, "setlabel") {
			parts = append(parts, `"label":"L"`)
		}
		switch rapid.IntRange(0, 2).Draw(t, "data") {
		case 1:
			parts = append(parts, `"data":null`)
		case 2:
			parts = append(parts, `"data":`+genObject(t, 2, true))
		}
		js = fmt.Sprintf(`{"op":"update_node","id":%q,"patch":{%s}}`, id, strings.Join(parts, ","))
	case "update_edge":
		id := rapid.SampledFrom(m.edges).Draw(t, "id")
		var parts []string
		if rapid.Bool().Draw(t, "setsrc") {
			parts = append(parts, fmt.Sprintf(`"source":%q`, rapid.SampledFrom(m.nodes).Draw(t, "src")))
		}
		if rapid.Bool().Draw(t, "settgt") {
			parts = append(parts, fmt.Sprintf(`"target":%q`, rapid.SampledFrom(m.nodes).Draw(t, "tgt")))
		}
		if rapid.Bool().Draw(t, "data") {
			parts = append(parts, `"data":`+genObject(t, 2, true))
		}
		js = fmt.Sprintf(`{"op":"update_edge","id":%q,"patch":{%s}}`, id, strings.Join(parts, ","))
	case "remove_node":
		js = fmt.Sprintf(`{"op":"remove_node","id":%q}`, rapid.SampledFrom(m.nodes).Draw(t, "id"))
	case "remove_edge":
		js = fmt.Sprintf(`{"op":"remove_edge","id":%q}`, rapid.SampledFrom(m.edges).Draw(t, "id"))
	case "reset":
		// Keep a random subset of the current graph, so later ops still
		// find something to act on.
		s := g.State()
		keep := map[string]bool{}
		var nodes []graph.Node
		for _, n := range s.Nodes {
			if rapid.Bool().Draw(t, "keepnode") {
				nodes = append(nodes, n)
				keep[n.ID] = true
			}
		}
		var edges []graph.Edge
		for _, e := range s.Edges {
			if keep[e.Source] && keep[e.Target] {
				edges = append(edges, e)
			}
		}
		st, _ := json.Marshal(graph.State{Nodes: nodes, Edges: edges})
		js = fmt.Sprintf(`{"op":"reset","snapshot_id":"snap","state":%s}`, st)
	}
	op, err := graph.ParseOp([]byte(js))
	if err != nil {
		t.Fatalf("generated invalid op %s: %v", js, err)
	}
	return op
}

// genBadOp draws an op that fails on any graph built from idPool.
func genBadOp(t *rapid.T) graph.Op {
	return rapid.SampledFrom([]graph.Op{
		{Kind: graph.OpRemoveNode, ID: "missing"},
		{Kind: graph.OpRemoveEdge, ID: "missing"},
		{Kind: graph.OpUpdateNode, ID: "missing", Patch: json.RawMessage(`{}`)},
		{Kind: graph.OpAddEdge, Edge: &graph.Edge{ID: "missing", Source: "missing", Target: "missing"}},
		{Kind: graph.OpAddNode, Node: &graph.Node{ID: "bad id"}},
		{Kind: "nope"},
	}).Draw(t, "bad")
}

func TestPropBatchesEqualSingleOps(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ref := graph.New()
		var ops []graph.Op
		n := rapid.IntRange(0, 80).Draw(t, "n")
		for i := 0; i < n; i++ {
			// Check of an arbitrary batch never changes the graph and
			// agrees with Apply on a clone.
			if rapid.IntRange(0, 4).Draw(t, "probe") == 0 {
				before := ref.State()
				var batch []graph.Op
				for k := rapid.IntRange(0, 3).Draw(t, "probelen"); k > 0; k-- {
					batch = append(batch, genOp(t, ref))
				}
				if rapid.Bool().Draw(t, "withbad") {
					batch = append(batch, genBadOp(t))
				}
				cerr := ref.Check(batch)
				if !ref.State().Equal(before) {
					t.Fatalf("Check changed the graph")
				}
				clone := ref.Clone()
				aerr := clone.Apply(batch)
				if fmt.Sprint(cerr) != fmt.Sprint(aerr) {
					t.Fatalf("Check %v, Apply %v", cerr, aerr)
				}
				if aerr != nil && !clone.State().Equal(before) {
					t.Fatalf("failed Apply changed the graph: %v", aerr)
				}
				checkInvariants(t, ref)
				checkInvariants(t, clone)
				if !ref.State().Equal(before) {
					t.Fatalf("applying to the clone changed the original")
				}
			}
			op := genOp(t, ref)
			if err := ref.Apply([]graph.Op{op}); err != nil {
				t.Fatalf("valid op rejected: %v", err)
			}
			ops = append(ops, op)
			checkInvariants(t, ref)
		}

		g := graph.New()
		for i := 0; i < len(ops); {
			k := rapid.IntRange(1, len(ops)-i).Draw(t, "batch")
			batch := ops[i : i+k]
			if rapid.Bool().Draw(t, "failfirst") {
				// The same batch with a failing op appended changes nothing.
				before := g.State()
				bad := append(append([]graph.Op(nil), batch...), genBadOp(t))
				if err := g.Apply(bad); err == nil {
					t.Fatalf("batch with a bad op accepted")
				}
				if !g.State().Equal(before) {
					t.Fatalf("failed batch changed the graph")
				}
			}
			if err := g.Apply(batch); err != nil {
				t.Fatalf("batch %d..%d: %v", i, i+k, err)
			}
			i += k
		}
		if !g.State().Equal(ref.State()) {
			t.Fatalf("batched state differs:\n%+v\n%+v", g.State(), ref.State())
		}
		checkInvariants(t, g)
		// The final state survives a JSON round trip through FromState.
		b, _ := json.Marshal(g.State())
		var back graph.State
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		g2, err := graph.FromState(back)
		if err != nil || !g2.State().Equal(g.State()) {
			t.Fatalf("FromState round trip: %v", err)
		}
	})
}

// checkInvariants checks what the package promises about every State.
func checkInvariants(t *rapid.T, g *graph.Graph) {
	s := g.State()
	if s.Nodes == nil || s.Edges == nil {
		t.Fatalf("nil slices in State")
	}
	if !sort.SliceIsSorted(s.Nodes, func(i, j int) bool { return s.Nodes[i].ID < s.Nodes[j].ID }) ||
		!sort.SliceIsSorted(s.Edges, func(i, j int) bool { return s.Edges[i].ID < s.Edges[j].ID }) {
		t.Fatalf("State not sorted")
	}
	nodes := map[string]bool{}
	for _, n := range s.Nodes {
		nodes[n.ID] = true
	}
	for _, e := range s.Edges {
		if nodes[e.ID] {
			t.Fatalf("id %q is both node and edge", e.ID)
		}
		if !nodes[e.Source] || !nodes[e.Target] {
			t.Fatalf("edge %q dangles", e.ID)
		}
	}
	if g.ElementCount() != len(s.Nodes)+len(s.Edges) {
		t.Fatalf("ElementCount")
	}
	// The incrementally kept size bound equals one computed from scratch.
	fresh, err := graph.FromState(s)
	if err != nil {
		t.Fatal(err)
	}
	if fresh.SizeBound() != g.SizeBound() {
		t.Fatalf("SizeBound %d, recomputed %d", g.SizeBound(), fresh.SizeBound())
	}
}

// A Tx validates a group of batches as a room's sequencer does: each batch
// against the state the accepted ones before it leave. Its accepted batches
// applied for real give the state the Tx reached, and Rollback restores the
// graph exactly (size bound included).
func TestPropTxGroupsEqualAcceptedBatches(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		g := graph.New()
		for k := rapid.IntRange(0, 20).Draw(t, "setup"); k > 0; k-- {
			if err := g.Apply([]graph.Op{genOp(t, g)}); err != nil {
				t.Fatalf("valid op rejected: %v", err)
			}
		}
		before, beforeSize := g.State(), g.SizeBound()
		x := g.Begin()
		var accepted [][]graph.Op
		for b := rapid.IntRange(1, 8).Draw(t, "batches"); b > 0; b-- {
			var batch []graph.Op
			for k := rapid.IntRange(1, 3).Draw(t, "len"); k > 0; k-- {
				batch = append(batch, genOp(t, g))
			}
			if rapid.IntRange(0, 3).Draw(t, "bad") == 0 {
				batch = append(batch, genBadOp(t))
			}
			mark, at := x.Mark(), g.State()
			if err := x.Apply(batch); err != nil {
				if !g.State().Equal(at) || x.Mark() != mark {
					t.Fatalf("a refused batch changed the state: %v", err)
				}
				continue
			}
			if rapid.IntRange(0, 4).Draw(t, "undo") == 0 {
				x.RollbackTo(mark) // as for a batch over the size budget
				if !g.State().Equal(at) {
					t.Fatalf("RollbackTo did not restore the state")
				}
				continue
			}
			accepted = append(accepted, batch)
		}
		reached := g.State()
		x.Rollback()
		if !g.State().Equal(before) || g.SizeBound() != beforeSize {
			t.Fatalf("Rollback left a different state (size %d, was %d)", g.SizeBound(), beforeSize)
		}
		checkInvariants(t, g)
		for _, batch := range accepted {
			if err := g.Apply(batch); err != nil {
				t.Fatalf("accepted batch refused on replay: %v", err)
			}
		}
		if !g.State().Equal(reached) {
			t.Fatalf("replaying the accepted batches gives another state")
		}
		checkInvariants(t, g)
	})
}
