package handlers_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/liveshare/liveshare/handlers"
	"github.com/liveshare/liveshare/room"
	"github.com/liveshare/liveshare/snapshot"
	"github.com/liveshare/liveshare/store"
	"github.com/liveshare/liveshare/store/storetest"
)

// apiServer is the API on an httptest server, kept as an *handlers.API so
// that a test can wait for its streams, with its log lines.
type apiServer struct {
	*httptest.Server
	API   *handlers.API
	Store *store.Store
	Rooms *room.Manager
	done  chan struct{}
	logs  *lockedBuffer
}

// startAPI serves the API; start starts the server (nil: plain HTTP/1.1).
func startAPI(t *testing.T, st *store.Store, limits handlers.Limits, start func(*httptest.Server)) *apiServer {
	t.Helper()
	snaps := snapshot.NewRegistry(st, snapshot.Config{Interval: time.Hour, Keep: 3, MaxBytes: 10 << 20})
	rooms := room.NewManager(st, room.Options{Snapshots: snaps})
	s := &apiServer{Store: st, Rooms: rooms, done: make(chan struct{}), logs: &lockedBuffer{}}
	cfg := handlers.Config{
		Store: st, Rooms: rooms, Snapshots: snaps, Limits: limits,
		Logger:  slog.New(slog.NewTextHandler(s.logs, nil)),
		Streams: handlers.StreamConfig{Done: s.done},
	}
	s.API = handlers.NewAPI(cfg)
	s.Server = httptest.NewUnstartedServer(s.API.Router(cfg))
	if start == nil {
		s.Start()
	} else {
		start(s.Server)
	}
	t.Cleanup(s.stop)
	return s
}

// stop ends the streams as graceful shutdown does: Done, then the server,
// then the streams that took their connections over.
func (s *apiServer) stop() {
	select {
	case <-s.done:
	default:
		close(s.done)
	}
	s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = s.API.WaitStreams(ctx)
}

func (s *apiServer) createRoom(t *testing.T) string {
	t.Helper()
	rm, err := s.Store.CreateRoom(context.Background(), "takeover")
	if err != nil {
		t.Fatal(err)
	}
	return rm.ID
}

func (s *apiServer) do(t *testing.T, method, path, body string) int {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func (s *apiServer) subscribers(roomID string) int {
	rm, ok := s.Rooms.Loaded(roomID)
	if !ok {
		return 0
	}
	return rm.Subscribers()
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// rawConn reads everything a server sends on one connection.
type rawConn struct {
	net.Conn
	got  lockedBuffer
	done chan struct{} // closed at EOF or a read error
	err  error
}

func dialRaw(t *testing.T, addr, request string) *rawConn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &rawConn{Conn: conn, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		_, c.err = io.Copy(&c.got, conn)
	}()
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *rawConn) waitFor(t *testing.T, s string) {
	t.Helper()
	waitFor(t, 10*time.Second, fmt.Sprintf("%q on the wire", s), func() bool { return strings.Contains(c.got.String(), s) })
}

func (c *rawConn) waitEOF(t *testing.T) []byte {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("the server did not close the connection; got:\n%s", c.got.String())
	}
	if c.err != nil {
		t.Fatalf("read: %v", c.err)
	}
	return []byte(c.got.String())
}

