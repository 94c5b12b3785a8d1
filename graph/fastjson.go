package graph

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Decoding an op with encoding/json costs a reflective decoder per field
// and a generic map per patch, several times over for each op a room
// commits (ParseOp, then validation against the state, then the apply after
// the commit): at one-op requests that was a third of the allocations of
// POST /rooms/{room}/ops. The fast paths below decode, in one pass without
// reflection, the shapes clients send almost always, and give up
// ("ok" false) on anything else — whitespace, escapes, nulls, duplicate or
// unknown keys, a non-canonical patch or data, a reset — which the slow
// paths then decide. For every input a fast path accepts, its result is
// exactly the slow path's (FuzzFastPaths checks it).

// fastScanner reads compact JSON, giving up at the first byte it is not
// sure about.
type fastScanner struct {
	b []byte
	i int
}

func (s *fastScanner) eat(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// plainString scans a string with no escapes and no control characters,
// in valid UTF-8: its bytes are its value, as encoding/json would decode it.
func (s *fastScanner) plainString() (string, bool) {
	if !s.eat('"') {
		return "", false
	}
	start := s.i
	ascii := true
	for ; s.i < len(s.b); s.i++ {
		switch c := s.b[s.i]; {
		case c == '"':
			v := s.b[start:s.i]
			s.i++
			if !ascii && !utf8.Valid(v) {
				return "", false // encoding/json would replace the bad bytes
			}
			return string(v), true
		case c == '\\' || c < 0x20:
			return "", false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return "", false
}

// number scans a JSON number that is finite in float64.
func (s *fastScanner) number() (float64, bool) {
	c := canonicalScanner{b: s.b, i: s.i}
	if !c.number() {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(s.b[s.i:c.i]), 64)
	if err != nil {
		return 0, false
	}
	s.i = c.i
	return f, true
}

// canonicalRaw scans a value in canonical form (see isCanonicalObject) and
// returns a copy of its bytes, which are what a decode into
// json.RawMessage would hold.
func (s *fastScanner) canonicalRaw() (json.RawMessage, bool) {
	return s.raw(false)
}

// looseRaw is canonicalRaw for a value whose object keys may come in any
// order (a patch, which validation puts in order).
func (s *fastScanner) looseRaw() (json.RawMessage, bool) {
	return s.raw(true)
}

func (s *fastScanner) raw(loose bool) (json.RawMessage, bool) {
	if s.i < len(s.b) && s.b[s.i] == 'n' {
		return nil, false // null means absent: the slow path decides
	}
	c := canonicalScanner{b: s.b, i: s.i, loose: loose}
	if !c.value(0) {
		return nil, false
	}
	v := cloneBytes(s.b[s.i:c.i])
	s.i = c.i
	return v, true
}

// members scans an object, calling member for each key with the scanner
// at the key's value; member scans the value and reports whether it could.
// A key may appear once.
func (s *fastScanner) members(member func(key string) bool) bool {
	if !s.eat('{') {
		return false
	}
	if s.eat('}') {
		return true
	}
	for {
		key, ok := s.plainString()
		if !ok || !s.eat(':') || !member(key) {
			return false
		}
		if s.eat('}') {
			return true
		}
		if !s.eat(',') {
			return false
		}
	}
}

// fastParseOp is parseOp for an op that is compact, names each field once,
// and carries no null, no reset state, only canonical data, and a patch
// of canonical tokens (its keys in any order).
func fastParseOp(b []byte) (Op, bool) {
	var op Op
	s := fastScanner{b: b}
	var seen uint8
	ok := s.members(func(key string) bool {
		var bit uint8
		var ok bool
		switch key {
		case "op":
			bit = 1
			var k string
			k, ok = s.plainString()
			op.Kind = OpKind(k)
		case "id":
			bit = 2
			op.ID, ok = s.plainString()
		case "node":
			bit = 4
			var n Node
			n, ok = s.node()
			op.Node = &n
		case "edge":
			bit = 8
			var e Edge
			e, ok = s.edge()
			op.Edge = &e
		case "patch":
			bit = 16
			op.Patch, ok = s.looseRaw()
		case "snapshot_id":
			bit = 32
			op.SnapshotID, ok = s.plainString()
		default:
			return false // "state" (resets are rare) or unknown
		}
		if seen&bit != 0 {
			return false // encoding/json would keep the last
		}
		seen |= bit
		return ok
	})
	if !ok || s.i != len(b) || seen&1 == 0 {
		return Op{}, false
	}
	return op, true
}

func (s *fastScanner) node() (Node, bool) {
	var n Node
	var seen uint8
	ok := s.members(func(key string) bool {
		var bit uint8
		var ok bool
		switch key {
		case "id":
			bit = 1
			n.ID, ok = s.plainString()
		case "kind":
			bit = 2
			n.Kind, ok = s.plainString()
		case "label":
			bit = 4
			n.Label, ok = s.plainString()
		case "x":
			bit = 8
			n.X, ok = s.number()
		case "y":
			bit = 16
			n.Y, ok = s.number()
		case "data":
			bit = 32
			n.Data, ok = s.canonicalRaw()
		default:
			return false
		}
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		return ok
	})
	return n, ok
}

func (s *fastScanner) edge() (Edge, bool) {
	var e Edge
	var seen uint8
	ok := s.members(func(key string) bool {
		var bit uint8
		var ok bool
		switch key {
		case "id":
			bit = 1
			e.ID, ok = s.plainString()
		case "kind":
			bit = 2
			e.Kind, ok = s.plainString()
		case "source":
			bit = 4
			e.Source, ok = s.plainString()
		case "target":
			bit = 8
			e.Target, ok = s.plainString()
		case "label":
			bit = 16
			e.Label, ok = s.plainString()
		case "data":
			bit = 32
			e.Data, ok = s.canonicalRaw()
		default:
			return false
		}
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		return ok
	})
	return e, ok
}

// decodeCanonical decodes a value that isCanonicalObject's scanner
// accepts into what decodeJSON makes of it (numbers as json.Number). A
// canonical value has no escapes, so its strings are its bytes; ok is false
// for anything else.
func decodeCanonical(b []byte) (any, bool) {
	d := canonicalDecoder{fastScanner: fastScanner{b: b}}
	v, ok := d.value(0)
	if !ok || d.i != len(b) {
		return nil, false
	}
	return v, true
}

// decodeLoose is decodeCanonical for a value that may also have object
// keys out of order, as clients that do not sort their keys send; a key
// that appears twice is still refused (ok false). canonical reports
// whether every object's keys were in order, so that the bytes are what
// json.Marshal writes of the value.
func decodeLoose(b []byte) (v any, canonical, ok bool) {
	d := canonicalDecoder{fastScanner: fastScanner{b: b}, loose: true}
	v, ok = d.value(0)
	if !ok || d.i != len(b) {
		return nil, false, false
	}
	return v, !d.unsorted, true
}

type canonicalDecoder struct {
	fastScanner
	// loose lets object keys come in any order; unsorted records that one
	// did.
	loose, unsorted bool
}

func (d *canonicalDecoder) value(depth int) (any, bool) {
	if d.i >= len(d.b) || depth > maxFastDepth {
		return nil, false
	}
	switch c := d.b[d.i]; {
	case c == '{':
		d.i++
		m := map[string]any{}
		if d.eat('}') {
			return m, true
		}
		prev := ""
		for first := true; ; first = false {
			c := canonicalScanner{b: d.b, i: d.i}
			k, ok := c.str()
			if !ok {
				return nil, false
			}
			if !first && string(k) <= prev {
				if !d.loose {
					return nil, false
				}
				if _, dup := m[string(k)]; dup {
					return nil, false // encoding/json keeps the last: the slow path decides
				}
				d.unsorted = true
			}
			d.i = c.i
			key := string(k)
			prev = key
			if !d.eat(':') {
				return nil, false
			}
			v, ok := d.value(depth + 1)
			if !ok {
				return nil, false
			}
			m[key] = v
			if d.eat('}') {
				return m, true
			}
			if !d.eat(',') {
				return nil, false
			}
		}
	case c == '[':
		d.i++
		a := []any{}
		if d.eat(']') {
			return a, true
		}
		for {
			v, ok := d.value(depth + 1)
			if !ok {
				return nil, false
			}
			a = append(a, v)
			if d.eat(']') {
				return a, true
			}
			if !d.eat(',') {
				return nil, false
			}
		}
	case c == '"':
		cs := canonicalScanner{b: d.b, i: d.i}
		s, ok := cs.str()
		if !ok {
			return nil, false
		}
		d.i = cs.i
		return string(s), true
	case c == 't', c == 'f', c == 'n':
		cs := canonicalScanner{b: d.b, i: d.i}
		if !cs.value(depth) {
			return nil, false
		}
		lit := string(d.b[d.i:cs.i])
		d.i = cs.i
		switch lit {
		case "true":
			return true, true
		case "false":
			return false, true
		}
		return nil, true
	case c == '-' || (c >= '0' && c <= '9'):
		cs := canonicalScanner{b: d.b, i: d.i}
		if !cs.number() {
			return nil, false
		}
		n := json.Number(d.b[d.i:cs.i])
		d.i = cs.i
		return n, true
	}
	return nil, false
}

// MarshalOp encodes op exactly as json.Marshal does, without reflection
// for an op in the usual shape (plain strings, canonical patch and data,
// coordinates json.Marshal writes without an exponent, no reset state);
// anything else goes through json.Marshal. The sequencer encodes every op
// it commits.
func MarshalOp(op *Op) ([]byte, error) {
	if b, ok := appendOp(make([]byte, 0, 128), op); ok {
		return b, nil
	}
	return json.Marshal(op)
}

func appendOp(b []byte, op *Op) ([]byte, bool) {
	if op.State != nil {
		return nil, false
	}
	ok := true
	b = append(b, `{"op":`...)
	b, ok = appendPlainString(b, string(op.Kind))
	if op.ID != "" && ok {
		b = append(b, `,"id":`...)
		b, ok = appendPlainString(b, op.ID)
	}
	if op.Node != nil && ok {
		n := op.Node
		b = append(b, `,"node":{"id":`...)
		b, ok = appendPlainString(b, n.ID)
		b = append(b, `,"kind":`...)
		b, ok = appendPlainStringIf(b, n.Kind, ok)
		b = append(b, `,"label":`...)
		b, ok = appendPlainStringIf(b, n.Label, ok)
		b = append(b, `,"x":`...)
		b, ok = appendFloatIf(b, n.X, ok)
		b = append(b, `,"y":`...)
		b, ok = appendFloatIf(b, n.Y, ok)
		b = append(b, `,"data":`...)
		b, ok = appendRawIf(b, n.Data, ok)
		b = append(b, '}')
	}
	if op.Edge != nil && ok {
		e := op.Edge
		b = append(b, `,"edge":{"id":`...)
		b, ok = appendPlainString(b, e.ID)
		for _, f := range [...]struct{ name, v string }{{`,"kind":`, e.Kind}, {`,"source":`, e.Source}, {`,"target":`, e.Target}, {`,"label":`, e.Label}} {
			b = append(b, f.name...)
			b, ok = appendPlainStringIf(b, f.v, ok)
		}
		b = append(b, `,"data":`...)
		b, ok = appendRawIf(b, e.Data, ok)
		b = append(b, '}')
	}
	if len(op.Patch) > 0 && ok {
		b = append(b, `,"patch":`...)
		b, ok = appendRawIf(b, op.Patch, ok)
	}
	if op.SnapshotID != "" && ok {
		b = append(b, `,"snapshot_id":`...)
		b, ok = appendPlainString(b, op.SnapshotID)
	}
	return append(b, '}'), ok
}

// appendPlainString writes s quoted when json.Marshal would write it byte
// for byte (nothing it escapes); ok is false otherwise.
func appendPlainString(b []byte, s string) ([]byte, bool) {
	c := canonicalScanner{b: append(append(b, '"'), s...), i: len(b)}
	c.b = append(c.b, '"')
	if _, ok := c.str(); !ok || c.i != len(c.b) {
		return b, false
	}
	return c.b, true
}

func appendPlainStringIf(b []byte, s string, ok bool) ([]byte, bool) {
	if !ok {
		return b, false
	}
	return appendPlainString(b, s)
}

// appendFloatIf writes f as json.Marshal does when that needs no exponent.
func appendFloatIf(b []byte, f float64, ok bool) ([]byte, bool) {
	if abs := math.Abs(f); !ok || math.IsNaN(f) || math.IsInf(f, 0) || (abs != 0 && (abs < 1e-6 || abs >= 1e21)) {
		return b, false
	}
	return strconv.AppendFloat(b, f, 'f', -1, 64), true
}

// appendRawIf writes raw when it is canonical (json.Marshal writes a
// json.RawMessage compacted and HTML-escaped, which leaves canonical JSON
// as it is); nil is null.
func appendRawIf(b []byte, raw json.RawMessage, ok bool) ([]byte, bool) {
	if !ok {
		return b, false
	}
	if raw == nil {
		return append(b, "null"...), true
	}
	c := canonicalScanner{b: raw}
	if !c.value(0) || c.i != len(raw) {
		return b, false
	}
	return append(b, raw...), true
}

// appendCanonical writes v, a value as decodeJSON makes them (maps, slices,
// strings, json.Number, bools, nil), exactly as json.Marshal does when
// that needs no escaping: keys sorted, strings and numbers as they are.
// ok is false for anything else (a string json.Marshal would escape, a
// number it would refuse, nesting deeper than maxFastDepth); the caller
// then uses json.Marshal.
func appendCanonical(b []byte, v any) ([]byte, bool) {
	return appendCanonicalValue(b, v, 0)
}

func appendCanonicalValue(b []byte, v any, depth int) ([]byte, bool) {
	if depth > maxFastDepth {
		return b, false
	}
	switch t := v.(type) {
	case nil:
		return append(b, "null"...), true
	case bool:
		if t {
			return append(b, "true"...), true
		}
		return append(b, "false"...), true
	case string:
		return appendPlainString(b, t)
	case json.Number:
		c := canonicalScanner{b: []byte(t)}
		if len(t) == 0 || !c.number() || c.i != len(t) {
			return b, false
		}
		return append(b, t...), true
	case []any:
		b = append(b, '[')
		for i, x := range t {
			if i > 0 {
				b = append(b, ',')
			}
			var ok bool
			if b, ok = appendCanonicalValue(b, x, depth+1); !ok {
				return b, false
			}
		}
		return append(b, ']'), true
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			var ok bool
			if b, ok = appendPlainString(b, k); !ok {
				return b, false
			}
			b = append(b, ':')
			if b, ok = appendCanonicalValue(b, t[k], depth+1); !ok {
				return b, false
			}
		}
		return append(b, '}'), true
	}
	return b, false
}

// marshalCanonical is json.Marshal of a decoded value, without reflection
// when appendCanonical can write it.
func marshalCanonical(v any) ([]byte, error) {
	if b, ok := appendCanonical(nil, v); ok {
		return b, nil
	}
	return json.Marshal(v)
}
