package snapshot

import (
	"encoding/binary"
	"math"

	"github.com/liveshare/liveshare/graph"
)

// appendPayload appends the CBOR payload of a snapshot of s at version
// (see the package documentation) to b, in core deterministic encoding
// (RFC 8949 §4.2.1): lengths and integers in their shortest form, floats in
// the shortest of float16, float32 and float64 that keeps their value, map
// keys in bytewise order. It writes the same bytes as fxamacker/cbor's
// CoreDetEncOptions would of the wire structs, which the tests check, in a
// fraction of the time: the layout is fixed, so nothing is reflected on and
// no string is copied but into the output.
func appendPayload(b []byte, s graph.State, version int64) []byte {
	b = append(b, 0xa3) // map of 3: "e", "n", "v" in key order
	b = appendKey(b, 'e')
	b = appendHead(b, majorArray, uint64(len(s.Edges)))
	for i := range s.Edges {
		b = appendEdge(b, &s.Edges[i])
	}
	b = appendKey(b, 'n')
	b = appendHead(b, majorArray, uint64(len(s.Nodes)))
	for i := range s.Nodes {
		b = appendNode(b, &s.Nodes[i])
	}
	b = appendKey(b, 'v')
	return appendHead(b, majorUint, uint64(version))
}

// payloadSizeHint is close above the size appendPayload writes, so that
// the output is allocated once: per element, the map head, the one-letter
// keys, the heads of the strings (at most 5 bytes each) and the floats.
func payloadSizeHint(s graph.State) int {
	n := 32 // the top-level map, its keys, the arrays' heads, the version
	for i := range s.Nodes {
		nd := &s.Nodes[i]
		n += 48 + len(nd.ID) + len(nd.Kind) + len(nd.Label) + len(nd.Data)
	}
	for i := range s.Edges {
		e := &s.Edges[i]
		n += 32 + len(e.ID) + len(e.Kind) + len(e.Source) + len(e.Target) + len(e.Label) + len(e.Data)
	}
	return n
}

const (
	majorUint  = 0 << 5
	majorText  = 3 << 5
	majorArray = 4 << 5
	majorMap   = 5 << 5
)

func appendNode(b []byte, n *graph.Node) []byte {
	data := storedData(n.Data)
	fields := 3 // "i", "x", "y"
	if len(data) != 0 {
		fields++
	}
	if n.Kind != "" {
		fields++
	}
	if n.Label != "" {
		fields++
	}
	b = append(b, byte(majorMap|fields))
	if len(data) != 0 {
		b = appendKey(b, 'd')
		b = appendText(b, data)
	}
	b = appendKey(b, 'i')
	b = appendText(b, n.ID)
	if n.Kind != "" {
		b = appendKey(b, 'k')
		b = appendText(b, n.Kind)
	}
	if n.Label != "" {
		b = appendKey(b, 'l')
		b = appendText(b, n.Label)
	}
	b = appendKey(b, 'x')
	b = appendFloat(b, n.X)
	b = appendKey(b, 'y')
	return appendFloat(b, n.Y)
}

func appendEdge(b []byte, e *graph.Edge) []byte {
	data := storedData(e.Data)
	fields := 3 // "i", "s", "t"
	if len(data) != 0 {
		fields++
	}
	if e.Kind != "" {
		fields++
	}
	if e.Label != "" {
		fields++
	}
	b = append(b, byte(majorMap|fields))
	if len(data) != 0 {
		b = appendKey(b, 'd')
		b = appendText(b, data)
	}
	b = appendKey(b, 'i')
	b = appendText(b, e.ID)
	if e.Kind != "" {
		b = appendKey(b, 'k')
		b = appendText(b, e.Kind)
	}
	if e.Label != "" {
		b = appendKey(b, 'l')
		b = appendText(b, e.Label)
	}
	b = appendKey(b, 's')
	b = appendText(b, e.Source)
	b = appendKey(b, 't')
	return appendText(b, e.Target)
}

