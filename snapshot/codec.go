// Package snapshot encodes a room's state at a version into LiveShare's
// compact, versioned binary snapshot format and decodes it back, verifying
// everything on the way (DESIGN.md §6).
//
// Layout (all integers big-endian):
//
//	offset size  field
//	0      4     magic "LSNP"
//	4      2     format version (uint16), currently 1
//	6      4     payload length in bytes (uint32)
//	10     4     CRC-32C (Castagnoli) of the payload (uint32)
//	14     n     payload
//
// The payload is one zstd frame holding one CBOR (RFC 8949) map, written in
// core deterministic encoding:
//
//	{"v": version, "n": [node...], "e": [edge...]}
//	node: {"i": id, "k": kind, "l": label, "x": float, "y": float, "d": data}
//	edge: {"i": id, "k": kind, "s": source, "t": target, "l": label, "d": data}
//
// where data is the element's canonical JSON object as a CBOR text string,
// and "k", "l" and "d" are left out when they are "" ("" and "{}" for "d").
package snapshot

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"sync"

	"github.com/fxamacker/cbor/v2"
	"github.com/klauspost/compress/zstd"

	"github.com/liveshare/liveshare/graph"
)

// FormatVersion is the current binary format version (1).
const FormatVersion = 1

// ErrMalformed is wrapped by every [Decode] and [Header] error: bad magic,
// truncated, unknown format version, bad checksum, bad payload, invalid
// state.
var ErrMalformed = errors.New("malformed snapshot")

const (
	magic      = "LSNP"
	headerSize = 4 + 2 + 4 + 4

	// maxDecodedBytes caps the decompressed payload, so that a small
	// snapshot cannot make Decode allocate without bound (a zip bomb).
	// Stored snapshots are at most 10 MiB compressed (DESIGN.md §6) and a
	// realistic graph compresses about 4.3x, so 25x leaves ample headroom.
	maxDecodedBytes = 256 << 20

	// zstdWindow is the encoder's window and the largest window the
	// decoder accepts; it bounds the decoder's history memory.
	zstdWindow = 8 << 20

	// zstdLevel was chosen with BenchmarkCodec/*/zstd-*: on a realistic
	// 100k-element graph (29.5 MB of CBOR) SpeedDefault compresses to 6.8 MB
	// in 115-125 ms, SpeedFastest to 7.1 MB (+4%) in ~95 ms, and
	// SpeedBetterCompression to 6.1 MB in 250-360 ms; at 10k elements
	// SpeedFastest takes about 30% less time than SpeedDefault for 10% more
	// bytes (695 against 630 KB, still a fifth of the JSON). Compression
	// no longer decides what fits: a room's budget (StateBudget) bounds its
	// payload before compression. Time does: the encode is CPU the
	// room's writers share, once per interval per changed room, and it is
	// what a snapshot of a large room costs.
	zstdLevel = zstd.SpeedFastest
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// The package's only state: stateless codecs built once on first use.
// zstd's Encoder.EncodeAll and Decoder.DecodeAll, and cbor's DecMode, are
// all safe for concurrent use, so sharing them is safe and
// saves rebuilding their tables on every snapshot.
var (
	zstdEncoder = sync.OnceValues(func() (*zstd.Encoder, error) {
		return zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstdLevel),
			zstd.WithWindowSize(zstdWindow),
		)
	})
	// payloadBufs holds the buffers Encode writes the CBOR into before it
	// compresses it: reused, they spare a snapshot of a large room the
	// allocation (and the page faults) of megabytes each time.
	payloadBufs = sync.Pool{New: func() any { return new([]byte) }}
	zstdDecoder = sync.OnceValues(func() (*zstd.Decoder, error) {
		return newZstdDecoder(maxDecodedBytes)
	})
	cborDec = sync.OnceValues(func() (cbor.DecMode, error) {
		return cbor.DecOptions{
			DupMapKey:         cbor.DupMapKeyEnforcedAPF,
			IndefLength:       cbor.IndefLengthForbidden,
			TagsMd:            cbor.TagsForbidden,
			MaxArrayElements:  math.MaxInt32, // each element must still be present in the input
			ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
			UTF8:              cbor.UTF8RejectInvalid,
			FieldNameMatching: cbor.FieldNameMatchingCaseSensitive,
			TextUnmarshaler:   cbor.TextUnmarshalerTextString, // for wireText only
		}.DecMode()
	})
)

func newZstdDecoder(maxDecoded uint64) (*zstd.Decoder, error) {
	return zstd.NewReader(nil,
		zstd.WithDecoderMaxMemory(maxDecoded),
		zstd.WithDecoderMaxWindow(zstdWindow),
	)
}

// wire forms of the payload, as decoded; see the package documentation.
// appendPayload writes them.
type wireState struct {
	V *int64     `cbor:"v"`
	N []wireNode `cbor:"n"`
	E []wireEdge `cbor:"e"`
}

