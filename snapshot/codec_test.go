package snapshot_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"github.com/klauspost/compress/zstd"
	"pgregory.net/rapid"

	"github.com/liveshare/liveshare/graph"
	"github.com/liveshare/liveshare/snapshot"
)

const headerSize = 14

// ---- helpers shared with the fuzz test ----

var (
	testZstdEnc = func() *zstd.Encoder {
		e, err := zstd.NewWriter(nil)
		if err != nil {
			panic(err)
		}
		return e
	}()
	testZstdDec = func() *zstd.Decoder {
		d, err := zstd.NewReader(nil)
		if err != nil {
			panic(err)
		}
		return d
	}()
)

// wrap frames payload as a format-1 snapshot with a correct length and
// checksum, so only the layers below the header judge it.
func wrap(payload []byte) []byte {
	return wrapAs(snapshot.FormatVersion, payload)
}

func wrapAs(format uint16, payload []byte) []byte {
	out := []byte("LSNP")
	out = binary.BigEndian.AppendUint16(out, format)
	out = binary.BigEndian.AppendUint32(out, uint32(len(payload)))
	out = binary.BigEndian.AppendUint32(out, crc32.Checksum(payload, crc32.MakeTable(crc32.Castagnoli)))
	return append(out, payload...)
}

func compress(b []byte) []byte { return testZstdEnc.EncodeAll(b, nil) }

// wrapCBOR encodes v as CBOR and frames it as a valid snapshot payload.
func wrapCBOR(t testing.TB, v any) []byte {
	t.Helper()
	b, err := cbor.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return wrap(compress(b))
}

