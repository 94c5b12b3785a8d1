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
	// patches and values with keys out of order, as clients send them
	`{"op":"update_node","id":"n1","patch":{"data":{"t":1764700000000000000,"s":7,"pad":"xxxx"}}}`,
	`{"op":"update_edge","id":"e","patch":{"target":"b","source":"a","data":{"z":[{"b":1,"a":2}],"a":-0}}}`,
	`{"b":1,"a":2}`, `{"a":1,"b":{"d":1.5E3,"c":-0.0}}`, `{"b":1,"a":2,"b":3}`, `{"a":{"y":1,"x":2,"y":3}}`,
	`{"b":"<&>","a":1}`, `{"b":"\u00e9","a":1}`, `{"b\n":1,"a":2}`, `{"b":1e400,"a":1}`, `[{"b":1,"a":[true,false,null]}]`,
}

func TestFastPathsAgreeWithSlowPaths(t *testing.T) {
	for _, s := range fastPathSeeds {
		checkFastPaths(t, []byte(s))
	}
	forFast := append(fastPathSeeds[:4:4], `{"op":"update_node","id":"n1","patch":{"data":{"t":1764700000000000000,"s":7,"pad":"xxxx"}}}`)
	for _, s := range forFast {
		if _, ok := fastParseOp([]byte(s)); !ok {
			t.Errorf("%s: the fast path refused an op it is for", s)
		}
	}
	// A patch whose keys are out of order is decoded without the slow
	// path, and comes out in order.
	if _, canonical, ok := decodeLoose([]byte(`{"t":1,"s":2,"pad":"x"}`)); !ok || canonical {
		t.Errorf("decodeLoose of keys out of order: ok %v, canonical %v; want true, false", ok, canonical)
	}
}

// FuzzFastPaths: whatever fastParseOp, decodeCanonical and decodeLoose
// accept, they decode exactly as parseOp and decodeJSON do, and whatever
// appendCanonical writes is what json.Marshal writes.
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
	if fast, canonical, ok := decodeLoose(b); ok {
		slow, err := decodeJSON(b)
		if err != nil {
			t.Fatalf("%q: decodeLoose accepted what decodeJSON refuses: %v", b, err)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("%q: decodeLoose decoded %#v, decodeJSON %#v", b, fast, slow)
		}
		if _, strict := decodeCanonical(b); strict != canonical {
			t.Fatalf("%q: decodeLoose says canonical %v, decodeCanonical %v", b, canonical, strict)
		}
		// What the loose decoder takes, the canonical writer writes, and
		// writes as json.Marshal does; a canonical input comes back as it is.
		out, ok := appendCanonical(nil, fast)
		want, _ := json.Marshal(slow)
		if !ok || !bytes.Equal(out, want) {
			t.Fatalf("%q: appendCanonical wrote %s (%v), json.Marshal %s", b, out, ok, want)
		}
		if canonical && !bytes.Equal(out, b) {
			t.Fatalf("%q: a canonical value was written back as %s", b, out)
		}
	}
	if v, err := decodeJSON(b); err == nil {
		if out, ok := appendCanonical(nil, v); ok {
			want, err := json.Marshal(v)
			if err != nil || !bytes.Equal(out, want) {
				t.Fatalf("%q: appendCanonical wrote %s, json.Marshal %s (%v)", b, out, want, err)
			}
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
