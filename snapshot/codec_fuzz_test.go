package snapshot_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/liveshare/liveshare/graph"
	"github.com/liveshare/liveshare/snapshot"
)

// FuzzDecode feeds Decode arbitrary bytes three ways: as a whole snapshot,
// as a payload behind a valid header and checksum (so mutations reach the
// zstd layer), and as CBOR behind valid zstd too (so they reach the CBOR and
// state layers). Decode must never panic, must only fail with ErrMalformed,
// and whatever it accepts must re-encode and decode to an equal state.
func FuzzDecode(f *testing.F) {
	states := []graph.State{
		{},
		{Nodes: []graph.Node{{ID: "a", Kind: "table", Label: "日本", X: 1.5, Y: -2, Data: json.RawMessage(`{"columns":[{"name":"id","type":"uuid"}],"n":1e300}`)}, {ID: "b"}},
			Edges: []graph.Edge{{ID: "e", Kind: "rel", Source: "a", Target: "b", Label: "fk", Data: json.RawMessage(`{"x":[1,{"y":null}]}`)}, {ID: "loop", Source: "b", Target: "b"}}},
	}
	for i, s := range states {
		data := mustEncode(f, validState(f, s), int64(i))
		f.Add(data)                                  // valid snapshot
		f.Add(data[:len(data)/2])                    // truncated
		f.Add(data[headerSize:])                     // a valid zstd payload
		f.Add(payloadOf(f, data))                    // valid CBOR
		f.Add(wrapAs(2, data[headerSize:]))          // unknown format version
		f.Add(append(data[:len(data):len(data)], 0)) // trailing byte
	}
	f.Add([]byte{})
	f.Add([]byte("LSNP"))
	f.Add(wrap([]byte("garbage")))
	f.Add([]byte{0xa3, 0x61, 'v', 0x01, 0x61, 'n', 0x80, 0x61, 'e', 0x81, 0xa3, 0x61, 'i', 0x61, 'e', 0x61, 's', 0x61, 'a', 0x61, 't', 0x61, 'a'}) // edge to a missing node
	f.Add(rleFrame(1<<20, false))

	f.Fuzz(func(t *testing.T, data []byte) {
		for _, in := range [][]byte{data, wrap(data), wrap(compress(data))} {
			s, v, err := snapshot.Decode(in)
			if err != nil {
				if !errors.Is(err, snapshot.ErrMalformed) {
					t.Fatalf("error %q does not wrap ErrMalformed", err)
				}
				continue
			}
			again, err := snapshot.Encode(s, v)
			if err != nil {
				t.Fatalf("decoded state does not re-encode: %v", err)
			}
			s2, v2, err := snapshot.Decode(again)
			if err != nil {
				t.Fatalf("re-encoded state does not decode: %v", err)
			}
			if v2 != v || !s2.Equal(s) {
				t.Fatalf("re-encoding changed the snapshot:\n%+v at %d\n%+v at %d", s, v, s2, v2)
			}
		}
	})
}