type wireNode struct {
	ID    string   `cbor:"i"`
	Kind  string   `cbor:"k,omitempty"`
	Label string   `cbor:"l,omitempty"`
	X     float64  `cbor:"x"`
	Y     float64  `cbor:"y"`
	Data  wireText `cbor:"d,omitempty"`
}

type wireEdge struct {
	ID     string   `cbor:"i"`
	Kind   string   `cbor:"k,omitempty"`
	Source string   `cbor:"s"`
	Target string   `cbor:"t"`
	Label  string   `cbor:"l,omitempty"`
	Data   wireText `cbor:"d,omitempty"`
}

// Encode encodes a room's state at version (see the package documentation
// for the format). s is expected to be valid as [graph.FromState] checks it
// (a Graph's State always is) with canonical Data; Encode does not re-check
// it, as that would cost more than encoding, but a snapshot of an invalid
// state fails [Decode]. Order is kept: Decode returns the elements in the
// order they had here. Absent Data (nil, empty) is stored as "{}".
func Encode(s graph.State, version int64) ([]byte, error) {
	if version < 0 {
		return nil, fmt.Errorf("snapshot: negative version %d", version)
	}
	buf := payloadBufs.Get().(*[]byte)
	defer payloadBufs.Put(buf)
	if hint := payloadSizeHint(s); cap(*buf) < hint {
		// Once, rather than doubling its way up (twice the bytes, and the
		// garbage collections they bring about while the room's writers
		// run).
		*buf = make([]byte, 0, hint)
	}
	raw := appendPayload((*buf)[:0], s, version)
	*buf = raw
	enc, err := zstdEncoder()
	if err != nil {
		return nil, fmt.Errorf("snapshot: zstd: %w", err)
	}
	out := make([]byte, headerSize, headerSize+len(raw)/4+64)
	out = enc.EncodeAll(raw, out)
	if err := putHeader(out); err != nil {
		return nil, err
	}
	return out, nil
}

// putHeader writes the header into the first headerSize bytes of data, for
// the compressed payload that follows them.
func putHeader(data []byte) error {
	payload := data[headerSize:]
	if uint64(len(payload)) > math.MaxUint32 {
		return fmt.Errorf("snapshot: payload of %d bytes is too large", len(payload))
	}
	copy(data, magic)
	binary.BigEndian.PutUint16(data[4:], FormatVersion)
	binary.BigEndian.PutUint32(data[6:], uint32(len(payload)))
	binary.BigEndian.PutUint32(data[10:], crc32.Checksum(payload, castagnoli))
	return nil
}

// wireText is data as decoded: a CBOR text string (only: a byte string is
// refused), copied once straight into the bytes the element keeps, where a
// Go string would be copied twice.
type wireText struct{ b []byte }

// UnmarshalText is called by the CBOR decoder with a text string it has
// checked to be valid UTF-8; it must not keep those bytes.
func (t *wireText) UnmarshalText(b []byte) error {
	t.b = append([]byte(nil), b...)
	return nil
}

func fromWireData(d wireText) json.RawMessage {
	if len(d.b) == 0 {
		return json.RawMessage("{}")
	}
	return d.b
}

// Decode verifies and decodes a snapshot made by [Encode], returning the
// state (nodes and edges in the order they were encoded, never nil slices,
// Data canonical as [graph.FromState] makes it) and its version. It trusts
// nothing in the bytes, so it is the one for snapshots from anywhere (a
// download, a restore, an upload); a room's own stored snapshot loads with
// [DecodeStored]. It never panics. Anything malformed, truncated, of an
// unknown format version, with a bad checksum, whose payload decompresses to
// more than 256 MiB, or whose state [graph.FromState] rejects gives an error
// wrapping [ErrMalformed] that says what was wrong.
func Decode(data []byte) (graph.State, int64, error) {
	dec, err := zstdDecoder()
	if err != nil {
		return graph.State{}, 0, fmt.Errorf("snapshot: zstd: %w", err)
	}
	return decode(data, dec, maxDecodedBytes)
}

