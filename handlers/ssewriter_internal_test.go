package handlers

import (
	"bytes"
	"testing"
	"time"
)

// deadlineSink records the write deadlines it is given.
type deadlineSink struct {
	bytes.Buffer
	deadlines []time.Time
}

func (d *deadlineSink) setWriteDeadline(t time.Time) error {
	d.deadlines = append(d.deadlines, t)
	return nil
}

func (d *deadlineSink) flush() error { return nil }

// Every batch's writes have at least the write timeout before their
// deadline, while a busy stream moves its deadline only now and then.
func TestBatchesKeepTheirWriteTimeout(t *testing.T) {
	const timeout = 200 * time.Millisecond
	sink := &deadlineSink{}
	w := newSSEWriter(sink, timeout, time.Second, nil)
	end := time.Now().Add(3 * timeout)
	for batch := 0; time.Now().Before(end); batch++ {
		before := time.Now()
		w.comment("ping")
		if len(sink.deadlines) == 0 {
			t.Fatal("the first batch was written without a deadline")
		}
		if left := sink.deadlines[len(sink.deadlines)-1].Sub(before); left < timeout {
			t.Fatalf("batch %d was written with %v before its deadline, want at least the timeout %v", batch, left, timeout)
		}
		if err := w.flush(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	// The deadline moves only when less than the timeout is left, and then
	// a slack (a tenth of the timeout) further: about 30 times over three
	// timeouts, not once per batch.
	for i := 1; i < len(sink.deadlines); i++ {
		if gap := sink.deadlines[i].Sub(sink.deadlines[i-1]); gap <= timeout/deadlineSlack {
			t.Fatalf("deadline %d moved by %v, want more than the slack %v: it is moved at every flush", i, gap, timeout/deadlineSlack)
		}
	}
}
