package snapshot_test

import (
	"errors"
	"math"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"github.com/liveshare/liveshare/graph"
	"github.com/liveshare/liveshare/snapshot"
)

// DecodeStored gives the graph Decode's state builds, for any state a graph
// holds: trusting our own snapshots changes how much is checked, not what
// a room loads.
func TestPropDecodeStoredEqualsDecode(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := genState(t)
		v := rapid.Int64Min(0).Draw(t, "version")
		data := mustEncode(t, s, v)
		want, wantV, err := snapshot.Decode(data)
		if err != nil {
			t.Fatalf("Decode: %v", err)
		}
		g, gotV, err := snapshot.DecodeStored(data)
		if err != nil {
			t.Fatalf("DecodeStored: %v", err)
		}
		want.Sort()
		ref, err := graph.FromState(want)
		if err != nil {
			t.Fatal(err)
		}
		if gotV != wantV || !g.State().Equal(want) || g.SizeBound() != ref.SizeBound() {
			t.Fatalf("DecodeStored gave %+v at %d (size %d), Decode %+v at %d (size %d)",
				g.State(), gotV, g.SizeBound(), want, wantV, ref.SizeBound())
		}
	})
}

// What DecodeStored still refuses: everything below the state (header,
// checksum, zstd, CBOR), and states that would make an inconsistent graph,
// even behind a valid checksum.
func TestDecodeStoredRejects(t *testing.T) {
	good := smallSnapshot(t)
	flipped := append([]byte(nil), good...)
	flipped[len(flipped)-1] ^= 1
	node := func(id string) map[string]any { return map[string]any{"i": id, "x": 0.0, "y": 0.0} }
	edge := func(id, s, tg string) map[string]any { return map[string]any{"i": id, "s": s, "t": tg} }
	state := func(nodes, edges []any) map[string]any { return map[string]any{"v": 1, "n": nodes, "e": edges} }
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"bad checksum", flipped, "checksum"},
		{"truncated", good[:len(good)-3], "truncated"},
		{"unknown format", wrapAs(9, good[headerSize:]), "format version"},
		{"not zstd", wrap([]byte("nope")), "zstd"},
		{"not CBOR", wrap(compress([]byte{0xff})), "cbor"},
		{"invalid UTF-8", wrap(compress([]byte{0xa1, 0x61, 0xff, 0x01})), "cbor"},
		{"no version", wrapCBOR(t, map[string]any{"n": []any{}, "e": []any{}}), "no version"},
		{"edge to a missing node", wrapCBOR(t, state([]any{node("a")}, []any{edge("e", "a", "nope")})), `node "nope" does not exist`},
		{"edge from a missing node", wrapCBOR(t, state([]any{node("a")}, []any{edge("e", "nope", "a")})), `node "nope" does not exist`},
		{"edge to an edge", wrapCBOR(t, state([]any{node("a")}, []any{edge("e", "a", "a"), edge("f", "a", "e")})), `node "e" does not exist`},
		{"duplicate node id", wrapCBOR(t, state([]any{node("a"), node("a")}, nil)), "used by another node"},
		{"edge id of a node", wrapCBOR(t, state([]any{node("a")}, []any{edge("a", "a", "a")})), "used by another node"},
		{"duplicate edge id", wrapCBOR(t, state([]any{node("a")}, []any{edge("e", "a", "a"), edge("e", "a", "a")})), "used by another edge"},
		{"data as a byte string", wrapCBOR(t, state([]any{map[string]any{"i": "a", "x": 0.0, "y": 0.0, "d": []byte(`{"a":1}`)}}, nil)), "cbor"},
		{"data of invalid UTF-8", wrap(compress([]byte{0xa3, 0x61, 'e', 0x80, 0x61, 'n', 0x81, 0xa4, 0x61, 'd', 0x61, 0xff,
			0x61, 'i', 0x61, 'a', 0x61, 'x', 0xf9, 0, 0, 0x61, 'y', 0xf9, 0, 0, 0x61, 'v', 0x01})), "UTF-8"},
		{"NaN coordinate", wrapCBOR(t, state([]any{map[string]any{"i": "a", "x": math.NaN(), "y": 0.0}}, nil)), "finite"},
		{"infinite coordinate", wrapCBOR(t, state([]any{map[string]any{"i": "a", "x": 0.0, "y": math.Inf(1)}}, nil)), "finite"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g, _, err := snapshot.DecodeStored(c.data)
			if err == nil {
				t.Fatalf("DecodeStored accepted it: %+v", g.State())
			}
			if !errors.Is(err, snapshot.ErrMalformed) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q: want ErrMalformed mentioning %q", err, c.want)
			}
		})
	}
}

// Decode, the path for snapshots from anywhere, still validates every
// element that DecodeStored trusts.
func TestDecodeValidatesWhatDecodeStoredTrusts(t *testing.T) {
	node := func(fields map[string]any) map[string]any {
		n := map[string]any{"i": "a", "x": 0.0, "y": 0.0}
		for k, v := range fields {
			n[k] = v
		}
		return map[string]any{"v": 1, "n": []any{n}, "e": []any{}}
	}
	for name, fields := range map[string]map[string]any{
		"bad id":          {"i": "a b"},
		"data not JSON":   {"d": "{nope"},
		"label too long":  {"l": strings.Repeat("x", 257)},
		"data not object": {"d": "[1]"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, _, err := snapshot.Decode(wrapCBOR(t, node(fields))); !errors.Is(err, snapshot.ErrMalformed) {
				t.Fatalf("Decode accepted an invalid element: %v", err)
			}
		})
	}
}

// FuzzDecodeStored: DecodeStored never panics, fails only with
// ErrMalformed, and whatever it accepts is a consistent graph that
// re-encodes to the same graph.
func FuzzDecodeStored(f *testing.F) {
	f.Add(smallSnapshot(f))
	f.Add(wrap(compress([]byte{0xa3, 0x61, 'v', 0x01, 0x61, 'n', 0x80, 0x61, 'e', 0x81, 0xa3, 0x61, 'i', 0x61, 'e', 0x61, 's', 0x61, 'a', 0x61, 't', 0x61, 'a'})))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, in := range [][]byte{data, wrap(data), wrap(compress(data))} {
			g, v, err := snapshot.DecodeStored(in)
			if err != nil {
				if !errors.Is(err, snapshot.ErrMalformed) {
					t.Fatalf("error %q does not wrap ErrMalformed", err)
				}
				continue
			}
			s := g.State()
			nodes := map[string]bool{}
			for _, n := range s.Nodes {
				nodes[n.ID] = true
			}
			for _, e := range s.Edges {
				if nodes[e.ID] || !nodes[e.Source] || !nodes[e.Target] {
					t.Fatalf("inconsistent graph accepted: edge %+v", e)
				}
			}
			g2, v2, err := snapshot.DecodeStored(mustEncode(t, s, v))
			if err != nil || v2 != v || !g2.State().Equal(s) {
				t.Fatalf("re-encoding changed the graph: %v", err)
			}
		}
	})
}
