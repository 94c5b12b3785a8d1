package handlers

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
	"time"
)

// An HTTP/1.1 event stream takes its connection over from net/http once its
// subscription succeeded: it writes the status line and headers itself,
// frames the body as chunks, and the handler returns, so that net/http's
// goroutine and buffers for the connection go away. An idle stream then
// holds its own goroutine, a small goroutine that notices the client
// leaving, and no buffer (docs/ARCHITECTURE.md, docs/BENCHMARKS.md).
//
// What the handlers and middleware did when the handler returned (the
// stream limit's slot, the access log line, the member watch) is done when
// the stream ends instead: they hand it to afterResponse, which runs it at
// once for every other request.

// handoff is what a request whose stream took its connection over still
// owes when that stream ends. requestContext, the outermost middleware,
// starts it on a goroutine of its own once every handler and middleware
// has returned.
type handoff struct {
	ctx    context.Context
	stream func()   // the rest of the stream
	ends   []func() // what handlers and middleware do at the end, innermost first
	done   func()   // called last (the API's count of taken-over streams)
	bytes  int64    // written on the connection, for the access log
}

// handOff makes stream the rest of the request: it runs after the handler
// and every middleware returned, followed by what they left for the end,
// then done.
func handOff(ctx context.Context, stream, done func()) {
	infoFrom(ctx).handoff = &handoff{ctx: ctx, stream: stream, done: done}
}

// takenOver reports whether the request's connection was taken over by its
// stream.
func takenOver(ctx context.Context) *handoff {
	if info := infoFrom(ctx); info != nil {
		return info.handoff
	}
	return nil
}

// afterResponse runs f now, or when the request's stream took its
// connection over, when that stream ends.
func afterResponse(ctx context.Context, f func()) {
	if h := takenOver(ctx); h != nil {
		h.ends = append(h.ends, f)
		return
	}
	f()
}

// run serves the rest of the request; a panic is logged as the recoverer
// middleware would (the stream closes its connection on the way out).
func (h *handoff) run() {
	defer h.done()
	h.protect("panic in event stream", h.stream)
	for _, f := range h.ends {
		h.protect("panic after event stream", f)
	}
}

func (h *handoff) protect(what string, f func()) {
	defer func() {
		if rec := recover(); rec != nil {
			loggerFrom(h.ctx).Error(what, "panic", fmt.Sprint(rec), "stack", string(debug.Stack()))
		}
	}()
	f()
}

// canTakeOver reports whether the request's stream may take its connection
// over: HTTP/1.1 (HTTP/2 multiplexes its connection, HTTP/1.0 has no
// chunked framing), through requestContext (which starts the handoff), on
// a writer that can hijack (not httptest's recorder).
func canTakeOver(w http.ResponseWriter, r *http.Request) bool {
	if r.ProtoMajor != 1 || r.ProtoMinor < 1 || infoFrom(r.Context()) == nil {
		return false
	}
	for {
		if _, ok := w.(http.Hijacker); ok {
			return true
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return false
		}
		w = u.Unwrap()
	}
}

// sseSink is where a stream's bytes go: the response (responseSink), or the
// connection taken over from net/http (connSink).
type sseSink interface {
	io.Writer
	// setWriteDeadline bounds the writes of the batch being written.
	setWriteDeadline(t time.Time) error
	// flush sends what was written.
	flush() error
}

// responseSink writes through net/http's response: its buffer, its
// chunking, its flush.
type responseSink struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func newResponseSink(w http.ResponseWriter) *responseSink {
	// The controller works on the innermost writer: middleware wrappers
	// offer Flush without an error, which would hide a failed flush.
	inner := w
	for {
		u, ok := inner.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			break
		}
		inner = u.Unwrap()
	}
	return &responseSink{w: w, rc: http.NewResponseController(inner)}
}

func (s *responseSink) Write(p []byte) (int, error)        { return s.w.Write(p) }
func (s *responseSink) setWriteDeadline(t time.Time) error { return s.rc.SetWriteDeadline(t) }
func (s *responseSink) flush() error                       { return s.rc.Flush() }

// Chunk buffers: a connSink takes one from its pool for a batch and gives
// it back at the flush. Each has room for a chunk's size line in front of
// chunkData bytes and the CRLF behind; a write that does not fit goes out
// as a chunk of its own, never copied.
const (
	chunkData     = 4 << 10
	chunkHeadRoom = len("1000\r\n") // the size line of chunkData bytes at most
)

func newChunkPool() *sync.Pool {
	return &sync.Pool{New: func() any {
		b := make([]byte, chunkHeadRoom, chunkHeadRoom+chunkData+2)
		return &b
	}}
}

var crlf = []byte("\r\n")

// connSink writes a stream on a connection taken over from net/http: the
// status line and headers, then the body in HTTP/1.1 chunks. It is used by
// the stream's goroutine only.
type connSink struct {
	conn  net.Conn
	pool  *sync.Pool
	head  []byte  // the status line and headers, until the first flush sent them
	buf   *[]byte // the batch being written (chunkHeadRoom free in front); nil between batches
	bytes int64   // body bytes written, for the access log
}

