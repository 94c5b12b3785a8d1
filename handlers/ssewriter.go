package handlers

import (
	"errors"
	"os"
	"strconv"
	"time"

	"github.com/r3labs/sse/v2"

	"github.com/liveshare/liveshare/internal/sseframe"
	"github.com/liveshare/liveshare/metrics"
)

// sseWriter writes one stream's events in r3labs/sse's layout (sseframe),
// straight into its sink's buffer (the response's, or the taken-over
// connection's): shared event bytes are never copied per stream.
// Everything written between two flushes goes out at the flush, usually in
// one write(2), under a write deadline checked when the first event of the
// batch is written. It is used by the stream's own goroutine only.
//
// r3labs' Server is not used to write: its per-event hop through the
// stream goroutine, the subscriber channel and ServeHTTP (fmt.Fprintf, a
// flush per event, fmt's buffer holding a copy of each event) is what
// cost the fan-out its CPU and a 10 MB snapshot event a copy per stream;
// docs/BENCHMARKS.md has the measurement.
type sseWriter struct {
	w       sseSink
	timeout time.Duration
	metrics *metrics.Metrics

	retry    []byte    // the retry: advice, until an event with data carried it
	armed    bool      // the batch's write deadline is set
	deadline time.Time // the write deadline set last
	err      error     // the first failed write or flush; the stream is over

	ev        sse.Event   // reused for every event
	idBuf     [20]byte    // the id: of the event being written
	committed []time.Time // commit times of the live events in this batch
	written   int64       // events written since the stream began
}

func newSSEWriter(w sseSink, timeout, retry time.Duration, m *metrics.Metrics) *sseWriter {
	return &sseWriter{w: w, timeout: timeout, metrics: m,
		retry: strconv.AppendInt(nil, retry.Milliseconds(), 10)}
}

// arm makes sure, once per flush, that the batch's writes have at least
// the write timeout before their deadline (a write that fills the sink's
// buffer goes to the socket before the flush). The deadline is set
// deadlineSlack further out than that and moved only when less than the
// timeout is left: a busy stream sets it about once per slack, not at every
// flush, where setting it was measured at 3% of the server's CPU in a
// fan-out (docs/BENCHMARKS.md). A subscriber is thus cut between the
// timeout and the timeout plus the slack after the write it does not take.
func (s *sseWriter) arm() {
	if s.armed {
		return
	}
	s.armed = true
	now := time.Now()
	if s.deadline.Sub(now) >= s.timeout {
		return
	}
	s.deadline = now.Add(s.timeout + s.timeout/deadlineSlack)
	_ = s.w.setWriteDeadline(s.deadline)
}

// deadlineSlack: the deadline is set a deadlineSlack-th of the write
// timeout further out than the timeout (1 s of the default 10 s).
const deadlineSlack = 10

// event writes one event. id < 0 writes an empty id: line (r3labs always
// writes one; callers give every event the stream's position). data is
// laid end to end with more.
func (s *sseWriter) event(name string, id int64, data []byte, more ...[]byte) {
	if s.err != nil {
		return
	}
	s.arm()
	s.ev = sse.Event{Data: data, Event: []byte(name)}
	if id >= 0 {
		s.ev.ID = strconv.AppendInt(s.idBuf[:0], id, 10)
	}
	if s.retry != nil && (len(data) > 0 || anyData(more)) {
		s.ev.Retry, s.retry = s.retry, nil
	}
	s.err = sseframe.Write(s.w, &s.ev, more...)
	s.ev = sse.Event{}
	s.sent(name)
}

// frame writes an event framed once for every stream (room.Message.Frame),
// adding the retry advice to the stream's first event.
func (s *sseWriter) frame(name string, frame []byte) {
	if s.err != nil {
		return
	}
	s.arm()
	if s.retry == nil {
		_, s.err = s.w.Write(frame)
	} else {
		// The frame ends with the empty line: the advice goes before it.
		_, s.err = s.w.Write(frame[:len(frame)-1])
		for _, p := range [][]byte{[]byte("retry: "), s.retry, []byte("\n\n")} {
			if s.err == nil {
				_, s.err = s.w.Write(p)
			}
		}
		s.retry = nil
	}
	s.sent(name)
}

// comment writes a comment (": ping"), which keeps an idle stream open.
func (s *sseWriter) comment(text string) {
	if s.err != nil {
		return
	}
	s.arm()
	s.ev = sse.Event{Comment: []byte(text)}
	s.err = sseframe.Write(s.w, &s.ev)
	s.ev = sse.Event{}
}

func (s *sseWriter) sent(name string) {
	s.written++
	s.metrics.EventSent(name)
}

// committedAt records that the batch holds an event carrying ops committed
// at t: its flush observes the delay from commit to write.
func (s *sseWriter) committedAt(t time.Time) {
	if s.metrics != nil && !t.IsZero() {
		s.committed = append(s.committed, t)
	}
}

// flush sends the batch and returns the stream's error, if any: a write
// or flush that failed, or missed its deadline, ends the stream.
func (s *sseWriter) flush() error {
	if s.err == nil {
		s.arm()
		s.err = s.w.flush()
	}
	s.armed = false
	if s.err == nil {
		now := time.Now()
		for _, t := range s.committed {
			s.metrics.CommitToWrite(now.Sub(t))
		}
	}
	s.committed = s.committed[:0]
	if s.err != nil && errors.Is(s.err, os.ErrDeadlineExceeded) {
		s.metrics.SlowSubscriber(metrics.SlowWriteTimeout)
		s.err = errWriteTimeout
	}
	return s.err
}

// errWriteTimeout: the client did not take a batch within the write
// timeout (counted once, as a slow subscriber).
var errWriteTimeout = errors.New("event stream: write timed out")

func anyData(parts [][]byte) bool {
	for _, p := range parts {
		if len(p) > 0 {
			return true
		}
	}
	return false
}
