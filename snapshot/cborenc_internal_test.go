package snapshot

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"pgregory.net/rapid"

	"github.com/liveshare/liveshare/graph"
)

// appendPayload writes exactly what fxamacker/cbor's core deterministic
// encoding writes of the wire structs, for any state: the format stays the
// one the package documents, which any CBOR library reads.
func TestPropAppendPayloadIsCoreDeterministic(t *testing.T) {
	em, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		t.Fatal(err)
	}
	floats := []float64{0, math.Copysign(0, -1), 1, -1.5, 0.1, 65504, 65505, 65520, 1e300, -1e-300,
		math.SmallestNonzeroFloat64, 5.960464477539063e-08, 6.103515625e-05, 6.097555160522461e-05,
		3.4028234663852886e+38, 1.401298464324817e-45, 1e-7, 100000, 123.25}
	text := rapid.StringMatching(`[a-z_.é日]{0,30}`)
	long := rapid.StringMatching(`[a-z]{0,300}`)
	// The wire layout of the package documentation, as fxamacker/cbor
	// encodes structs.
	type node struct {
		ID    string  `cbor:"i"`
		Kind  string  `cbor:"k,omitempty"`
		Label string  `cbor:"l,omitempty"`
		X     float64 `cbor:"x"`
		Y     float64 `cbor:"y"`
		Data  string  `cbor:"d,omitempty"`
	}
	type edge struct {
		ID     string `cbor:"i"`
		Kind   string `cbor:"k,omitempty"`
		Source string `cbor:"s"`
		Target string `cbor:"t"`
		Label  string `cbor:"l,omitempty"`
		Data   string `cbor:"d,omitempty"`
	}
	type payload struct {
		V *int64 `cbor:"v"`
		N []node `cbor:"n"`
		E []edge `cbor:"e"`
	}
	rapid.Check(t, func(t *rapid.T) {
		coord := func(label string) float64 {
			if rapid.Bool().Draw(t, label+"kind") {
				return rapid.SampledFrom(floats).Draw(t, label)
			}
			return rapid.Float64().Draw(t, label)
		}
		data := func() json.RawMessage {
			switch rapid.IntRange(0, 3).Draw(t, "data") {
			case 0:
				return nil
			case 1:
				return json.RawMessage(`{}`)
			default:
				return json.RawMessage(`{"a":"` + long.Draw(t, "d") + `"}`)
			}
		}
		var s graph.State
		w := payload{}
		for range rapid.IntRange(0, 30).Draw(t, "nodes") {
			n := graph.Node{ID: long.Draw(t, "id"), Kind: text.Draw(t, "kind"), Label: text.Draw(t, "label"),
				X: coord("x"), Y: coord("y"), Data: data()}
			if math.IsNaN(n.X) || math.IsInf(n.X, 0) || math.IsNaN(n.Y) || math.IsInf(n.Y, 0) {
				continue
			}
			s.Nodes = append(s.Nodes, n)
			w.N = append(w.N, node{ID: n.ID, Kind: n.Kind, Label: n.Label, X: n.X, Y: n.Y, Data: string(storedData(n.Data))})
		}
		for range rapid.IntRange(0, 30).Draw(t, "edges") {
			e := graph.Edge{ID: text.Draw(t, "id"), Kind: text.Draw(t, "kind"), Source: text.Draw(t, "src"),
				Target: long.Draw(t, "dst"), Label: text.Draw(t, "label"), Data: data()}
			s.Edges = append(s.Edges, e)
			w.E = append(w.E, edge{ID: e.ID, Kind: e.Kind, Source: e.Source, Target: e.Target, Label: e.Label, Data: string(storedData(e.Data))})
		}
		version := rapid.Int64Min(0).Draw(t, "version")
		w.V = &version
		if w.N == nil {
			w.N = []node{}
		}
		if w.E == nil {
			w.E = []edge{}
		}
		want, err := em.Marshal(&w)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendPayload(nil, s, version); !bytes.Equal(got, want) {
			t.Fatalf("appendPayload differs from core deterministic CBOR:\n got %x\nwant %x", got, want)
		}
	})
}

