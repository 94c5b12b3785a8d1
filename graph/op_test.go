package graph_test

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/liveshare/liveshare/graph"
)

func TestParseOpValid(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // json.Marshal of the parsed op
	}{
		{"add_node", `{"op":"add_node","node":{"id":"users","kind":"table","label":"users","x":120.5,"y":80,"data":{"z":1,"columns":[{"name":"id","type":"uuid"}]}}}`,
			`{"op":"add_node","node":{"id":"users","kind":"table","label":"users","x":120.5,"y":80,"data":{"columns":[{"name":"id","type":"uuid"}],"z":1}}}`},
		{"add_node minimal", `{"op":"add_node","node":{"id":"a"}}`,
			`{"op":"add_node","node":{"id":"a","kind":"","label":"","x":0,"y":0,"data":{}}}`},
		{"data null", `{"op":"add_node","node":{"id":"a","data":null}}`,
			`{"op":"add_node","node":{"id":"a","kind":"","label":"","x":0,"y":0,"data":{}}}`},
		{"numbers verbatim", `{"op":"add_node","node":{"id":"a","data":{"n":1.50,"m":1E2,"big":123456789012345678901234567890}}}`,
			`{"op":"add_node","node":{"id":"a","kind":"","label":"","x":0,"y":0,"data":{"big":123456789012345678901234567890,"m":1E2,"n":1.50}}}`},
		{"whitespace", " \n{ \"op\" : \"remove_node\" , \"id\" : \"a\" }\n ", `{"op":"remove_node","id":"a"}`},
		{"id charset", `{"op":"remove_edge","id":"aZ09_.:-"}`, `{"op":"remove_edge","id":"aZ09_.:-"}`},
		{"id 128", `{"op":"remove_edge","id":"` + strings.Repeat("x", 128) + `"}`, `{"op":"remove_edge","id":"` + strings.Repeat("x", 128) + `"}`},
		{"add_edge", `{"op":"add_edge","edge":{"id":"orders_user_fk","kind":"relation","source":"orders","target":"users","label":"user_id","data":{}}}`,
			`{"op":"add_edge","edge":{"id":"orders_user_fk","kind":"relation","source":"orders","target":"users","label":"user_id","data":{}}}`},
		{"update_node", `{"op":"update_node","id":"a","patch":{"x":1.0,"data":{"k":null,"b":{"c":1}}}}`,
			`{"op":"update_node","id":"a","patch":{"data":{"b":{"c":1},"k":null},"x":1.0}}`},
		{"update_edge", `{"op":"update_edge","id":"e","patch":{"source":"b","data":null}}`,
			`{"op":"update_edge","id":"e","patch":{"data":null,"source":"b"}}`},
		{"reset", `{"op":"reset","snapshot_id":"0b6c1d8e-5b7a-4c1e-9d8f-2a3b4c5d6e7f","state":{"nodes":[{"id":"b"},{"id":"a"}],"edges":[{"id":"e","source":"a","target":"b"}]}}`,
			`{"op":"reset","snapshot_id":"0b6c1d8e-5b7a-4c1e-9d8f-2a3b4c5d6e7f","state":{"nodes":[{"id":"b","kind":"","label":"","x":0,"y":0,"data":{}},{"id":"a","kind":"","label":"","x":0,"y":0,"data":{}}],"edges":[{"id":"e","kind":"","source":"a","target":"b","label":"","data":{}}]}}`},
		{"reset empty", `{"op":"reset","state":{}}`, `{"op":"reset","state":{"nodes":[],"edges":[]}}`},
		{"html chars", `{"op":"add_node","node":{"id":"a","label":"<b>","data":{"s":"a<b&c"}}}`,
			`{"op":"add_node","node":{"id":"a","kind":"","label":"\u003cb\u003e","x":0,"y":0,"data":{"s":"a\u003cb\u0026c"}}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			op, err := graph.ParseOp([]byte(tt.in))
			if err != nil {
				t.Fatalf("ParseOp: %v", err)
			}
			b, err := json.Marshal(op)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Fatalf("marshal:\n got %s\nwant %s", b, tt.want)
			}
			again, err := graph.ParseOp(b)
			if err != nil {
				t.Fatalf("re-parse: %v", err)
			}
			if !reflect.DeepEqual(op, again) {
				t.Fatalf("re-parse differs:\n%#v\n%#v", op, again)
			}
		})
	}
}

func TestParseOpRejects(t *testing.T) {
	long := strings.Repeat("x", 129)
	bigData := `{"s":"` + strings.Repeat("x", 64*1024) + `"}`
	tests := []struct {
		name   string
		in     string
		op     graph.OpKind
		field  string
		reason string // substring
	}{
		{"malformed", `{"op":`, "", "", "malformed JSON"},
		{"empty", ``, "", "", "empty op"},
		{"not object", `[1]`, "", "", "must be a JSON object"},
		{"null", `null`, "", "", "must be a JSON object"},
		{"trailing data", `{"op":"remove_node","id":"a"} {}`, "", "", "unexpected data after the op"},
		{"trailing garbage", `{"op":"remove_node","id":"a"}x`, "", "", "unexpected data"},
		{"missing op", `{"id":"a"}`, "", "op", "is required"},
		{"unknown op", `{"op":"explode","id":"a"}`, "explode", "op", `unknown op "explode"`},
		{"op not string", `{"op":1}`, "", "op", "must be a string"},
		{"unknown field op", `{"op":"remove_node","id":"a","force":true}`, "remove_node", "force", "unknown field"},
		{"field case", `{"op":"remove_node","ID":"a"}`, "remove_node", "ID", "unknown field"},
		{"unknown field node", `{"op":"add_node","node":{"id":"a","color":"red"}}`, "add_node", "node.color", "unknown field"},
		{"unknown field edge", `{"op":"add_edge","edge":{"id":"e","source":"a","target":"b","weight":1}}`, "add_edge", "edge.weight", "unknown field"},
		{"unknown field state", `{"op":"reset","state":{"nodes":[],"extra":1}}`, "reset", "state.extra", "unknown field"},
		{"unknown field state node", `{"op":"reset","state":{"nodes":[{"id":"a","z":1}]}}`, "reset", "state.nodes[0].z", "unknown field"},
		{"unknown field state edge", `{"op":"reset","state":{"nodes":[{"id":"a"}],"edges":[{"id":"e","source":"a","target":"a","z":1}]}}`, "reset", "state.edges[0].z", "unknown field"},
		{"bad id chars", `{"op":"remove_node","id":"a b"}`, "remove_node", "id", "must be 1-128 characters"},
		{"bad id slash", `{"op":"add_node","node":{"id":"a/b"}}`, "add_node", "node.id", "must be 1-128 characters"},
		{"bad id unicode", `{"op":"add_node","node":{"id":"é"}}`, "add_node", "node.id", "must be 1-128 characters"},
		{"empty id", `{"op":"remove_node","id":""}`, "remove_node", "id", "is required"},
		{"empty node id", `{"op":"add_node","node":{"id":""}}`, "add_node", "node.id", "must be 1-128 characters"},
		{"missing node id", `{"op":"add_node","node":{"kind":"t"}}`, "add_node", "node.id", "must be 1-128 characters"},
		{"129-char id", `{"op":"remove_node","id":"` + long + `"}`, "remove_node", "id", "must be 1-128 characters"},
		{"129-char node id", `{"op":"add_node","node":{"id":"` + long + `"}}`, "add_node", "node.id", "must be 1-128 characters"},
		{"id not string", `{"op":"remove_node","id":5}`, "remove_node", "id", "must be a string"},
		{"bad edge source", `{"op":"add_edge","edge":{"id":"e","source":"","target":"b"}}`, "add_edge", "edge.source", "must be 1-128"},
		{"bad edge target", `{"op":"add_edge","edge":{"id":"e","source":"a","target":"b c"}}`, "add_edge", "edge.target", "must be 1-128"},
		{"kind too long", `{"op":"add_node","node":{"id":"a","kind":"` + strings.Repeat("k", 257) + `"}}`, "add_node", "node.kind", "at most 256 characters"},
		{"label too long", `{"op":"add_edge","edge":{"id":"e","source":"a","target":"b","label":"` + strings.Repeat("é", 257) + `"}}`, "add_edge", "edge.label", "at most 256 characters"},
		{"x overflow", `{"op":"add_node","node":{"id":"a","x":1e400}}`, "add_node", "node.x", "finite"},
		{"y overflow", `{"op":"add_node","node":{"id":"a","y":-1e400}}`, "add_node", "node.y", "finite"},
		{"x string", `{"op":"add_node","node":{"id":"a","x":"1"}}`, "add_node", "node.x", "must be a number"},
		{"data overflow number", `{"op":"add_node","node":{"id":"a","data":{"a":[1e400]}}}`, "add_node", "node.data", "out of range"},
		{"data array", `{"op":"add_node","node":{"id":"a","data":[1]}}`, "add_node", "node.data", "must be a JSON object"},
		{"data string", `{"op":"add_edge","edge":{"id":"e","source":"a","target":"b","data":"x"}}`, "add_edge", "edge.data", "must be a JSON object"},
		{"data too big", `{"op":"add_node","node":{"id":"a","data":` + bigData + `}}`, "add_node", "node.data", "at most 65536 bytes"},
		{"node not object", `{"op":"add_node","node":"a"}`, "add_node", "node", "must be a JSON object"},
		{"node missing", `{"op":"add_node"}`, "add_node", "node", "is required"},
		{"node null", `{"op":"add_node","node":null}`, "add_node", "node", "is required"},
		{"extra id on add", `{"op":"add_node","id":"a","node":{"id":"a"}}`, "add_node", "id", "not allowed in add_node"},
		{"extra node on remove", `{"op":"remove_node","id":"a","node":{"id":"a"}}`, "remove_node", "node", "not allowed"},
		{"edge on add_node", `{"op":"add_node","node":{"id":"a"},"edge":{"id":"e","source":"a","target":"a"}}`, "add_node", "edge", "not allowed"},
		{"patch on remove", `{"op":"remove_edge","id":"a","patch":{}}`, "remove_edge", "patch", "not allowed"},
		{"snapshot_id on add", `{"op":"add_node","node":{"id":"a"},"snapshot_id":"s"}`, "add_node", "snapshot_id", "not allowed"},
		{"missing patch", `{"op":"update_node","id":"a"}`, "update_node", "patch", "is required"},
		{"missing update id", `{"op":"update_node","patch":{}}`, "update_node", "id", "is required"},
		{"patch not object", `{"op":"update_node","id":"a","patch":[1]}`, "update_node", "patch", "must be a JSON object"},
		{"patch string", `{"op":"update_edge","id":"a","patch":"x"}`, "update_edge", "patch", "must be a JSON object"},
		{"patch unknown key", `{"op":"update_node","id":"a","patch":{"color":"red"}}`, "update_node", "patch.color", "unknown field"},
		{"patch edge key on node", `{"op":"update_node","id":"a","patch":{"source":"b"}}`, "update_node", "patch.source", "unknown field"},
		{"patch node key on edge", `{"op":"update_edge","id":"a","patch":{"x":1}}`, "update_edge", "patch.x", "unknown field"},
		{"patch null x", `{"op":"update_node","id":"a","patch":{"x":null}}`, "update_node", "patch.x", "cannot be removed"},
		{"patch null id", `{"op":"update_node","id":"a","patch":{"id":null}}`, "update_node", "patch.id", "cannot be removed"},
		{"patch null label", `{"op":"update_edge","id":"a","patch":{"label":null}}`, "update_edge", "patch.label", "cannot be removed"},
		{"patch null source", `{"op":"update_edge","id":"a","patch":{"source":null}}`, "update_edge", "patch.source", "cannot be removed"},
		{"patch x overflow", `{"op":"update_node","id":"a","patch":{"x":1e400}}`, "update_node", "patch.x", "finite"},
		{"patch data overflow", `{"op":"update_node","id":"a","patch":{"data":{"a":{"b":-1e400}}}}`, "update_node", "patch.data", "out of range"},
		{"patch x string", `{"op":"update_node","id":"a","patch":{"y":"1"}}`, "update_node", "patch.y", "must be a number"},
		{"patch kind number", `{"op":"update_node","id":"a","patch":{"kind":1}}`, "update_node", "patch.kind", "must be a string"},
		{"patch bad id", `{"op":"update_node","id":"a","patch":{"id":"a b"}}`, "update_node", "patch.id", "must be 1-128"},
		{"patch bad source", `{"op":"update_edge","id":"a","patch":{"source":""}}`, "update_edge", "patch.source", "must be 1-128"},
		{"patch data array", `{"op":"update_node","id":"a","patch":{"data":[]}}`, "update_node", "patch.data", "must be a JSON object or null"},
		{"reset missing state", `{"op":"reset","snapshot_id":"s"}`, "reset", "state", "is required"},
		{"reset bad snapshot id", `{"op":"reset","snapshot_id":"a b","state":{}}`, "reset", "snapshot_id", "must be 1-128"},
		{"reset nodes not array", `{"op":"reset","state":{"nodes":{}}}`, "reset", "state.nodes", "must be a JSON array"},
		{"reset dup node", `{"op":"reset","state":{"nodes":[{"id":"a"},{"id":"a"}]}}`, "reset", "state.nodes[1].id", `id "a" is used by another node`},
		{"reset edge takes node id", `{"op":"reset","state":{"nodes":[{"id":"a"}],"edges":[{"id":"a","source":"a","target":"a"}]}}`, "reset", "state.edges[0].id", `id "a" is used by another node`},
		{"reset dup edge", `{"op":"reset","state":{"nodes":[{"id":"a"}],"edges":[{"id":"e","source":"a","target":"a"},{"id":"e","source":"a","target":"a"}]}}`, "reset", "state.edges[1].id", `used by another edge`},
		{"reset edge to missing", `{"op":"reset","state":{"nodes":[{"id":"a"}],"edges":[{"id":"e","source":"a","target":"b"}]}}`, "reset", "state.edges[0].target", `node "b" does not exist`},
		{"reset edge to edge", `{"op":"reset","state":{"nodes":[{"id":"a"}],"edges":[{"id":"e","source":"a","target":"a"},{"id":"f","source":"e","target":"a"}]}}`, "reset", "state.edges[1].source", `node "e" does not exist`},
		{"reset bad node", `{"op":"reset","state":{"nodes":[{"id":"a","x":1e999}]}}`, "reset", "state.nodes[0].x", "finite"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			op, err := graph.ParseOp([]byte(tt.in))
			if err == nil {
				t.Fatalf("ParseOp accepted %s as %+v", tt.in, op)
			}
			var oe *graph.OpError
			if !errors.As(err, &oe) {
				t.Fatalf("error %T is not *OpError: %v", err, err)
			}
			if oe.Index != 0 || oe.Op != tt.op || oe.Field != tt.field || !strings.Contains(oe.Reason, tt.reason) {
				t.Fatalf("got %+v (%v)\nwant op=%q field=%q reason~%q", *oe, err, tt.op, tt.field, tt.reason)
			}
			if !reflect.DeepEqual(op, graph.Op{}) {
				t.Fatalf("op not zero on error: %+v", op)
			}
		})
	}
}

func TestValidateGoBuiltOps(t *testing.T) {
	nan := graph.Node{ID: "a", X: math.NaN()}
	inf := graph.Node{ID: "a", Y: math.Inf(-1)}
	bad := graph.Node{ID: "a", Label: "\xff"}
	tests := []struct {
		name  string
		op    graph.Op
		field string
	}{
		{"NaN x", graph.Op{Kind: graph.OpAddNode, Node: &nan}, "node.x"},
		{"-Inf y", graph.Op{Kind: graph.OpAddNode, Node: &inf}, "node.y"},
		{"invalid utf8", graph.Op{Kind: graph.OpAddNode, Node: &bad}, "node.label"},
		{"empty kind", graph.Op{}, "op"},
		{"patch null", graph.Op{Kind: graph.OpUpdateNode, ID: "a", Patch: json.RawMessage("null")}, "patch"},
		{"patch malformed", graph.Op{Kind: graph.OpUpdateNode, ID: "a", Patch: json.RawMessage("{")}, "patch"},
		{"data malformed", graph.Op{Kind: graph.OpAddNode, Node: &graph.Node{ID: "a", Data: json.RawMessage(`{"a":}`)}}, "node.data"},
		{"data trailing", graph.Op{Kind: graph.OpAddNode, Node: &graph.Node{ID: "a", Data: json.RawMessage(`{} {}`)}}, "node.data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.op.Validate()
			var oe *graph.OpError
			if !errors.As(err, &oe) || oe.Field != tt.field {
				t.Fatalf("got %v, want error on %q", err, tt.field)
			}
		})
	}

	t.Run("normalises without touching the caller's node", func(t *testing.T) {
		n := &graph.Node{ID: "a", Data: json.RawMessage(`{ "b" : 1, "a" : 2 }`)}
		op := graph.Op{Kind: graph.OpAddNode, Node: n}
		if err := op.Validate(); err != nil {
			t.Fatal(err)
		}
		if got := string(op.Node.Data); got != `{"a":2,"b":1}` {
			t.Fatalf("data not canonical: %s", got)
		}
		if string(n.Data) != `{ "b" : 1, "a" : 2 }` {
			t.Fatalf("caller's node modified: %s", n.Data)
		}
		if err := op.Validate(); err != nil {
			t.Fatalf("second Validate: %v", err)
		}
	})
}

func TestOpErrorString(t *testing.T) {
	tests := []struct {
		err  graph.OpError
		want string
	}{
		{graph.OpError{Index: 3, Op: graph.OpAddEdge, Field: "edge.source", Reason: `node "x" does not exist`}, `op 3 (add_edge): edge.source: node "x" does not exist`},
		{graph.OpError{Index: 0, Field: "", Reason: "malformed JSON"}, `op 0: malformed JSON`},
		{graph.OpError{Index: 1, Op: graph.OpReset, Reason: "r"}, `op 1 (reset): r`},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
		if tt.err.Code() != "invalid_op" {
			t.Errorf("code %q", tt.err.Code())
		}
	}
}

func FuzzParseOp(f *testing.F) {
	seeds := []string{
		`{"op":"add_node","node":{"id":"users","kind":"table","label":"users","x":120.5,"y":80,"data":{"columns":[{"name":"id","type":"uuid"}]}}}`,
		`{"op":"add_edge","edge":{"id":"orders_user_fk","kind":"relation","source":"orders","target":"users","label":"user_id","data":{}}}`,
		`{"op":"update_node","id":"users","patch":{"x":1,"data":{"a":null,"b":[1,null]}}}`,
		`{"op":"update_edge","id":"e","patch":{"source":"b","target":"c","label":"l","data":null}}`,
		`{"op":"remove_node","id":"users"}`,
		`{"op":"remove_edge","id":"e"}`,
		`{"op":"reset","snapshot_id":"0b6c1d8e-5b7a-4c1e-9d8f-2a3b4c5d6e7f","state":{"nodes":[{"id":"a"}],"edges":[{"id":"e","source":"a","target":"a"}]}}`,
		`{"op":"add_node","node":{"id":"a","label":"<\u2028>","data":{"s":"\ud83d\ude00","n":-0.0e-5}}}`,
		`{"op":"add_node","node":{"id":"a","x":1e400}}`,
		`{"op":"add_node","node":{"id":"a b"}}`,
		`{"op":"explode"}`,
		`{"op":"remove_node","id":"a"} {}`,
		`{"op":"update_node","id":"a","patch":{"x":null}}`,
		`{"op":"add_node","node":{"id":"a","data":[]}}`,
		`{"op":"add_node","node":{"id":"a","extra":1}}`,
		`{"op":"reset","state":{"nodes":[{"id":"a"},{"id":"a"}]}}`,
		`{"op":"add_node","node":{"id":"a","label":"\xff"}}`,
		`[]`, `null`, `{`, ``,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		op, err := graph.ParseOp(data)
		if err != nil {
			var oe *graph.OpError
			if !errors.As(err, &oe) {
				t.Fatalf("error %T is not *OpError", err)
			}
			return
		}
		b, err := json.Marshal(op)
		if err != nil {
			t.Fatalf("marshal %+v: %v", op, err)
		}
		again, err := graph.ParseOp(b)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", b, err)
		}
		if !reflect.DeepEqual(op, again) {
			t.Fatalf("round trip differs:\n%#v\n%#v", op, again)
		}
		// Validate is idempotent on its own output.
		again2 := again
		if err := again2.Validate(); err != nil || !reflect.DeepEqual(again, again2) {
			t.Fatalf("Validate not idempotent: %v", err)
		}
		// Applying never panics, and Check agrees with Apply.
		g := graph.New()
		_ = g.Apply([]graph.Op{{Kind: graph.OpAddNode, Node: &graph.Node{ID: "a"}}, {Kind: graph.OpAddNode, Node: &graph.Node{ID: "users"}}})
		before := g.State()
		cerr := g.Check([]graph.Op{op})
		if !g.State().Equal(before) {
			t.Fatal("Check changed the graph")
		}
		aerr := g.Apply([]graph.Op{op})
		if (cerr == nil) != (aerr == nil) {
			t.Fatalf("Check %v, Apply %v", cerr, aerr)
		}
		if aerr != nil && !g.State().Equal(before) {
			t.Fatal("failed Apply changed the graph")
		}
	})
}

// Lengths count characters, as DESIGN.md and the API's JSON Schema do, not
// bytes: 256 two-byte characters are fine.
func TestTextLengthCountsCharacters(t *testing.T) {
	raw := `{"op":"add_node","node":{"id":"a","label":"` + strings.Repeat("é", 256) + `"}}`
	if _, err := graph.ParseOp([]byte(raw)); err != nil {
		t.Fatalf("256 characters (512 bytes) refused: %v", err)
	}
}
