package graph

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

var fastPathSeeds = []string{
	`{"op":"update_node","id":"n1","patch":{"x":12}}`,
	`{"op":"update_node","id":"users","patch":{"data":{"a":null,"b":[1,null,true,false,"s"]},"x":1.5e3,"y":-0}}`,
	`{"op":"add_node","node":{"id":"users","kind":"table","label":"users","x":120.5,"y":80,"data":{"columns":[{"name":"id","type":"uuid"}]}}}`,
	`{"op":"add_edge","edge":{"id":"fk","kind":"relation","source":"orders","target":"users","label":"user_id","data":{}}}`,
	`{"id":"e","op":"remove_edge"}`,
	`{"op":"reset","snapshot_id":"s","state":{"nodes":[],"edges":[]}}`,
	`{"op":"remove_node","id":"a","snapshot_id":"x"}`,
	`{"op":"add_node","node":{"id":"ü ✓","label":"<b>&\u2028"}}`,
	// each of these must be left to the slow path
	`{"op":"remove_node","id":"a","id":"b"}`, `{"op":"remove_node","id":null}`, `{ "op":"remove_node","id":"a"}`,
	`{"op":"remove_node","id":"a"} `, `{"op":"update_node","id":"a","patch":{"y":1,"x":2}}`,
	`{"op":"add_node","node":{"id":"a","x":1e400}}`, `{"op":"add_node","node":{"id":"a","x":"1"}}`,
	`{"op":"add_node","node":{"id":"a","data":null}}`, "{\"op\":\"add_node\",\"node\":{\"id\":\"\xff\"}}",
	`{"op":"add_node","node":{"id":"a\u0041"}}`, `{"op":"add_node","extra":1}`, `{}`, `[]`, `{"op":1}`,
	`{"op":"update_node","id":"a","patch":5}`, `{"op":"update_node","id":"a","patch":{"x":01}}`,
}

func TestFastPathsAgreeWithSlowPaths(t *testing.T) {
	for _, s := range fastPathSeeds {
		checkFastPaths(t, []byte(s))
	}
	for _, s := range fastPathSeeds[:4] {
		if _, ok := fastParseOp([]byte(s)); !ok {
			t.Errorf("%s: the fast path refused an op it is for", s)
		}
	}
}

// FuzzFastPaths: whatever fastParseOp and decodeCanonical accept, they
// decode exactly as parseOp and decodeJSON do.
func FuzzFastPaths(f *testing.F) {
	for _, s := range append(fastPathSeeds, canonicalSeeds...) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkFastPaths(t, b) })
}

func checkFastPaths(t *testing.T, b []byte) {
	t.Helper()
	if fast, ok := fastParseOp(b); ok {
		slow, ferr := parseOp(b)
		if ferr != nil {
			t.Fatalf("%q: fast path accepted what parseOp refuses: %v", b, ferr)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("%q: fast path decoded\n%#v\nparseOp decoded\n%#v", b, fast, slow)
		}
	}
	if op, ferr := parseOp(b); ferr == nil {
		checkMarshalOp(t, op)
		if op.validate() == nil {
			checkMarshalOp(t, op) // normalised: canonical data, and so on
		}
	}
	if fast, ok := decodeCanonical(b); ok {
		slow, err := decodeJSON(b)
		if err != nil {
			t.Fatalf("%q: decodeCanonical accepted what decodeJSON refuses: %v", b, err)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("%q: decodeCanonical decoded %#v, decodeJSON %#v", b, fast, slow)
		}
	}
}

func checkMarshalOp(t *testing.T, op Op) {
	t.Helper()
	want, werr := json.Marshal(op)
	got, gerr := MarshalOp(&op)
	if (werr == nil) != (gerr == nil) || !bytes.Equal(got, want) {
		t.Fatalf("MarshalOp(%#v) = %s, %v; json.Marshal = %s, %v", op, got, gerr, want, werr)
	}
}

func TestMarshalOpTakesTheUsualShapeItself(t *testing.T) {
	for _, s := range fastPathSeeds[:5] {
		op, err := ParseOp([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := appendOp(nil, &op); !ok {
			t.Errorf("%s: MarshalOp left the usual shape to json.Marshal", s)
		}
	}
}