// payloadSizeHint is never below what appendPayload writes of a valid
// state, so a snapshot's payload is allocated once. Lengths sit at each
// boundary of a CBOR head's size, up to each field's limit (ids 128 bytes,
// kind and label 256 characters of up to 4 bytes, data 64 KiB).
func TestPropPayloadSizeHintIsAnUpperBound(t *testing.T) {
	str := func(t *rapid.T, label string, lengths ...int) string {
		return strings.Repeat("a", rapid.SampledFrom(lengths).Draw(t, label))
	}
	id := func(t *rapid.T, label string) string { return str(t, label, 1, 23, 24, 128) }
	text := func(t *rapid.T, label string) string { return str(t, label, 0, 23, 24, 255, 256, 1024) }
	data := func(t *rapid.T) json.RawMessage { return json.RawMessage(str(t, "data", 0, 24, 256, 65535, 65536)) }
	// Every head at its largest, many times over.
	var worst graph.State
	for range 1000 {
		worst.Nodes = append(worst.Nodes, graph.Node{ID: strings.Repeat("a", 128), Kind: strings.Repeat("é", 256),
			Label: strings.Repeat("é", 256), X: 0.1, Y: 1e300, Data: json.RawMessage(strings.Repeat("a", 65536))})
		worst.Edges = append(worst.Edges, graph.Edge{ID: strings.Repeat("a", 128), Kind: strings.Repeat("é", 256),
			Source: strings.Repeat("a", 128), Target: strings.Repeat("a", 128), Label: strings.Repeat("é", 256),
			Data: json.RawMessage(strings.Repeat("a", 65536))})
	}
	for _, s := range []graph.State{worst, {Nodes: worst.Nodes}, {Edges: worst.Edges}} {
		if got, hint := len(appendPayload(nil, s, math.MaxInt64)), payloadSizeHint(s); got > hint {
			t.Fatalf("payload of %d bytes, hint %d", got, hint)
		}
	}
	rapid.Check(t, func(t *rapid.T) {
		var s graph.State
		for range rapid.IntRange(0, 5).Draw(t, "nodes") {
			s.Nodes = append(s.Nodes, graph.Node{ID: id(t, "id"), Kind: text(t, "kind"), Label: text(t, "label"),
				X: 0.1, Y: 1e300, Data: data(t)})
		}
		for range rapid.IntRange(0, 5).Draw(t, "edges") {
			s.Edges = append(s.Edges, graph.Edge{ID: id(t, "id"), Kind: text(t, "kind"), Source: id(t, "s"),
				Target: id(t, "t"), Label: text(t, "label"), Data: data(t)})
		}
		if got, hint := len(appendPayload(nil, s, math.MaxInt64)), payloadSizeHint(s); got > hint {
			t.Fatalf("payload of %d bytes, hint %d", got, hint)
		}
	})
}

// cborNodeSize and cborEdgeSize are exactly what appendNode and appendEdge
// write, with every string at each boundary of a CBOR head's size and
// coordinates of each float width: EncodeFrozen declares the payload's size
// up front from them.
func TestPropElementSizesAreExact(t *testing.T) {
	floats := []float64{0, math.Copysign(0, -1), 1, -1.5, 0.1, 65504, 65505, 65520, 1e300, -1e-300,
		math.SmallestNonzeroFloat64, 5.960464477539063e-08, 6.103515625e-05, 6.097555160522461e-05,
		3.4028234663852886e+38, 1.401298464324817e-45, 1e-7, 100000, 123.25}
	str := func(t *rapid.T, label string) string {
		return strings.Repeat("a", rapid.SampledFrom([]int{0, 1, 23, 24, 255, 256, 65535, 65536}).Draw(t, label))
	}
	data := func(t *rapid.T) json.RawMessage {
		switch rapid.IntRange(0, 2).Draw(t, "data") {
		case 0:
			return nil
		case 1:
			return json.RawMessage(`{}`)
		}
		return json.RawMessage(str(t, "d"))
	}
	rapid.Check(t, func(t *rapid.T) {
		n := graph.Node{ID: str(t, "id"), Kind: str(t, "kind"), Label: str(t, "label"),
			X: rapid.SampledFrom(floats).Draw(t, "x"), Y: rapid.Float64().Draw(t, "y"), Data: data(t)}
		if got, want := cborNodeSize(&n), len(appendNode(nil, &n)); got != want {
			t.Fatalf("cborNodeSize %d, appendNode wrote %d", got, want)
		}
		e := graph.Edge{ID: str(t, "id"), Kind: str(t, "kind"), Source: str(t, "s"), Target: str(t, "t"),
			Label: str(t, "label"), Data: data(t)}
		if got, want := cborEdgeSize(&e), len(appendEdge(nil, &e)); got != want {
			t.Fatalf("cborEdgeSize %d, appendEdge wrote %d", got, want)
		}
		for _, v := range []uint64{0, 23, 24, 255, 256, 65535, 65536, math.MaxUint32, math.MaxUint32 + 1, math.MaxInt64} {
			if got, want := headSize(v), len(appendHead(nil, majorUint, v)); got != want {
				t.Fatalf("headSize(%d) = %d, appendHead wrote %d", v, got, want)
			}
		}
	})
}
