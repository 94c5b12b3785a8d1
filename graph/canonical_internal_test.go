package graph

import (
	"bytes"
	"testing"
)

var canonicalSeeds = []string{
	`{}`, `{"a":1}`, `{"a":1,"b":[true,false,null,"x",-0,1.5e-3,12345678901234567890]}`,
	`{"columns":[{"name":"id","type":"uuid"}]}`, `{"ü":"ünïcode ✓","z":{"y":{"x":[]}}}`,
	// not canonical: each must fall to the slow path
	`{"b":1,"a":2}`, `{"a":1,"a":2}`, `{ "a":1}`, `{"a":"<b>"}`, `{"a":"\u00e9"}`, `{"a":"x\ny"}`,
	`{"a":1e400}`, `{"a":01}`, `{"a":1.}`, `{"a":.5}`, `[1]`, `"x"`, `null`, `{"a":1}x`, `{"a":"\u2028"}`,
	"{\"a\":\"\xff\"}", `{"a":tru}`, `{"a":[1,]}`, `{"a":1,}`, `{"a"}`, `{"a":1 }`, `{"a":"&"}`,
}

func TestCanonicalFastPathAgreesWithSlowPath(t *testing.T) {
	for _, s := range canonicalSeeds {
		checkFastPath(t, []byte(s))
	}
	for _, s := range []string{`{}`, `{"a":1}`, `{"columns":[{"name":"id","type":"uuid"}]}`, `{"ü":"✓"}`} {
		if !isCanonicalObject([]byte(s)) {
			t.Errorf("%s: canonical but the fast path refused it", s)
		}
	}
}

// FuzzCanonicalFastPath: whatever the fast path accepts, decoding and
// re-encoding gives back byte for byte.
func FuzzCanonicalFastPath(f *testing.F) {
	for _, s := range canonicalSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkFastPath(t, b) })
}

func checkFastPath(t *testing.T, b []byte) {
	t.Helper()
	if !isCanonicalObject(b) {
		return
	}
	slow, err := slowCanonicalData(b)
	if err != nil {
		t.Fatalf("%q: fast path accepted what the slow path rejects: %v", b, err)
	}
	if !bytes.Equal(slow, b) {
		t.Fatalf("%q: fast path accepted it, slow path makes %q", b, slow)
	}
}
