package sseframe_test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/r3labs/sse/v2"

	"github.com/liveshare/liveshare/internal/sseframe"
)

// events covers every field and the data shapes LiveShare writes: JSON on
// one line, data with newlines (split over data: lines), an empty id, a
// comment alone.
var events = []sse.Event{
	{ID: []byte("0"), Event: []byte("snapshot"), Retry: []byte("2000"), Data: []byte(`{"version":0,"state":{"nodes":[],"edges":[]}}`)},
	{ID: []byte("17"), Event: []byte("ops"), Data: []byte(`{"version":17,"ops":[{"seq":17}]}`)},
	{Event: []byte("presence"), Data: []byte(`{"users":[]}`)},
	{ID: []byte("18"), Event: []byte("ops"), Data: []byte("line one\nline two\n\nlast")},
	{Comment: []byte("ping")},
	{ID: []byte("19"), Data: []byte(`{}`), Comment: []byte("both")},
}

// TestSameBytesAsR3labs: what sseframe lays out is byte for byte what
// r3labs/sse's own server writes for the same events (SplitData on).
func TestSameBytesAsR3labs(t *testing.T) {
	srv := sse.New()
	srv.AutoReplay, srv.AutoStream, srv.SplitData = false, false, true
	registered := make(chan struct{})
	srv.OnSubscribe = func(string, *sse.Subscriber) { close(registered) }
	srv.CreateStream("s")
	ts := httptest.NewServer(srv)
	defer ts.Close()
	defer srv.Close()

	resp, err := http.Get(ts.URL + "?stream=s")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	select {
	case <-registered:
	case <-time.After(5 * time.Second):
		t.Fatal("r3labs did not register the subscriber")
	}
	var want []byte
	for i := range events {
		ev := events[i]
		srv.Publish("s", &ev)
		want = sseframe.Append(want, &events[i])
	}
	srv.Publish("s", &sse.Event{}) // no data, no comment: r3labs ends the stream
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("r3labs wrote\n%q\nsseframe laid out\n%q", got, want)
	}
}

// TestWritePieces: data given in pieces reads back as the pieces laid end
// to end, and Write writes nothing for an event without data or comment.
func TestWritePieces(t *testing.T) {
	whole := sseframe.Append(nil, &sse.Event{ID: []byte("5"), Event: []byte("ops"), Data: []byte(`{"a":[1,2]}`)})
	var b bytes.Buffer
	if err := sseframe.Write(&b, &sse.Event{ID: []byte("5"), Event: []byte("ops"), Data: []byte(`{"a":[`)},
		[]byte("1"), []byte(","), nil, []byte("2"), []byte("]}")); err != nil {
		t.Fatal(err)
	}
	if got := b.String(); got != string(whole) {
		t.Errorf("pieces: %q, want %q", got, whole)
	}
	if got, want := string(sseframe.Append(nil, &sse.Event{Data: []byte("a")}, []byte("b\nc"))), "id: \ndata: ab\ndata: c\n\n"; got != want {
		t.Errorf("a newline in a later piece: %q, want %q", got, want)
	}
	if got := sseframe.Append(nil, &sse.Event{ID: []byte("1"), Event: []byte("x")}); len(got) != 0 {
		t.Errorf("an event without data or comment: %q, want nothing", got)
	}
}

// TestWriteStopsAtFirstError: a failed write is returned and nothing more
// is written after it.
func TestWriteStopsAtFirstError(t *testing.T) {
	w := &failAfter{n: 2}
	err := sseframe.Write(w, &sse.Event{ID: []byte("1"), Event: []byte("ops"), Data: []byte("{}")})
	if !errors.Is(err, errBroken) || w.calls != 3 {
		t.Errorf("err %v after %d writes, want errBroken after the third", err, w.calls)
	}
}

var errBroken = errors.New("broken pipe")

type failAfter struct{ n, calls int }

func (f *failAfter) Write(p []byte) (int, error) {
	f.calls++
	if f.calls > f.n {
		return 0, errBroken
	}
	return len(p), nil
}
