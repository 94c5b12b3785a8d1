package graph

import (
	"bytes"
	"math"
	"strconv"
	"unicode/utf8"
)

// maxFastDepth bounds the nesting the fast path follows; deeper data takes
// the slow path, which has its own limits.
const maxFastDepth = 64

// isCanonicalObject reports whether raw is already a JSON object in the
// form canonicalData produces — what json.Marshal writes for it: no
// whitespace, object keys strictly increasing (sorted, no duplicates),
// numbers valid and finite in float64 (kept verbatim), strings free of
// anything json.Marshal would escape. It is conservative: false means only
// "not sure", and the caller then takes the slow path. Data coming back
// from snapshots and from well-behaved clients is canonical, so rooms load
// and ops validate without decoding and re-encoding every element's data.
func isCanonicalObject(raw []byte) bool {
	if len(raw) == 0 || raw[0] != '{' {
		return false
	}
	c := canonicalScanner{b: raw}
	return c.value(0) && c.i == len(raw)
}

type canonicalScanner struct {
	b []byte
	i int
	// loose accepts object keys in any order, duplicates included: the
	// scan then only says the value is compact JSON of canonical tokens.
	loose bool
}

func (c *canonicalScanner) value(depth int) bool {
	if c.i >= len(c.b) || depth > maxFastDepth {
		return false
	}
	switch ch := c.b[c.i]; {
	case ch == '{':
		return c.object(depth)
	case ch == '[':
		return c.array(depth)
	case ch == '"':
		_, ok := c.str()
		return ok
	case ch == 't':
		return c.literal("true")
	case ch == 'f':
		return c.literal("false")
	case ch == 'n':
		return c.literal("null")
	case ch == '-' || (ch >= '0' && ch <= '9'):
		return c.number()
	}
	return false
}

func (c *canonicalScanner) literal(lit string) bool {
	if !bytes.HasPrefix(c.b[c.i:], []byte(lit)) {
		return false
	}
	c.i += len(lit)
	return true
}

func (c *canonicalScanner) object(depth int) bool {
	c.i++ // {
	if c.i < len(c.b) && c.b[c.i] == '}' {
		c.i++
		return true
	}
	var prev []byte
	for first := true; ; first = false {
		key, ok := c.str()
		if !ok || (!first && !c.loose && bytes.Compare(prev, key) >= 0) {
			return false
		}
		prev = key
		if c.i >= len(c.b) || c.b[c.i] != ':' {
			return false
		}
		c.i++
		if !c.value(depth + 1) {
			return false
		}
		if c.i >= len(c.b) {
			return false
		}
		switch c.b[c.i] {
		case ',':
			c.i++
		case '}':
			c.i++
			return true
		default:
			return false
		}
	}
}

func (c *canonicalScanner) array(depth int) bool {
	c.i++ // [
	if c.i < len(c.b) && c.b[c.i] == ']' {
		c.i++
		return true
	}
	for {
		if !c.value(depth + 1) {
			return false
		}
		if c.i >= len(c.b) {
			return false
		}
		switch c.b[c.i] {
		case ',':
			c.i++
		case ']':
			c.i++
			return true
		default:
			return false
		}
	}
}

// str scans a string that json.Marshal would write byte for byte as it is:
// no escapes, no control characters, none of < > & (which it escapes for
// HTML), valid UTF-8 without U+2028 and U+2029. It returns the contents.
func (c *canonicalScanner) str() ([]byte, bool) {
	if c.i >= len(c.b) || c.b[c.i] != '"' {
		return nil, false
	}
	start := c.i + 1
	for i := start; i < len(c.b); {
		ch := c.b[i]
		switch {
		case ch == '"':
			c.i = i + 1
			return c.b[start:i], true
		case ch < 0x20, ch == '\\', ch == '<', ch == '>', ch == '&':
			return nil, false
		case ch < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRune(c.b[i:])
			if r == utf8.RuneError || r == '\u2028' || r == '\u2029' {
				return nil, false
			}
			i += size
		}
	}
	return nil, false
}

// number scans a JSON number whose float64 value is finite.
func (c *canonicalScanner) number() bool {
	start := c.i
	b := c.b
	i := c.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return false
		}
	}
	f, err := strconv.ParseFloat(string(b[start:i]), 64)
	if err != nil || math.IsInf(f, 0) {
		return false
	}
	c.i = i
	return true
}