// payloadOf returns the CBOR inside a snapshot.
func payloadOf(t testing.TB, snap []byte) []byte {
	t.Helper()
	raw, err := testZstdDec.DecodeAll(snap[headerSize:], nil)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// rleFrame hand-builds a zstd frame of size zero bytes out of 128 KiB RLE
// blocks: about 4 bytes of input per 128 KiB of output. With declare the
// frame header states the content size; without it the size is unknown
// until the frame has been decoded.
func rleFrame(size uint64, declare bool) []byte {
	const block = 128 << 10
	b := []byte{0x28, 0xb5, 0x2f, 0xfd} // magic, little-endian 0xFD2FB528
	if declare {
		b = append(b, 0xc0, 0x38) // 8-byte content size; window 2^(10+7) = 128 KiB
		b = binary.LittleEndian.AppendUint64(b, size)
	} else {
		b = append(b, 0x00, 0x38) // no content size; same window
	}
	for size > 0 {
		n := min(size, block)
		size -= n
		h := uint32(n)<<3 | 1<<1 // block type 1: RLE
		if size == 0 {
			h |= 1 // last block
		}
		b = append(b, byte(h), byte(h>>8), byte(h>>16), 0x00) // header, then the byte to repeat
	}
	return b
}

// failer is what the helpers need of *testing.T and *rapid.T.
type failer interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

func mustEncode(t failer, s graph.State, v int64) []byte {
	t.Helper()
	b, err := snapshot.Encode(s, v)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return b
}

// checkRoundTrip encodes s at v, decodes it and requires the same state
// (element order, fields and Data bytes) and version back.
func checkRoundTrip(t failer, s graph.State, v int64) {
	t.Helper()
	data := mustEncode(t, s, v)
	got, gotV, err := snapshot.Decode(data)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if gotV != v {
		t.Fatalf("version: got %d, want %d", gotV, v)
	}
	if !got.Equal(s) {
		t.Fatalf("state differs:\n got %+v\nwant %+v", got, s)
	}
	if got.Nodes == nil || got.Edges == nil {
		t.Fatalf("nil slices in decoded state: %+v", got)
	}
	for i, n := range got.Nodes {
		if want := canonicalOrEmpty(s.Nodes[i].Data); !bytes.Equal(n.Data, want) {
			t.Fatalf("node %s data: got %s, want %s", n.ID, n.Data, want)
		}
	}
	for i, e := range got.Edges {
		if want := canonicalOrEmpty(s.Edges[i].Data); !bytes.Equal(e.Data, want) {
			t.Fatalf("edge %s data: got %s, want %s", e.ID, e.Data, want)
		}
	}
	again := mustEncode(t, s, v)
	if !bytes.Equal(data, again) {
		t.Fatal("Encode is not deterministic")
	}
}

func canonicalOrEmpty(d json.RawMessage) json.RawMessage {
	if len(d) == 0 {
		return json.RawMessage("{}")
	}
	return d
}

// validState returns s after graph.FromState accepted it, as a graph would
// hold it (sorted, canonical Data).
func validState(t testing.TB, s graph.State) graph.State {
	t.Helper()
	g, err := graph.FromState(s)
	if err != nil {
		t.Fatalf("test state is invalid: %v", err)
	}
	return g.State()
}

// ---- round trips ----

func TestRoundTripEmpty(t *testing.T) {
	for _, v := range []int64{0, 1, math.MaxInt64} {
		checkRoundTrip(t, graph.State{Nodes: []graph.Node{}, Edges: []graph.Edge{}}, v)
	}
	// nil slices encode like empty ones and decode as empty, not nil.
	got, v, err := snapshot.Decode(mustEncode(t, graph.State{}, 3))
	if err != nil || v != 3 || got.Nodes == nil || got.Edges == nil || len(got.Nodes)+len(got.Edges) != 0 {
		t.Fatalf("got %+v %d %v", got, v, err)
	}
}

func TestRoundTripHandWritten(t *testing.T) {
	deep := `{"a":{"b":[1,2,{"c":[]}],"d":{}},"big":1e300,"huge":12345678901234567890,` +
		`"neg":-0.5,"tiny":5e-324,"e":"","t":true,"f":false,"n":null,"esc":"\u003chtml\u003e \"q\" \\ \n"}`
	cases := map[string]graph.State{
		"one node": {Nodes: []graph.Node{{ID: "a", Kind: "table", Label: "A", X: 1, Y: 2, Data: json.RawMessage(`{"columns":[{"name":"id","type":"uuid"}]}`)}}},
		"empty strings and data": {
			Nodes: []graph.Node{{ID: "a"}, {ID: "b", Data: json.RawMessage(`{}`)}},
			Edges: []graph.Edge{{ID: "e", Source: "a", Target: "b"}},
		},
		"unicode": {
			Nodes: []graph.Node{
				{ID: "n-1", Kind: "таблица", Label: "日本語 🚀 é\u0301 \u200b", X: -0.0, Y: 1e308},
				{ID: "n:2", Kind: "😀", Label: strings.Repeat("ü", 128), X: 5e-324, Y: -123.456},
			},
			Edges: []graph.Edge{{ID: "e.1", Kind: "ссылка", Source: "n-1", Target: "n:2", Label: "→"}},
		},
		"nested data and numbers": {
			Nodes: []graph.Node{{ID: "x", Data: json.RawMessage(deep)}},
			Edges: []graph.Edge{{ID: "loop", Source: "x", Target: "x", Data: json.RawMessage(`{"":[[],[[]],{"":{}}],"w":12345678901234567890}`)}},
		},
		"coordinates": {Nodes: []graph.Node{
			{ID: "a", X: math.MaxFloat64, Y: -math.MaxFloat64},
			{ID: "b", X: math.SmallestNonzeroFloat64, Y: 0.1},
			{ID: "c", X: 1 << 53, Y: -(1 << 53) - 2},
			{ID: "d", X: 65504, Y: 1.0 / 3},
		}},
	}
	for name, s := range cases {
		t.Run(name, func(t *testing.T) {
			s = validState(t, s)
			checkRoundTrip(t, s, 42)
		})
	}
}

// Decode keeps the encoded order, so any valid state round-trips exactly,
// not only a graph's sorted one.
func TestRoundTripKeepsOrder(t *testing.T) {
	s := graph.State{
		Nodes: []graph.Node{{ID: "z", Data: json.RawMessage(`{}`)}, {ID: "a", Data: json.RawMessage(`{}`)}},
		Edges: []graph.Edge{{ID: "y", Source: "z", Target: "a", Data: json.RawMessage(`{}`)}, {ID: "b", Source: "a", Target: "z", Data: json.RawMessage(`{}`)}},
	}
	checkRoundTrip(t, s, 1)
}

// The decoded state shares no memory with the input.
func TestDecodeDoesNotAliasInput(t *testing.T) {
	s := validState(t, graph.State{Nodes: []graph.Node{{ID: "a", Label: "label", Data: json.RawMessage(`{"k":"v"}`)}}})
	data := mustEncode(t, s, 1)
	got, _, err := snapshot.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	for i := range data {
		data[i] = 0
	}
	if !got.Equal(s) {
		t.Fatalf("decoded state changed with its input: %+v", got)
	}
}

func TestEncodeRejectsNegativeVersion(t *testing.T) {
	if _, err := snapshot.Encode(graph.State{}, -1); err == nil {
		t.Fatal("Encode accepted version -1")
	}
}

func TestHeader(t *testing.T) {
	data := mustEncode(t, validState(t, graph.State{Nodes: []graph.Node{{ID: "a"}}}), 9)
	fv, n, err := snapshot.Header(data)
	if err != nil || fv != snapshot.FormatVersion || n != len(data)-headerSize {
		t.Fatalf("Header = %d, %d, %v; want %d, %d, nil", fv, n, err, snapshot.FormatVersion, len(data)-headerSize)
	}
	for _, bad := range [][]byte{nil, data[:5], data[:len(data)-1], append(bytes.Clone(data), 0), wrapAs(2, data[headerSize:])} {
		if _, _, err := snapshot.Header(bad); !errors.Is(err, snapshot.ErrMalformed) {
			t.Errorf("Header(%x...) = %v, want ErrMalformed", bad[:min(len(bad), 16)], err)
		}
	}
}

// genJSON generates JSON values with numbers kept verbatim.
func genJSON(depth int) *rapid.Generator[any] {
	scalars := []*rapid.Generator[any]{
		rapid.Just[any](nil),
		rapid.Map(rapid.Bool(), func(b bool) any { return b }),
		rapid.Map(rapid.String(), func(s string) any { return s }),
		rapid.Map(rapid.Int64(), func(i int64) any { return json.Number(strconv.FormatInt(i, 10)) }),
		rapid.Map(rapid.Float64(), func(f float64) any { return json.Number(strconv.FormatFloat(f, 'g', -1, 64)) }),
		rapid.Map(rapid.SampledFrom([]string{"1e300", "12345678901234567890", "-0", "0.000001", "1E-7", "-1.5e+10"}),
			func(s string) any { return json.Number(s) }),
	}
	if depth == 0 {
		return rapid.OneOf(scalars...)
	}
	return rapid.OneOf(append(scalars,
		rapid.Map(rapid.SliceOfN(rapid.Deferred(func() *rapid.Generator[any] { return genJSON(depth - 1) }), 0, 4),
			func(a []any) any { return a }),
		rapid.Map(genObject(depth-1), func(m map[string]any) any { return m }),
	)...)
}

func genObject(depth int) *rapid.Generator[map[string]any] {
	return rapid.MapOfN(rapid.StringN(0, 8, -1), rapid.Deferred(func() *rapid.Generator[any] { return genJSON(depth) }), 0, 4)
}

func genData(t *rapid.T, label string) json.RawMessage {
	if rapid.Bool().Draw(t, label+"-absent") {
		return nil
	}
	b, err := json.Marshal(genObject(2).Draw(t, label))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// genState draws a random valid state, built directly and then checked by
// graph.FromState.
func genState(t *rapid.T) graph.State {
	idGen := rapid.StringOfN(rapid.RuneFrom([]rune("abcxyzABC0129_.:-")), 1, 12, graph.MaxIDLen)
	ids := rapid.SliceOfNDistinct(idGen, 0, 60, func(s string) string { return s }).Draw(t, "ids")
	nNodes := rapid.IntRange(min(1, len(ids)), len(ids)).Draw(t, "nodes")
	if nNodes == 0 {
		ids = nil
	}
	text := rapid.StringN(0, 20, graph.MaxTextLen)
	var s graph.State
	for i, id := range ids[:nNodes] {
		s.Nodes = append(s.Nodes, graph.Node{
			ID: id, Kind: text.Draw(t, "kind"), Label: text.Draw(t, "label"),
			X: rapid.Float64().Draw(t, "x"), Y: rapid.Float64().Draw(t, "y"),
			Data: genData(t, fmt.Sprint("ndata", i)),
		})
	}
	if nNodes > 0 {
		endpoint := rapid.SampledFrom(ids[:nNodes])
		for i, id := range ids[nNodes:] {
			s.Edges = append(s.Edges, graph.Edge{
				ID: id, Kind: text.Draw(t, "kind"), Label: text.Draw(t, "label"),
				Source: endpoint.Draw(t, "source"), Target: endpoint.Draw(t, "target"),
				Data: genData(t, fmt.Sprint("edata", i)),
			})
		}
	}
	g, err := graph.FromState(s)
	if err != nil {
		t.Fatalf("generated an invalid state: %v", err)
	}
	if rapid.Bool().Draw(t, "as graph") {
		return g.State() // sorted and canonical, as rooms snapshot it
	}
	return s
}

func TestRoundTripProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := genState(t)
		v := rapid.Int64Min(0).Draw(t, "version")
		checkRoundTrip(t, s, v)
	})
}