// DecodeStored decodes a snapshot this service stored itself, as a room
// loads from it (and history reads its checkpoints): it verifies the
// header and the checksum as Decode does, then trusts that the elements
// were valid when a Graph's state was encoded, checking only what keeps the
// graph consistent (see [graph.FromStoredState]). That skips most of
// Decode's cost, re-validating every element. Bytes from anywhere else — a
// download, an upload, a user — go through Decode.
func DecodeStored(data []byte) (*graph.Graph, int64, error) {
	dec, err := zstdDecoder()
	if err != nil {
		return nil, 0, fmt.Errorf("snapshot: zstd: %w", err)
	}
	s, version, err := decodeState(data, dec, maxDecodedBytes)
	if err != nil {
		return nil, 0, err
	}
	g, err := graph.FromStoredState(s)
	if err != nil {
		return nil, 0, malformed("%v", err)
	}
	return g, version, nil
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

// decode is Decode with zdec, whose WithDecoderMaxMemory is limit: it
// validates the whole state as [graph.FromState] does.
func decode(data []byte, zdec *zstd.Decoder, limit uint64) (graph.State, int64, error) {
	s, version, err := decodeState(data, zdec, limit)
	if err != nil {
		return graph.State{}, 0, err
	}
	g, err := graph.FromState(s)
	if err != nil {
		return graph.State{}, 0, malformed("%v", err)
	}
	// Take Data as the graph normalised it, so that a snapshot written by
	// another encoder with non-canonical JSON ("null", spaces) still
	// decodes to canonical Data. Ours is canonical already; this costs a
	// lookup and a copy of Data per element, little next to FromState.
	for i := range s.Nodes {
		n, _ := g.Node(s.Nodes[i].ID)
		s.Nodes[i].Data = n.Data
	}
	for i := range s.Edges {
		e, _ := g.Edge(s.Edges[i].ID)
		s.Edges[i].Data = e.Data
	}
	return s, version, nil
}

// Verify checks a snapshot's header and checksum without decoding its
// payload: what a download of the stored bytes needs to know they are
// intact. Errors wrap [ErrMalformed].
func Verify(data []byte) error {
	if _, _, err := Header(data); err != nil {
		return err
	}
	if want, got := binary.BigEndian.Uint32(data[10:]), crc32.Checksum(data[headerSize:], castagnoli); got != want {
		return malformed("checksum mismatch (header %08x, payload %08x)", want, got)
	}
	return nil
}

// decodeState verifies a snapshot and decodes its payload into a state,
// without validating the elements.
func decodeState(data []byte, zdec *zstd.Decoder, limit uint64) (graph.State, int64, error) {
	if err := Verify(data); err != nil {
		return graph.State{}, 0, err
	}
	raw, err := zdec.DecodeAll(data[headerSize:], nil)
	if err != nil {
		if errors.Is(err, zstd.ErrDecoderSizeExceeded) {
			return graph.State{}, 0, malformed("payload decompresses to more than the %d-byte limit", limit)
		}
		if errors.Is(err, zstd.ErrWindowSizeExceeded) {
			return graph.State{}, 0, malformed("zstd window is over the %d-byte limit", min(zstdWindow, limit))
		}
		return graph.State{}, 0, malformed("zstd: %v", err)
	}
	dm, err := cborDec()
	if err != nil {
		return graph.State{}, 0, fmt.Errorf("snapshot: cbor: %w", err)
	}
	var w wireState
	if err := dm.Unmarshal(raw, &w); err != nil {
		return graph.State{}, 0, malformed("cbor: %v", err)
	}
	if w.V == nil {
		return graph.State{}, 0, malformed(`payload has no version ("v")`)
	}
	if *w.V < 0 {
		return graph.State{}, 0, malformed("negative version %d", *w.V)
	}
	s := graph.State{Nodes: make([]graph.Node, len(w.N)), Edges: make([]graph.Edge, len(w.E))}
	for i, n := range w.N {
		s.Nodes[i] = graph.Node{ID: n.ID, Kind: n.Kind, Label: n.Label, X: n.X, Y: n.Y, Data: fromWireData(n.Data)}
	}
	for i, e := range w.E {
		s.Edges[i] = graph.Edge{ID: e.ID, Kind: e.Kind, Source: e.Source, Target: e.Target, Label: e.Label, Data: fromWireData(e.Data)}
	}
	return s, *w.V, nil
}

// Header reads only the header of a snapshot: its format version and payload
// length. It checks the magic, the format version and that the payload is
// exactly as long as the header says, but not the checksum or the payload.
// Errors wrap [ErrMalformed].
func Header(data []byte) (formatVersion int, payloadLen int, err error) {
	if len(data) < headerSize {
		if len(data) >= len(magic) && !bytes.Equal(data[:len(magic)], []byte(magic)) {
			return 0, 0, malformed("bad magic %q", data[:len(magic)])
		}
		return 0, 0, malformed("truncated: %d bytes is shorter than the %d-byte header", len(data), headerSize)
	}
	if !bytes.Equal(data[:len(magic)], []byte(magic)) {
		return 0, 0, malformed("bad magic %q", data[:len(magic)])
	}
	fv := int(binary.BigEndian.Uint16(data[4:]))
	if fv != FormatVersion {
		return fv, 0, malformed("unknown format version %d (this build reads %d)", fv, FormatVersion)
	}
	n := uint64(binary.BigEndian.Uint32(data[6:]))
	if got := uint64(len(data) - headerSize); got != n {
		if got < n {
			return fv, 0, malformed("truncated: payload is %d bytes, header says %d", got, n)
		}
		return fv, 0, malformed("payload is %d bytes, header says %d", got, n)
	}
	return fv, int(n), nil
}