// cborNodeSize is exactly the number of bytes appendNode writes for n.
func cborNodeSize(n *graph.Node) int {
	size := 1 + 2 + textSize(len(n.ID)) + 2 + floatSize(n.X) + 2 + floatSize(n.Y) // head, "i", "x", "y"
	return size + optionalFieldsSize(len(storedData(n.Data)), len(n.Kind), len(n.Label))
}

// cborEdgeSize is exactly the number of bytes appendEdge writes for e.
func cborEdgeSize(e *graph.Edge) int {
	size := 1 + 2 + textSize(len(e.ID)) + 2 + textSize(len(e.Source)) + 2 + textSize(len(e.Target)) // head, "i", "s", "t"
	return size + optionalFieldsSize(len(storedData(e.Data)), len(e.Kind), len(e.Label))
}

// optionalFieldsSize is the size of the "d", "k" and "l" members, given
// their lengths: nodes and edges write them only when not empty.
func optionalFieldsSize(lengths ...int) int {
	size := 0
	for _, n := range lengths {
		if n != 0 {
			size += 2 + textSize(n)
		}
	}
	return size
}

func textSize(n int) int { return headSize(uint64(n)) + n }

// headSize is the length of the head appendHead writes for n.
func headSize(n uint64) int {
	switch {
	case n < 24:
		return 1
	case n <= math.MaxUint8:
		return 2
	case n <= math.MaxUint16:
		return 3
	case n <= math.MaxUint32:
		return 5
	default:
		return 9
	}
}

// floatSize is the length appendFloat writes for f.
func floatSize(f float64) int {
	f32 := float32(f)
	if float64(f32) != f {
		return 9
	}
	if _, ok := float16Bits(f32); ok {
		return 3
	}
	return 5
}

// storedData is what a snapshot stores of Data: nothing (the key is left
// out) for "{}" or absent.
func storedData(d []byte) []byte {
	if string(d) == "{}" {
		return nil
	}
	return d
}

// appendKey appends a one-letter text string, the keys of the format.
func appendKey(b []byte, k byte) []byte { return append(b, majorText|1, k) }

func appendText[S string | []byte](b []byte, s S) []byte {
	b = appendHead(b, majorText, uint64(len(s)))
	return append(b, s...)
}

// appendHead appends a data item's head: its major type and its argument in
// the shortest form.
func appendHead(b []byte, major byte, n uint64) []byte {
	switch {
	case n < 24:
		return append(b, major|byte(n))
	case n <= math.MaxUint8:
		return append(b, major|24, byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, major|25), uint16(n))
	case n <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, major|26), uint32(n))
	default:
		return binary.BigEndian.AppendUint64(append(b, major|27), n)
	}
}

// appendFloat appends f as the shortest CBOR float that keeps its value.
// f is finite (coordinates are checked by graph).
func appendFloat(b []byte, f float64) []byte {
	f32 := float32(f)
	if float64(f32) != f {
		return binary.BigEndian.AppendUint64(append(b, 0xfb), math.Float64bits(f))
	}
	if h, ok := float16Bits(f32); ok {
		return binary.BigEndian.AppendUint16(append(b, 0xf9), h)
	}
	return binary.BigEndian.AppendUint32(append(b, 0xfa), math.Float32bits(f32))
}

// float16Bits returns f as IEEE 754 half precision when that keeps its
// value exactly.
func float16Bits(f float32) (uint16, bool) {
	bits := math.Float32bits(f)
	sign := uint16(bits>>16) & 0x8000
	exp := int(bits>>23&0xff) - 127
	mant := bits & 0x7fffff
	switch {
	case bits&0x7fffffff == 0: // ±0
		return sign, true
	case exp == 128: // infinities and NaNs: not in a snapshot
		return 0, false
	case exp >= -14 && exp <= 15: // a normal half
		if mant&0x1fff != 0 {
			return 0, false
		}
		return sign | uint16(exp+15)<<10 | uint16(mant>>13), true
	case exp >= -24 && exp < -14: // a subnormal half: m × 2^-24
		full := mant | 0x800000
		shift := uint(-(exp + 1))
		if full&(1<<shift-1) != 0 {
			return 0, false
		}
		return sign | uint16(full>>shift), true
	}
	return 0, false
}
