package snapshot_test

import (
	"bytes"
	"encoding/gob"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/liveshare/liveshare/graph"
	"github.com/liveshare/liveshare/snapshot"
)

var (
	benchWords = []string{"customer", "order", "invoice", "product", "account", "payment", "shipment",
		"address", "user", "session", "event", "line", "item", "price", "tax", "region", "store", "stock"}
	benchTypes = []string{"uuid", "text", "int4", "int8", "numeric(12,2)", "timestamptz", "bool", "jsonb", "date"}
)

// realisticState returns a valid, sorted state of n elements shaped like an
// ER diagram: 80% "table" nodes with a label, coordinates and about five
// columns in data, 20% "relation" edges between random tables. Ids are
// random UUID-like strings, as clients generate them, so compression is not
// flattered. The same n always gives the same state.
func realisticState(tb testing.TB, n int) graph.State {
	tb.Helper()
	r := rand.New(rand.NewPCG(uint64(n), 42))
	word := func() string { return benchWords[r.IntN(len(benchWords))] }
	uuidish := func(prefix string) string {
		return fmt.Sprintf("%s%08x-%04x-%04x-%04x-%012x", prefix, r.Uint32(), r.Uint32()&0xffff,
			r.Uint32()&0xffff, r.Uint32()&0xffff, r.Uint64()&0xffffffffffff)
	}
	coord := func() float64 { return math.Round((r.Float64()*4000-2000)*100) / 100 }

	nNodes := n * 8 / 10
	if nNodes == 0 && n > 0 {
		nNodes = 1
	}
	s := graph.State{Nodes: make([]graph.Node, 0, nNodes), Edges: make([]graph.Edge, 0, n-nNodes)}
	for range nNodes {
		type column struct {
			Name     string `json:"name"`
			Type     string `json:"type"`
			Nullable bool   `json:"nullable,omitempty"`
		}
		cols := []column{{Name: "id", Type: "uuid"}}
		for range 3 + r.IntN(3) {
			cols = append(cols, column{Name: word() + "_" + word(), Type: benchTypes[r.IntN(len(benchTypes))], Nullable: r.IntN(3) == 0})
		}
		data, err := json.Marshal(map[string]any{"columns": cols})
		if err != nil {
			tb.Fatal(err)
		}
		s.Nodes = append(s.Nodes, graph.Node{
			ID: uuidish("t-"), Kind: "table", Label: fmt.Sprintf("%s_%s_%d", word(), word(), r.IntN(100)),
			X: coord(), Y: coord(), Data: data,
		})
	}
	for range n - nNodes {
		a, b := s.Nodes[r.IntN(nNodes)], s.Nodes[r.IntN(nNodes)]
		s.Edges = append(s.Edges, graph.Edge{
			ID: uuidish("r-"), Kind: "relation", Source: a.ID, Target: b.ID, Label: "fk_" + word(),
			Data: json.RawMessage(`{"cardinality":"1:n","on_delete":"cascade"}`),
		})
	}
	g, err := graph.FromState(s)
	if err != nil {
		tb.Fatal(err)
	}
	return g.State()
}

var benchZstd = func() *zstd.Encoder {
	e, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault)) // as lsnp
	if err != nil {
		panic(err)
	}
	return e
}()

var benchUnzstd = func() *zstd.Decoder {
	d, err := zstd.NewReader(nil)
	if err != nil {
		panic(err)
	}
	return d
}()

type benchCodec struct {
	name   string
	encode func(graph.State, int64) ([]byte, error)
	decode func([]byte) (graph.State, int64, error)
}

// benchEnvelope is what the baselines encode: the state and its version.
type benchEnvelope struct {
	Version int64       `json:"version"`
	State   graph.State `json:"state"`
}