// The shared zstd and CBOR codecs are used from many goroutines.
func TestConcurrentUse(t *testing.T) {
	s := realisticState(t, 500)
	want := mustEncode(t, s, 5)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 5 {
				data, err := snapshot.Encode(s, 5)
				if err != nil || !bytes.Equal(data, want) {
					t.Errorf("Encode: %v", err)
					return
				}
				got, v, err := snapshot.Decode(data)
				if err != nil || v != 5 || !got.Equal(s) {
					t.Errorf("Decode: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// ---- rejections ----

func smallSnapshot(t testing.TB) []byte {
	s := validState(t, graph.State{
		Nodes: []graph.Node{{ID: "a", Kind: "table", Label: "A", Data: json.RawMessage(`{"columns":[{"name":"id"}]}`)}, {ID: "b"}},
		Edges: []graph.Edge{{ID: "e", Source: "a", Target: "b"}},
	})
	return mustEncode(t, s, 12)
}

// expectMalformed requires Decode to reject data with an error wrapping
// ErrMalformed whose text contains want.
func expectMalformed(t testing.TB, data []byte, want string) {
	t.Helper()
	s, v, err := snapshot.Decode(data)
	if err == nil {
		t.Fatalf("Decode accepted %d bytes: %+v at %d", len(data), s, v)
	}
	if !errors.Is(err, snapshot.ErrMalformed) {
		t.Fatalf("error %q does not wrap ErrMalformed", err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not mention %q", err, want)
	}
}

func TestRejectHeader(t *testing.T) {
	good := smallSnapshot(t)
	payload := good[headerSize:]
	withByte := func(i int, b byte) []byte { d := bytes.Clone(good); d[i] = b; return d }
	withLen := func(n uint32) []byte { d := bytes.Clone(good); binary.BigEndian.PutUint32(d[6:], n); return d }

	expectMalformed(t, nil, "truncated")
	expectMalformed(t, []byte{}, "truncated")
	expectMalformed(t, []byte("LSN"), "truncated")
	expectMalformed(t, []byte("JUNKJUNK"), "bad magic")
	expectMalformed(t, withByte(0, 'X'), "bad magic")
	expectMalformed(t, withByte(3, 'Q'), "bad magic")
	expectMalformed(t, wrapAs(0, payload), "unknown format version 0")
	expectMalformed(t, wrapAs(2, payload), "unknown format version 2")
	expectMalformed(t, wrapAs(0xffff, payload), "unknown format version 65535")
	expectMalformed(t, withLen(uint32(len(payload)-1)), "header says")
	expectMalformed(t, withLen(uint32(len(payload)+1)), "truncated")
	expectMalformed(t, withLen(math.MaxUint32), "truncated")
	expectMalformed(t, append(bytes.Clone(good), 0), "header says")
	expectMalformed(t, withByte(10, good[10]^1), "checksum")
}

func TestRejectEveryTruncation(t *testing.T) {
	good := smallSnapshot(t)
	for n := range len(good) {
		if _, _, err := snapshot.Decode(good[:n]); !errors.Is(err, snapshot.ErrMalformed) {
			t.Fatalf("prefix of %d/%d bytes: err = %v, want ErrMalformed", n, len(good), err)
		}
	}
}

func TestRejectEveryFlippedPayloadByte(t *testing.T) {
	good := smallSnapshot(t)
	for i := headerSize; i < len(good); i++ {
		for _, mask := range []byte{0x01, 0x80, 0xff} {
			d := bytes.Clone(good)
			d[i] ^= mask
			expectMalformed(t, d, "checksum")
		}
	}
}

func TestRejectBadPayload(t *testing.T) {
	good := smallSnapshot(t)
	cborOf := func(v any) []byte {
		b, err := cbor.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	node := func(id string) map[string]any { return map[string]any{"i": id, "x": 0.0, "y": 0.0} }
	edge := func(id, s, tg string) map[string]any { return map[string]any{"i": id, "s": s, "t": tg} }
	state := func(v any, nodes, edges []any) map[string]any {
		return map[string]any{"v": v, "n": nodes, "e": edges}
	}

	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"garbage with a valid checksum", wrap([]byte("this is not zstd at all")), "zstd"},
		{"empty payload", wrap(nil), "cbor"},
		{"zstd frame cut short", wrap(compress(payloadOf(t, good))[:20]), "zstd"},
		{"zstd of nothing", wrap(compress(nil)), "cbor"},
		{"zstd of invalid CBOR", wrap(compress([]byte{0xff, 0x00, 0x1c})), "cbor"},
		{"zstd of truncated CBOR", wrap(compress(payloadOf(t, good)[:30])), "cbor"},
		{"CBOR with trailing data", wrap(compress(append(payloadOf(t, good), 0x00))), "cbor"},
		{"CBOR array, not map", wrap(compress(cborOf([]any{1, 2}))), "cbor"},
		{"CBOR without v", wrapCBOR(t, map[string]any{"n": []any{}, "e": []any{}}), "no version"},
		{"negative version", wrapCBOR(t, state(-1, nil, nil)), "negative version"},
		{"float version", wrapCBOR(t, state(1.5, nil, nil)), "cbor"},
		{"unknown field", wrapCBOR(t, map[string]any{"v": 1, "n": []any{}, "e": []any{}, "z": 1}), "cbor"},
		{"unknown node field", wrapCBOR(t, state(1, []any{map[string]any{"i": "a", "q": 1}}, nil)), "cbor"},
		{"key in the wrong case", wrapCBOR(t, map[string]any{"V": 1}), "cbor"},
		{"duplicate key", wrap(compress([]byte{0xa2, 0x61, 'v', 0x01, 0x61, 'v', 0x02})), "cbor"},
		{"indefinite length", wrap(compress([]byte{0xbf, 0x61, 'v', 0x01, 0xff})), "cbor"},
		{"tag", wrap(compress([]byte{0xa1, 0x61, 'v', 0xc1, 0x01})), "cbor"},
		{"invalid UTF-8", wrap(compress([]byte{0xa1, 0x61, 0xff, 0x01})), "cbor"},
		{"string id", wrapCBOR(t, state(1, []any{map[string]any{"i": 5}}, nil)), "cbor"},
		{"huge declared array", wrap(compress([]byte{0xa1, 0x61, 'n', 0x9b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})), "cbor"},
		{"edge to a missing node", wrapCBOR(t, state(1, []any{node("a")}, []any{edge("e", "a", "nope")})), `node "nope" does not exist`},
		{"duplicate node id", wrapCBOR(t, state(1, []any{node("a"), node("a")}, nil)), "used by another node"},
		{"edge id of a node", wrapCBOR(t, state(1, []any{node("a")}, []any{edge("a", "a", "a")})), "used by another node"},
		{"empty id", wrapCBOR(t, state(1, []any{node("")}, nil)), "id"},
		{"bad id", wrapCBOR(t, state(1, []any{node("a b")}, nil)), "id"},
		{"NaN coordinate", wrapCBOR(t, state(1, []any{map[string]any{"i": "a", "x": math.NaN()}}, nil)), "finite"},
		{"infinite coordinate", wrapCBOR(t, state(1, []any{map[string]any{"i": "a", "y": math.Inf(-1)}}, nil)), "finite"},
		{"data not JSON", wrapCBOR(t, state(1, []any{map[string]any{"i": "a", "d": "{nope"}}, nil)), "data"},
		{"data not an object", wrapCBOR(t, state(1, []any{map[string]any{"i": "a", "d": "[1]"}}, nil)), "object"},
		{"data out of range", wrapCBOR(t, state(1, []any{map[string]any{"i": "a", "d": `{"n":1e400}`}}, nil)), "range"},
		{"label too long", wrapCBOR(t, state(1, []any{map[string]any{"i": "a", "l": strings.Repeat("x", 257)}}, nil)), "at most"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { expectMalformed(t, c.data, c.want) })
	}
}

func TestRleFrameIsValidZstd(t *testing.T) {
	for _, declare := range []bool{true, false} {
		for _, n := range []uint64{1, 128 << 10, 128<<10 + 1, 1 << 20} {
			out, err := testZstdDec.DecodeAll(rleFrame(n, declare), nil)
			if err != nil || uint64(len(out)) != n || bytes.ContainsFunc(out, func(r rune) bool { return r != 0 }) {
				t.Fatalf("rleFrame(%d, %v) decodes to %d bytes, %v", n, declare, len(out), err)
			}
		}
	}
}

// A few kilobytes that would inflate past the limit are refused, whether
// the frame declares its size (refused before decoding) or not (refused
// once the output passes the limit).
func TestRejectZipBomb(t *testing.T) {
	const limit = 1 << 20
	zeros := make([]byte, limit+1)
	streamed := func(b []byte, window int) []byte { // a frame with no declared size
		var buf bytes.Buffer
		w, err := zstd.NewWriter(&buf, zstd.WithWindowSize(window))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(b); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	for name, frame := range map[string][]byte{
		"EncodeAll":             compress(zeros),
		"stream":                streamed(zeros, 128<<10),
		"big window":            streamed(zeros, 8<<20),
		"RLE declared":          rleFrame(limit+1, true),
		"RLE undeclared":        rleFrame(limit+1, false),
		"two frames":            append(compress(zeros[:limit/2+1]), compress(zeros[:limit/2+1])...),
		"bomb then empty frame": append(rleFrame(limit+1, false), compress(nil)...),
	} {
		t.Run(name, func(t *testing.T) {
			if len(frame) > 4096 {
				t.Fatalf("bomb of %d bytes is not tiny", len(frame))
			}
			_, _, err := snapshot.DecodeWithLimit(wrap(frame), limit)
			if !errors.Is(err, snapshot.ErrMalformed) || !strings.Contains(err.Error(), "limit") {
				t.Fatalf("err = %v, want ErrMalformed about the limit", err)
			}
		})
	}
	// Exactly at the limit passes the zstd layer (and then fails as CBOR).
	_, _, err := snapshot.DecodeWithLimit(wrap(compress(zeros[:limit])), limit)
	if !errors.Is(err, snapshot.ErrMalformed) || strings.Contains(err.Error(), "limit") || !strings.Contains(err.Error(), "cbor") {
		t.Fatalf("at the limit: err = %v, want a CBOR error", err)
	}
}

// The real 256 MiB limit, with ~8 KiB frames.
func TestRejectZipBombRealLimit(t *testing.T) {
	const over = snapshot.MaxDecodedBytes + 1
	frame := rleFrame(over, true)
	expectMalformed(t, wrap(frame), "limit")
	if testing.Short() {
		t.Skip("inflating 256 MiB; skipped with -short")
	}
	// Without a declared size the decoder must inflate to the limit to
	// find out.
	expectMalformed(t, wrap(rleFrame(over, false)), "limit")
}

// A snapshot from another encoder with non-canonical data decodes to the
// canonical form a graph would hold.
func TestDecodeCanonicalisesForeignData(t *testing.T) {
	data := wrapCBOR(t, map[string]any{"v": 3, "e": []any{},
		"n": []any{
			map[string]any{"i": "a", "x": 0, "y": 0, "d": ` { "b" : 1, "a" : [ 2 ] } `},
			map[string]any{"i": "b", "x": 0, "y": 0, "d": "null"},
			map[string]any{"i": "c", "x": 0, "y": 0, "d": `{"h":"<&>"}`},
		}})
	s, v, err := snapshot.Decode(data)
	if err != nil || v != 3 {
		t.Fatalf("Decode: %v, %d", err, v)
	}
	for i, want := range []string{`{"a":[2],"b":1}`, `{}`, `{"h":"\u003c\u0026\u003e"}`} {
		if got := string(s.Nodes[i].Data); got != want {
			t.Errorf("node %d data = %s, want %s", i, got, want)
		}
	}
}
