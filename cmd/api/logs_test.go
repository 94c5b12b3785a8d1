package main_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/liveshare/liveshare/store/storetest"
)

// TestRequestLogLines: every line a request causes names its request id,
// including the room load it triggers below the handlers; each request has
// one access line; a stream logs its start and its end with its duration
// and events sent.
func TestRequestLogLines(t *testing.T) {
	t.Parallel()
	srv := startServer(t, storetest.Config(t, "sqlite"), "LIVESHARE_LOG_LEVEL=info")
	rm := srv.createRoom("logs")
	srv.kill() // the next request must load the room
	srv = srv.restart()

	r := srv.must("POST", "/rooms/"+rm.ID+"/ops", addNodes("n", 1), "X-Request-Id", "trace-ops-1")
	if r.Status != http.StatusOK {
		t.Fatalf("post ops: %d %s", r.Status, r.Body)
	}
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/rooms/"+rm.ID+"/events", nil)
	req.Header.Set("X-Request-Id", "trace-stream-1")
	events := openStreamReq(t, req)
	waitEvent(t, events, "ops")
	cancel()

	lines := func(id string) []string {
		var out []string
		for l := range strings.SplitSeq(srv.logs.String(), "\n") {
			if strings.Contains(l, "request_id="+id) {
				out = append(out, l)
			}
		}
		return out
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(strings.Join(lines("trace-stream-1"), "\n"), `msg="stream ended"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no stream ended line for the stream:\n%s", srv.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	ops := strings.Join(lines("trace-ops-1"), "\n")
	for _, want := range []string{`msg="room loaded"`, `msg=request`, `method=POST`, `route=/rooms/{roomID}/ops status=200`} {
		if !strings.Contains(ops, want) {
			t.Errorf("the ops request's lines lack %q:\n%s", want, ops)
		}
	}
	if n := strings.Count(ops, "msg=request "); n != 1 {
		t.Errorf("%d access lines for one request, want 1", n)
	}
	stream := strings.Join(lines("trace-stream-1"), "\n")
	for _, want := range []string{`msg="stream started"`, `msg="stream ended"`, `duration=`, `events=`} {
		if !strings.Contains(stream, want) {
			t.Errorf("the stream's lines lack %q:\n%s", want, stream)
		}
	}
}
