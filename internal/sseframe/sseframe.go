// Package sseframe lays Server-Sent Events out on the wire exactly as
// r3labs/sse/v2 writes them (its Event type, SplitData on): an id: line,
// one data: line per line of the data, event:, retry:, a comment, and the
// empty line that ends the event.
//
// LiveShare frames an event once per room and writes the same bytes to
// every stream (room.Message.Frame); events too large to copy, or made of
// shared pieces (merged ops events), are written piece by piece with Write,
// so that no stream ever holds its own copy of an event's data.
package sseframe

import (
	"bytes"
	"io"

	"github.com/r3labs/sse/v2"
)

var (
	idField    = []byte("id: ")
	dataField  = []byte("data: ")
	eventField = []byte("event: ")
	retryField = []byte("retry: ")
	comment    = []byte(": ")
	newline    = []byte("\n")
)

// Write writes ev to w. The event's data is ev.Data followed by more, laid
// end to end: pieces shared with other streams are written as they are,
// never copied into one slice. Like r3labs/sse, the id:, event: and retry:
// lines go out only for an event with data; an event with neither data nor
// a comment writes nothing (r3labs would end the stream on it).
func Write(w io.Writer, ev *sse.Event, more ...[]byte) error {
	fw := frameWriter{w: w}
	hasData := len(ev.Data) > 0
	for _, p := range more {
		hasData = hasData || len(p) > 0
	}
	if !hasData && len(ev.Comment) == 0 {
		return nil
	}
	if hasData {
		fw.put(idField, ev.ID, newline, dataField)
		fw.data(ev.Data)
		for _, p := range more {
			fw.data(p)
		}
		fw.put(newline)
		if len(ev.Event) > 0 {
			fw.put(eventField, ev.Event, newline)
		}
		if len(ev.Retry) > 0 {
			fw.put(retryField, ev.Retry, newline)
		}
	}
	if len(ev.Comment) > 0 {
		fw.put(comment, ev.Comment, newline)
	}
	fw.put(newline)
	return fw.err
}

// Append appends ev, laid out as Write lays it out, to dst.
func Append(dst []byte, ev *sse.Event, more ...[]byte) []byte {
	a := appender{b: dst}
	_ = Write(&a, ev, more...) // an appender never fails
	return a.b
}

type frameWriter struct {
	w   io.Writer
	err error
}

func (f *frameWriter) put(parts ...[]byte) {
	for _, p := range parts {
		if f.err != nil || len(p) == 0 {
			continue
		}
		_, f.err = f.w.Write(p)
	}
}

// data writes a piece of the data; a newline in it starts a new data: line
// (SplitData), so that a client reads the data back unchanged.
func (f *frameWriter) data(p []byte) {
	for {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			f.put(p)
			return
		}
		f.put(p[:i], newline, dataField)
		p = p[i+1:]
	}
}

type appender struct{ b []byte }

func (a *appender) Write(p []byte) (int, error) {
	a.b = append(a.b, p...)
	return len(p), nil
}
