package handlers_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/liveshare/liveshare/handlers"
	"github.com/liveshare/liveshare/room"
	"github.com/liveshare/liveshare/snapshot"
	"github.com/liveshare/liveshare/store"
)

// testServer is the real API over a real store on an httptest server.
type testServer struct {
	t         testing.TB
	URL       string
	Store     *store.Store
	Rooms     *room.Manager
	Snapshots *snapshot.Registry
	srv       *httptest.Server
	done      chan struct{}
}

type serverOptions struct {
	budget       int64
	queue        int
	writeTimeout time.Duration
	heartbeat    time.Duration
	auth         handlers.AuthConfig
	limits       handlers.Limits
	audit        handlers.AuditLog
}

func newTestServer(t testing.TB, st *store.Store, o serverOptions) *testServer {
	t.Helper()
	snaps := snapshot.NewRegistry(st, snapshot.Config{Interval: time.Hour, Keep: 3, MaxBytes: 10 << 20})
	rooms := room.NewManager(st, room.Options{QueueSize: o.queue, Snapshots: snaps, StateBudget: o.budget})
	done := make(chan struct{})
	h := handlers.New(handlers.Config{
		Store: st, Rooms: rooms, Snapshots: snaps, MaxBodyBytes: 4 << 20,
		Streams: handlers.StreamConfig{WriteTimeout: o.writeTimeout, Heartbeat: o.heartbeat, Done: done},
		Auth:    o.auth, Limits: o.limits, Audit: o.audit,
	})
	srv := httptest.NewServer(h)
	ts := &testServer{t: t, URL: srv.URL, Store: st, Rooms: rooms, Snapshots: snaps, srv: srv, done: done}
	t.Cleanup(ts.Close)
	return ts
}

// Close ends the streams, as graceful shutdown does, then the server.
func (s *testServer) Close() {
	select {
	case <-s.done:
	default:
		close(s.done)
	}
	s.srv.Close()
}

func (s *testServer) createRoom() string {
	s.t.Helper()
	rm, err := s.Store.CreateRoom(context.Background(), "events")
	if err != nil {
		s.t.Fatal(err)
	}
	return rm.ID
}

// post sends ops and returns the version the server acknowledged.
func (s *testServer) post(roomID, body string) (int64, error) {
	resp, err := http.Post(s.URL+"/rooms/"+roomID+"/ops", "application/json", strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("post ops: %d %s", resp.StatusCode, data)
	}
	var res struct {
		Version int64 `json:"version"`
	}
	if err := json.Unmarshal(data, &res); err != nil {
		return 0, err
	}
	return res.Version, nil
}

func addNodes(ids ...string) string {
	ops := make([]string, len(ids))
	for i, id := range ids {
		ops[i] = fmt.Sprintf(`{"op":"add_node","node":{"id":%q,"kind":"table"}}`, id)
	}
	return `{"ops":[` + strings.Join(ops, ",") + `]}`
}

// event is one parsed server-sent event.
type event struct {
	ID    string
	Name  string
	Data  string
	Retry string
	At    time.Time
}

// sseClient reads an event stream with a small parser of its own, so the
// tests check the bytes on the wire rather than a library's reading of them.
type sseClient struct {
	resp   *http.Response
	r      *bufio.Reader
	cancel context.CancelFunc
	events chan event
	err    chan error
}

// subscribe opens the stream of roomID; lastID "" sends no position.
func subscribe(t testing.TB, base, roomID, lastID, query string) (*sseClient, *http.Response) {
	t.Helper()
	h := http.Header{}
	if lastID != "" {
		h.Set("Last-Event-ID", lastID)
	}
	return subscribeURL(t, base+"/rooms/"+roomID+"/events"+query, h)
}

// subscribeWith opens the stream at url with header, failing the test
// unless it opens.
func subscribeWith(t testing.TB, url string, header http.Header) *sseClient {
	t.Helper()
	c, resp := subscribeURL(t, url, header)
	if c == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("stream %s: %d %s", url, resp.StatusCode, body)
	}
	return c
}

func subscribeURL(t testing.TB, url string, header http.Header) (*sseClient, *http.Response) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("subscribe: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		return nil, resp
	}
	c := &sseClient{resp: resp, r: bufio.NewReaderSize(resp.Body, 1<<16), cancel: cancel, events: make(chan event, 100000), err: make(chan error, 1)}
	go c.read()
	t.Cleanup(c.Close)
	return c, resp
}

func (c *sseClient) Close() {
	c.cancel()
	c.resp.Body.Close()
}

func (c *sseClient) read() {
	defer close(c.events)
	var ev event
	var data []string
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			c.err <- err
			return
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if len(data) > 0 || ev.Name != "" {
				ev.Data = strings.Join(data, "\n")
				ev.At = time.Now()
				c.events <- ev
			}
			ev, data = event{}, nil
		case strings.HasPrefix(line, ":"):
		default:
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "id":
				ev.ID = value
			case "event":
				ev.Name = value
			case "data":
				data = append(data, value)
			case "retry":
				ev.Retry = value
			}
		}
	}
}

// next returns the next event, failing the test after timeout.
func (c *sseClient) next(t testing.TB, timeout time.Duration) event {
	t.Helper()
	select {
	case ev, ok := <-c.events:
		if !ok {
			t.Fatalf("stream ended: %v", <-c.err)
		}
		return ev
	case <-time.After(timeout):
		t.Fatalf("no event within %s", timeout)
	}
	return event{}
}

// nextNamed skips events until one named name.
func (c *sseClient) nextNamed(t testing.TB, name string, timeout time.Duration) event {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ev := c.next(t, time.Until(deadline))
		if ev.Name == name {
			return ev
		}
	}
}

// opsEvent is the data of an ops event.
type opsEvent struct {
	Version int64 `json:"version"`
	Ops     []struct {
		Seq      int64           `json:"seq"`
		Op       json.RawMessage `json:"op"`
		ClientID string          `json:"client_id"`
	} `json:"ops"`
}

type snapshotEvent struct {
	SnapshotID   *string `json:"snapshot_id"`
	Version      int64   `json:"version"`
	ElementCount int     `json:"element_count"`
	State        struct {
		Nodes []struct {
			ID string `json:"id"`
		} `json:"nodes"`
		Edges []json.RawMessage `json:"edges"`
	} `json:"state"`
}

func decodeEvent(t testing.TB, ev event, v any) {
	t.Helper()
	if strings.Contains(ev.Data, "\n") {
		t.Fatalf("event %s data spans lines: %q", ev.Name, ev.Data)
	}
	if err := json.NewDecoder(bytes.NewReader([]byte(ev.Data))).Decode(v); err != nil {
		t.Fatalf("decode %s event %q: %v", ev.Name, ev.Data, err)
	}
}