var benchCodecs = []benchCodec{
	{"lsnp", snapshot.Encode, snapshot.Decode},
	{"json", func(s graph.State, v int64) ([]byte, error) {
		return json.Marshal(benchEnvelope{v, s})
	}, func(b []byte) (graph.State, int64, error) {
		var e benchEnvelope
		err := json.Unmarshal(b, &e)
		return e.State, e.Version, err
	}},
	{"json+zstd", func(s graph.State, v int64) ([]byte, error) {
		b, err := json.Marshal(benchEnvelope{v, s})
		if err != nil {
			return nil, err
		}
		return benchZstd.EncodeAll(b, nil), nil
	}, func(b []byte) (graph.State, int64, error) {
		raw, err := benchUnzstd.DecodeAll(b, nil)
		if err != nil {
			return graph.State{}, 0, err
		}
		var e benchEnvelope
		err = json.Unmarshal(raw, &e)
		return e.State, e.Version, err
	}},
	{"gob", func(s graph.State, v int64) ([]byte, error) {
		var buf bytes.Buffer
		err := gob.NewEncoder(&buf).Encode(benchEnvelope{v, s})
		return buf.Bytes(), err
	}, func(b []byte) (graph.State, int64, error) {
		var e benchEnvelope
		err := gob.NewDecoder(bytes.NewReader(b)).Decode(&e)
		return e.State, e.Version, err
	}},
}

// BenchmarkCodec compares the snapshot codec ("lsnp", which validates the
// state on decode; "lsnp/decode-stored" trusts a stored one's elements) with uncompressed encoding/json and encoding/gob and with
// zstd-compressed JSON, which do not validate. "validate" is the cost of
// graph.FromState alone, part of lsnp's decode. Each reports the encoded
// size as the "bytes" metric.
func BenchmarkCodec(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"1k", 1000}, {"10k", 10000}, {"100k", 100000}} {
		b.Run(size.name, func(b *testing.B) {
			s := realisticState(b, size.n)
			for _, c := range benchCodecs {
				data, err := c.encode(s, 7)
				if err != nil {
					b.Fatal(err)
				}
				if got, v, err := c.decode(data); err != nil || v != 7 || !got.Equal(s) {
					b.Fatalf("%s does not round-trip: %v", c.name, err)
				}
				b.Run(c.name+"/encode", func(b *testing.B) {
					b.ReportAllocs()
					for b.Loop() {
						if _, err := c.encode(s, 7); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(float64(len(data)), "bytes")
				})
				b.Run(c.name+"/decode", func(b *testing.B) {
					b.ReportAllocs()
					for b.Loop() {
						if _, _, err := c.decode(data); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(float64(len(data)), "bytes")
				})
			}
			// What a room's load from its own snapshot costs: the checksum
			// verified, the elements trusted (see DecodeStored).
			stored, err := snapshot.Encode(s, 7)
			if err != nil {
				b.Fatal(err)
			}
			b.Run("lsnp/decode-stored", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, _, err := snapshot.DecodeStored(stored); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(len(stored)), "bytes")
			})
			benchZstdLevels(b, s)
			b.Run("validate", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := graph.FromState(s); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// benchZstdLevels times only the compression step of lsnp's encode, of the
// CBOR payload it compresses, at the levels considered for it.
func benchZstdLevels(b *testing.B, s graph.State) {
	data, err := snapshot.Encode(s, 7)
	if err != nil {
		b.Fatal(err)
	}
	payload, err := benchUnzstd.DecodeAll(data[14:], nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, level := range []zstd.EncoderLevel{zstd.SpeedFastest, zstd.SpeedDefault, zstd.SpeedBetterCompression} {
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(level), zstd.WithWindowSize(8<<20))
		if err != nil {
			b.Fatal(err)
		}
		b.Run("zstd-"+level.String(), func(b *testing.B) {
			var out []byte
			for b.Loop() {
				out = enc.EncodeAll(payload, out[:0])
			}
			b.ReportMetric(float64(len(out)), "bytes")
			b.ReportMetric(float64(len(payload)), "cbor-bytes")
		})
	}
}

// BenchmarkSnapshotRoom is what a snapshot of a realistic room costs from
// its live graph to the stored bytes, the part that runs beside the room's
// writers: "copy" is how snapshots were taken before EncodeFrozen (the
// elements copied out of a frozen view, sorted, encoded whole with Encode),
// "frozen" how the registry takes them now. B/op is the garbage a snapshot
// leaves for the collector to mark and sweep while the writers run.
func BenchmarkSnapshotRoom(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"10k", 10000}, {"100k", 100000}} {
		b.Run(size.name, func(b *testing.B) {
			g, err := graph.FromState(realisticState(b, size.n))
			if err != nil {
				b.Fatal(err)
			}
			b.Run("copy", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					s := g.Freeze().Elements()
					s.Sort()
					if _, err := snapshot.Encode(s, 7); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("frozen", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := snapshot.EncodeFrozen(g.Freeze(), 7); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