// TestTakenOverStreamOnTheWire: an HTTP/1.1 stream's connection carries a
// valid HTTP/1.1 response — the stream's headers and the middleware's,
// chunked — whose body ends with the last chunk when the server ends the
// stream, after which the connection closes. A request pipelined behind
// the stream is never answered. The access line is written once, when the
// stream ended, with the bytes it sent.
func TestTakenOverStreamOnTheWire(t *testing.T) {
	st := storetest.Open(t, "sqlite")
	s := startAPI(t, st, handlers.Limits{}, nil)
	roomID := s.createRoom(t)

	c := dialRaw(t, s.Listener.Addr().String(),
		"GET /rooms/"+roomID+"/events HTTP/1.1\r\nHost: liveshare.test\r\nX-Request-Id: wire-1\r\n\r\n"+
			"GET /healthz HTTP/1.1\r\nHost: liveshare.test\r\n\r\n")
	c.waitFor(t, "event: snapshot")
	if code := s.do(t, "POST", "/rooms/"+roomID+"/ops", addNodes("a")); code != http.StatusOK {
		t.Fatalf("post ops: %d", code)
	}
	c.waitFor(t, "event: ops")
	if code := s.do(t, "DELETE", "/rooms/"+roomID, ""); code != http.StatusNoContent {
		t.Fatalf("delete room: %d", code)
	}
	raw := c.waitEOF(t)

	br := bufio.NewReader(bytes.NewReader(raw))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("not an HTTP response: %v\n%s", err, raw)
	}
	if resp.Proto != "HTTP/1.1" || resp.StatusCode != http.StatusOK {
		t.Errorf("status line %s %d", resp.Proto, resp.StatusCode)
	}
	if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" || resp.ContentLength != -1 {
		t.Errorf("transfer encoding %v, content length %d: want chunked alone", resp.TransferEncoding, resp.ContentLength)
	}
	for k, want := range map[string]string{
		"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no",
		"X-Request-Id": "wire-1", "X-Content-Type-Options": "nosniff",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s %q, want %q", k, got, want)
		}
	}
	if resp.Header.Get("Date") == "" {
		t.Error("no Date header")
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("the chunked body does not end with its last chunk: %v\n%s", err, raw)
	}
	if rest, _ := io.ReadAll(br); len(rest) > 0 {
		t.Errorf("bytes after the response (the pipelined request answered?): %q", rest)
	}
	last := -1
	for _, name := range []string{"snapshot", "ops", "room_deleted"} {
		i := bytes.Index(body, []byte("\nevent: "+name+"\n"))
		if i <= last {
			t.Fatalf("event %s missing or out of order in:\n%s", name, body)
		}
		last = i
	}

	var access []string
	waitFor(t, 5*time.Second, "the stream's access line", func() bool {
		access = access[:0]
		for l := range strings.SplitSeq(s.logs.String(), "\n") {
			if strings.Contains(l, "request_id=wire-1") && strings.Contains(l, "msg=request ") {
				access = append(access, l)
			}
		}
		return len(access) > 0
	})
	logs := s.logs.String()
	if len(access) != 1 {
		t.Fatalf("%d access lines for the stream, want 1:\n%s", len(access), logs)
	}
	for _, want := range []string{"status=200", "route=/rooms/{roomID}/events", "bytes=" + strconv.Itoa(len(body)) + " "} {
		if !strings.Contains(access[0], want) {
			t.Errorf("access line lacks %q: %s", want, access[0])
		}
	}
	if strings.Index(logs, access[0]) < strings.Index(logs, `msg="stream ended"`) {
		t.Errorf("the access line came before the stream ended:\n%s", logs)
	}
}

// TestTakenOverStreamClientGone: a client that closes its connection is
// noticed at once: the stream leaves the room and gives its slot back, so a
// stream refused at the server's cap opens.
func TestTakenOverStreamClientGone(t *testing.T) {
	st := storetest.Open(t, "sqlite")
	s := startAPI(t, st, handlers.Limits{MaxStreams: 1}, nil)
	roomID := s.createRoom(t)
	url := s.URL + "/rooms/" + roomID + "/events"

	first := subscribeWith(t, url, nil)
	first.nextNamed(t, "snapshot", 5*time.Second)
	if c, resp := subscribeURL(t, url, nil); c != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("second stream past a cap of 1: %d, want 503", resp.StatusCode)
	} else {
		resp.Body.Close()
	}
	first.Close()
	waitFor(t, 10*time.Second, "the closed stream to leave the room", func() bool { return s.subscribers(roomID) == 0 })
	waitFor(t, 10*time.Second, "a stream to open in the freed slot", func() bool {
		c, resp := subscribeURL(t, url, nil)
		if c == nil {
			resp.Body.Close()
			return false
		}
		c.nextNamed(t, "snapshot", 5*time.Second)
		return true
	})
}

