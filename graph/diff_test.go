package graph_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/liveshare/liveshare/graph"
)

func mustState(t *testing.T, ops ...string) graph.State {
	t.Helper()
	g := graph.New()
	for _, s := range ops {
		if err := g.Apply([]graph.Op{parse(t, s)}); err != nil {
			t.Fatalf("Apply(%s): %v", s, err)
		}
	}
	return g.State()
}

func TestDiffStates(t *testing.T) {
	t.Parallel()
	a := mustState(t,
		`{"op":"add_node","node":{"id":"users","kind":"table","label":"users","x":1,"y":2,"data":{"columns":[{"name":"id"}],"note":"x"}}}`,
		`{"op":"add_node","node":{"id":"orders","kind":"table","label":"orders","x":0,"y":0}}`,
		`{"op":"add_node","node":{"id":"gone","kind":"note","label":"gone","x":0,"y":0}}`,
		`{"op":"add_edge","edge":{"id":"fk","kind":"relation","source":"orders","target":"users","label":"user_id"}}`,
		`{"op":"add_edge","edge":{"id":"to_gone","kind":"relation","source":"gone","target":"users","label":""}}`,
	)
	b := mustState(t,
		`{"op":"add_node","node":{"id":"users","kind":"table","label":"people","x":1,"y":5,"data":{"columns":[{"name":"id"},{"name":"email"}],"tag":1}}}`,
		`{"op":"add_node","node":{"id":"orders","kind":"table","label":"orders","x":0,"y":0}}`,
		`{"op":"add_node","node":{"id":"new","kind":"view","label":"new","x":3,"y":3}}`,
		`{"op":"add_edge","edge":{"id":"fk","kind":"relation","source":"orders","target":"new","label":"user_id"}}`,
	)
	d := graph.DiffStates(a, b)
	ids := func(ns []graph.Node) []string {
		out := []string{}
		for _, n := range ns {
			out = append(out, n.ID)
		}
		return out
	}
	if got, want := ids(d.Nodes.Added), []string{"new"}; !reflect.DeepEqual(got, want) {
		t.Errorf("nodes added = %v, want %v", got, want)
	}
	if got, want := ids(d.Nodes.Removed), []string{"gone"}; !reflect.DeepEqual(got, want) {
		t.Errorf("nodes removed = %v, want %v", got, want)
	}
	if len(d.Nodes.Changed) != 1 || d.Nodes.Changed[0].ID != "users" {
		t.Fatalf("nodes changed = %+v, want users only", d.Nodes.Changed)
	}
	if got, want := d.Nodes.Changed[0].Fields, []string{"label", "y", "data.columns", "data.note", "data.tag"}; !reflect.DeepEqual(got, want) {
		t.Errorf("users fields = %v, want %v", got, want)
	}
	if got := d.Nodes.Changed[0].Before.Label; got != "users" {
		t.Errorf("before label = %q, want users", got)
	}
	// The edge removed with its node is listed as removed.
	if len(d.Edges.Removed) != 1 || d.Edges.Removed[0].ID != "to_gone" {
		t.Errorf("edges removed = %+v, want to_gone", d.Edges.Removed)
	}
	if len(d.Edges.Changed) != 1 || !reflect.DeepEqual(d.Edges.Changed[0].Fields, []string{"target"}) {
		t.Errorf("edges changed = %+v, want fk's target", d.Edges.Changed)
	}
	if got := d.Apply(a); !got.Equal(b) {
		t.Errorf("Apply(a) = %+v, want b %+v", got, b)
	}
	if got := graph.DiffStates(b, a).Apply(b); !got.Equal(a) {
		t.Errorf("reverse Apply(b) = %+v, want a", got)
	}
	if !graph.DiffStates(a, a).Empty() {
		t.Errorf("DiffStates(a, a) is not empty")
	}
	// Empty lists are [] in JSON, never null: clients index them.
	raw, err := json.Marshal(graph.DiffStates(a, a))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"nodes":{"added":[],"removed":[],"changed":[]},"edges":{"added":[],"removed":[],"changed":[]}}`; string(raw) != want {
		t.Errorf("empty diff JSON = %s, want %s", raw, want)
	}
}

// TestDecodeLoggedMatchesParseOp: an op as the log stores it (ParseOp, then
// json.Marshal) decodes to the same op either way, and a logged op without
// the fields its kind needs is refused rather than applied.
func TestDecodeLoggedMatchesParseOp(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{
		`{"op":"add_node","node":{"id":"users","kind":"table","label":"users","x":1.5,"y":-2,"data":{"b":[1,{"z":null}],"a":"é"}}}`,
		`{"op":"add_node","node":{"id":"bare"}}`,
		`{"op":"update_node","id":"users","patch":{"x":3,"data":{"a":null}}}`,
		`{"op":"remove_node","id":"users"}`,
		`{"op":"add_edge","edge":{"id":"e","source":"a","target":"b"}}`,
		`{"op":"update_edge","id":"e","patch":{"label":"l"}}`,
		`{"op":"remove_edge","id":"e"}`,
		`{"op":"reset","snapshot_id":"s","state":{"nodes":[{"id":"a"}],"edges":[]}}`,
		`{"op":"reset","state":{"nodes":[],"edges":[]}}`,
	} {
		op := parse(t, raw)
		logged, err := json.Marshal(op)
		if err != nil {
			t.Fatal(err)
		}
		got, err := graph.DecodeLogged(logged)
		if err != nil {
			t.Fatalf("DecodeLogged(%s): %v", logged, err)
		}
		if !sameOp(got, op) {
			t.Errorf("DecodeLogged(%s) = %+v, want %+v", logged, got, op)
		}
	}
	for _, bad := range []string{`{"op":"add_node"}`, `{"op":"update_node","id":"x"}`, `{"op":"zap","id":"x"}`, `{"op":"reset"}`, `[`} {
		if _, err := graph.DecodeLogged([]byte(bad)); err == nil {
			t.Errorf("DecodeLogged(%s) accepted it", bad)
		}
	}
}

// sameOp compares the fields of two ops, not what validating one of them
// kept of its patch.
func sameOp(a, b graph.Op) bool {
	return a.Kind == b.Kind && a.ID == b.ID && a.SnapshotID == b.SnapshotID && bytes.Equal(a.Patch, b.Patch) &&
		reflect.DeepEqual(a.Node, b.Node) && reflect.DeepEqual(a.Edge, b.Edge) && reflect.DeepEqual(a.State, b.State)
}
