package snapshot_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"github.com/liveshare/liveshare/graph"
	"github.com/liveshare/liveshare/snapshot"
)

// checkFrozenMatches encodes a view with EncodeFrozen and its State with
// Encode: the CBOR inside must be the same bytes, the frame must say how long
// it is, and both decoders must give the view's state back.
func checkFrozenMatches(t failer, f *graph.Frozen, want graph.State, v int64) {
	t.Helper()
	got, err := snapshot.EncodeFrozen(f, v)
	if err != nil {
		t.Fatalf("EncodeFrozen: %v", err)
	}
	if err := snapshot.Verify(got); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	ref := mustEncode(t, want, v)
	if raw, refRaw := rawPayload(t, got), rawPayload(t, ref); !bytes.Equal(raw, refRaw) {
		t.Fatalf("EncodeFrozen's payload (%d bytes) differs from Encode's (%d bytes)", len(raw), len(refRaw))
	}
	// The frame declares the payload's size as Encode's does, so that a
	// decoder allocates it once.
	size, declared := frameContentSize(got[headerSize:])
	refSize, refDeclared := frameContentSize(ref[headerSize:])
	if size != refSize || declared != refDeclared {
		t.Fatalf("frame content size %d (declared: %v), Encode's %d (declared: %v)", size, declared, refSize, refDeclared)
	}
	s, gotV, err := snapshot.Decode(got)
	if err != nil || gotV != v || !s.Equal(want) {
		t.Fatalf("Decode: version %d (want %d), err %v, state equal: %v", gotV, v, err, s.Equal(want))
	}
	g, gotV, err := snapshot.DecodeStored(got)
	if err != nil || gotV != v || !g.State().Equal(want) {
		t.Fatalf("DecodeStored: version %d (want %d), err %v", gotV, v, err)
	}
}

// rawPayload is payloadOf for a *testing.T or a *rapid.T.
func rawPayload(t failer, snap []byte) []byte {
	t.Helper()
	raw, err := testZstdDec.DecodeAll(snap[headerSize:], nil)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// frameContentSize reads the content size a zstd frame header declares.
func frameContentSize(frame []byte) (uint64, bool) {
	if len(frame) < 6 || binary.LittleEndian.Uint32(frame) != 0xFD2FB528 {
		return 0, false
	}
	fhd := frame[4]
	fcsFlag, single, dictFlag := fhd>>6, fhd>>5&1 == 1, fhd&3
	pos := 5
	if !single {
		pos++ // window descriptor
	}
	pos += []int{0, 1, 2, 4}[dictFlag]
	switch {
	case fcsFlag == 0 && single:
		return uint64(frame[pos]), true
	case fcsFlag == 0:
		return 0, false
	case fcsFlag == 1:
		return uint64(binary.LittleEndian.Uint16(frame[pos:])) + 256, true
	case fcsFlag == 2:
		return uint64(binary.LittleEndian.Uint32(frame[pos:])), true
	default:
		return binary.LittleEndian.Uint64(frame[pos:]), true
	}
}

// A frozen view encodes to the very payload its State does, while the graph
// it was frozen from goes on changing.
func TestPropEncodeFrozenMatchesEncode(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		g, err := graph.FromState(genState(t))
		if err != nil {
			t.Fatal(err)
		}
		want := g.State()
		f := g.Freeze()
		if ids := want.Nodes; len(ids) > 0 {
			// Changes after the freeze are not in the snapshot.
			_ = g.Apply([]graph.Op{{Kind: graph.OpRemoveNode, ID: ids[0].ID}})
		}
		checkFrozenMatches(t, f, want, rapid.Int64Min(0).Draw(t, "version"))
	})
}

// A room large enough to be kept in pieces and written in many 128 KiB
// chunks, with elements long enough that one crosses a chunk boundary, and
// the encoders reused: the same payload as Encode's, every time.
func TestEncodeFrozenLargeGraph(t *testing.T) {
	var s graph.State
	for i := range 6000 {
		s.Nodes = append(s.Nodes, graph.Node{ID: fmt.Sprintf("table_%d", i), Kind: "table", Label: fmt.Sprintf("table %d", i),
			X: float64(i) * 0.1, Y: float64(i % 7), Data: []byte(fmt.Sprintf(`{"n":%d,"s":%q}`, i, strings.Repeat("x", i%400)))})
	}
	s.Nodes = append(s.Nodes, graph.Node{ID: "big", Data: []byte(`{"s":"` + strings.Repeat("y", 60000) + `"}`)})
	for i := range 2000 {
		s.Edges = append(s.Edges, graph.Edge{ID: fmt.Sprintf("fk_%d", i), Source: fmt.Sprintf("table_%d", i), Target: "big"})
	}
	g, err := graph.FromState(s)
	if err != nil {
		t.Fatal(err)
	}
	want := g.State()
	for v := range int64(3) {
		checkFrozenMatches(t, g.Freeze(), want, v*1_000_000_007)
	}
	data, err := snapshot.EncodeFrozen(g.Freeze(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if size, declared := frameContentSize(data[headerSize:]); !declared || size != uint64(len(rawPayload(t, data))) {
		t.Fatalf("frame declares %d bytes (declared: %v), payload is %d", size, declared, len(rawPayload(t, data)))
	}
	// An empty graph, too.
	checkFrozenMatches(t, graph.New().Freeze(), graph.State{Nodes: []graph.Node{}, Edges: []graph.Edge{}}, 0)
}

func TestEncodeFrozenRejectsNegativeVersion(t *testing.T) {
	if _, err := snapshot.EncodeFrozen(graph.New().Freeze(), -1); err == nil {
		t.Fatal("EncodeFrozen accepted a negative version")
	}
}