// takeOver takes the request's connection from net/http and returns the
// sink that writes the response on it, with the status line and headers of
// the response (200, w's headers, chunked) waiting for the first flush.
// It must be called only when canTakeOver. Bytes the client sent after the
// request (a pipelined request) are dropped: a request behind an event
// stream is never answered, and the connection closes when the stream ends.
func takeOver(w http.ResponseWriter, pool *sync.Pool) (*connSink, error) {
	h := w.Header()
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, fmt.Errorf("take the stream's connection over: %w", err)
	}
	if n := rw.Reader.Buffered(); n > 0 {
		_, _ = rw.Reader.Discard(n)
	}
	return &connSink{conn: conn, pool: pool, head: responseHead(h, time.Now())}, nil
}

// responseHead is the status line and headers of a taken-over stream: what
// the handlers and middleware set on the response, chunked. The connection
// closes when the stream ends (net/http cannot take it back), and says so.
func responseHead(h http.Header, now time.Time) []byte {
	h = h.Clone()
	h.Del("Content-Length")
	h.Set("Transfer-Encoding", "chunked")
	h.Set("Connection", "close")
	if _, ok := h["Date"]; !ok {
		h.Set("Date", now.UTC().Format(http.TimeFormat))
	}
	b := &appendBuffer{b: make([]byte, 0, 512)}
	b.b = append(b.b, "HTTP/1.1 200 OK\r\n"...)
	_ = h.Write(b) // an appendBuffer never fails
	b.b = append(b.b, crlf...)
	return b.b
}

type appendBuffer struct{ b []byte }

func (a *appendBuffer) Write(p []byte) (int, error) {
	a.b = append(a.b, p...)
	return len(p), nil
}

func (c *connSink) setWriteDeadline(t time.Time) error { return c.conn.SetWriteDeadline(t) }

func (c *connSink) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil // an empty chunk would end the body
	}
	if c.buf == nil {
		c.buf = c.pool.Get().(*[]byte)
		*c.buf = (*c.buf)[:chunkHeadRoom]
	}
	if b := *c.buf; len(b)+len(p) <= chunkHeadRoom+chunkData {
		*c.buf = append(b, p...)
		return len(p), nil
	}
	// p does not fit: what waits and p go out now, in one writev, p as a
	// chunk of its own.
	var size [20]byte
	out := c.pending(make(net.Buffers, 0, 5))
	out = append(out, chunkSize(size[:0], len(p)), p, crlf)
	err := c.send(out)
	*c.buf = (*c.buf)[:chunkHeadRoom]
	if err != nil {
		return 0, err
	}
	c.bytes += int64(len(p))
	return len(p), nil
}

// chunk frames the buffered bytes as a chunk and returns it; nil when
// nothing is buffered.
func (c *connSink) chunk() []byte {
	if c.buf == nil || len(*c.buf) == chunkHeadRoom {
		return nil
	}
	b := *c.buf
	n := len(b) - chunkHeadRoom
	var size [20]byte
	line := chunkSize(size[:0], n)
	start := chunkHeadRoom - len(line)
	copy(b[start:], line)
	b = append(b, crlf...)
	*c.buf = b
	c.bytes += int64(n)
	return b[start:]
}

// pending appends to out what waits to be sent: the head, until it went,
// and the buffered bytes as a chunk.
func (c *connSink) pending(out net.Buffers) net.Buffers {
	if c.head != nil {
		out = append(out, c.head)
	}
	if chunk := c.chunk(); chunk != nil {
		out = append(out, chunk)
	}
	return out
}

// send writes out in one writev; the head is sent with the first write
// that succeeds.
func (c *connSink) send(out net.Buffers) error {
	if len(out) == 0 {
		return nil
	}
	_, err := out.WriteTo(c.conn)
	if err == nil {
		c.head = nil
	}
	return err
}

func chunkSize(dst []byte, n int) []byte {
	return append(strconv.AppendInt(dst, int64(n), 16), crlf...)
}

// flush sends the batch and gives its buffer back: an idle stream holds
// none.
func (c *connSink) flush() error {
	var err error
	if c.head != nil {
		err = c.send(c.pending(make(net.Buffers, 0, 2)))
	} else if chunk := c.chunk(); chunk != nil {
		_, err = c.conn.Write(chunk) // the usual batch: one write, nothing allocated
	}
	if c.buf != nil {
		*c.buf = (*c.buf)[:chunkHeadRoom]
		c.pool.Put(c.buf)
		c.buf = nil
	}
	return err
}

// end closes the connection; when the stream ended cleanly, after the
// chunk that ends the body, written within timeout.
func (c *connSink) end(clean bool, timeout time.Duration) {
	if clean {
		_ = c.conn.SetWriteDeadline(time.Now().Add(timeout))
		if c.flush() == nil {
			_, _ = c.conn.Write([]byte("0\r\n\r\n"))
		}
	} else if c.buf != nil {
		c.pool.Put(c.buf)
		c.buf = nil
	}
	_ = c.conn.Close()
}

// awaitClose returns when the client closed the connection (or it was
// closed here). Anything the client sends meanwhile is read and dropped:
// a request behind an event stream is never answered.
func (c *connSink) awaitClose() {
	var b [1]byte
	for {
		if _, err := c.conn.Read(b[:]); err != nil {
			return
		}
	}
}