// TestStreamOverHTTP2: over HTTP/2, where a connection carries many
// requests, the stream is served through net/http as before.
func TestStreamOverHTTP2(t *testing.T) {
	st := storetest.Open(t, "sqlite")
	s := startAPI(t, st, handlers.Limits{}, func(srv *httptest.Server) {
		srv.EnableHTTP2 = true
		srv.StartTLS()
	})
	roomID := s.createRoom(t)
	resp, err := s.Client().Get(s.URL + "/rooms/" + roomID + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %d, want HTTP/2 200", resp.Proto, resp.StatusCode)
	}
	if got := resp.Header.Get("Content-Type"); got != "text/event-stream" {
		t.Errorf("Content-Type %q", got)
	}
	lines := make(chan string, 100)
	ended := make(chan error, 1)
	go func() {
		defer close(lines)
		br := bufio.NewReader(resp.Body)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				ended <- err
				return
			}
			lines <- strings.TrimSuffix(line, "\n")
		}
	}()
	await := func(want string) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case line, ok := <-lines:
				if !ok {
					t.Fatalf("the stream ended before %q: %v", want, <-ended)
				}
				if line == want {
					return
				}
			case <-timeout:
				t.Fatalf("no %q within 10s", want)
			}
		}
	}
	await("event: snapshot")
	if code := s.do(t, "POST", "/rooms/"+roomID+"/ops", addNodes("a")); code != http.StatusOK {
		t.Fatalf("post ops: %d", code)
	}
	await("event: ops")
	close(s.done)
	for range lines {
	}
	if err := <-ended; err != io.EOF {
		t.Errorf("the stream ended with %v, want its end (EOF)", err)
	}
}

// TestStreamOverHTTP10: HTTP/1.0 has no chunked framing; the stream is
// served through net/http, which ends it by closing the connection.
func TestStreamOverHTTP10(t *testing.T) {
	st := storetest.Open(t, "sqlite")
	s := startAPI(t, st, handlers.Limits{}, nil)
	roomID := s.createRoom(t)
	c := dialRaw(t, s.Listener.Addr().String(), "GET /rooms/"+roomID+"/events HTTP/1.0\r\nHost: liveshare.test\r\n\r\n")
	c.waitFor(t, "event: snapshot")
	close(s.done)
	raw := c.waitEOF(t)
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), nil)
	if err != nil {
		t.Fatalf("not an HTTP response: %v\n%s", err, raw)
	}
	if resp.StatusCode != http.StatusOK || len(resp.TransferEncoding) != 0 {
		t.Fatalf("%s %d %v, want 200 without chunks", resp.Proto, resp.StatusCode, resp.TransferEncoding)
	}
	if body, _ := io.ReadAll(resp.Body); !bytes.Contains(body, []byte("event: snapshot\n")) {
		t.Errorf("body %q", body)
	}
}

// TestWaitStreams: WaitStreams returns once every taken-over stream ended
// (graceful shutdown waits for them, as Shutdown does not); when its
// context ends first it closes their connections and still waits for them,
// so that no stream's goroutine outlives it.
func TestWaitStreams(t *testing.T) {
	st := storetest.Open(t, "sqlite") // its pool's goroutine outlives the check
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	s := startAPI(t, st, handlers.Limits{}, nil)
	roomID := s.createRoom(t)
	url := s.URL + "/rooms/" + roomID + "/events"
	open := func() []*sseClient {
		cs := make([]*sseClient, 3)
		for i := range cs {
			cs[i] = subscribeWith(t, url, nil)
			cs[i].nextNamed(t, "snapshot", 5*time.Second)
		}
		return cs
	}
	ended := func(c *sseClient) error {
		for range c.events {
		}
		return <-c.err
	}

	// Done not closed: the streams go on, WaitStreams gives up and cuts
	// them; they are over when it returns.
	cut := open()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	err := s.API.WaitStreams(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitStreams with open streams: %v, want the deadline", err)
	}
	if n := s.subscribers(roomID); n != 0 {
		t.Errorf("%d streams still in the room after WaitStreams returned", n)
	}
	for _, c := range cut {
		if err := ended(c); err != io.ErrUnexpectedEOF {
			t.Errorf("a cut stream ended with %v, want a body cut short", err)
		}
	}

	// Shutdown: Done ends the streams cleanly, WaitStreams waits for them.
	clean := open()
	close(s.done)
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.API.WaitStreams(ctx); err != nil {
		t.Fatalf("WaitStreams after Done: %v", err)
	}
	if n := s.subscribers(roomID); n != 0 {
		t.Errorf("%d streams still in the room after WaitStreams returned", n)
	}
	for _, c := range clean {
		if err := ended(c); err != io.EOF {
			t.Errorf("a stream ended by shutdown ended with %v, want its end (EOF)", err)
		}
	}
	s.Close()
	s.Client().CloseIdleConnections()
	http.DefaultClient.CloseIdleConnections()
}
