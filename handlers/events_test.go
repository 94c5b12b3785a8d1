package handlers_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/liveshare/liveshare/store"
	"github.com/liveshare/liveshare/store/storetest"
)

// collector follows a room's stream like a client does: it resumes with its
// last id after every disconnect, and records every op seq it was given.
type collector struct {
	base int64   // version of the snapshot it started from
	seqs []int64 // ops received after base, in order
	last string  // Last-Event-ID to resume with
}

// take records one event, failing on anything out of order.
func (c *collector) take(t *testing.T, ev event) {
	t.Helper()
	switch ev.Name {
	case "snapshot":
		var s snapshotEvent
		decodeEvent(t, ev, &s)
		if ev.ID != strconv.FormatInt(s.Version, 10) {
			t.Fatalf("snapshot id %q, version %d", ev.ID, s.Version)
		}
		if c.last != "" {
			t.Fatalf("snapshot while resuming from %s", c.last)
		}
		c.base = s.Version
	case "ops":
		var o opsEvent
		decodeEvent(t, ev, &o)
		for _, op := range o.Ops {
			want := c.base + int64(len(c.seqs)) + 1
			if op.Seq != want {
				t.Fatalf("got seq %d, want %d (gap or duplicate)", op.Seq, want)
			}
			c.seqs = append(c.seqs, op.Seq)
		}
		if ev.ID != strconv.FormatInt(o.Version, 10) || o.Ops[len(o.Ops)-1].Seq != o.Version {
			t.Fatalf("ops event id %q, version %d, last seq %d", ev.ID, o.Version, o.Ops[len(o.Ops)-1].Seq)
		}
	}
	if ev.ID != "" {
		c.last = ev.ID
	}
}

func (c *collector) version() int64 { return c.base + int64(len(c.seqs)) }

// TestEveryoneSeesOneOrder: three subscribers that stay and two that drop
// and resume at random all end with the committed sequence 1..N, in order,
// no gap, no duplicate, while four writers post concurrently.
func TestEveryoneSeesOneOrder(t *testing.T) {
	storetest.Dialects(t, func(t *testing.T, cfg store.Config) {
		st, err := store.Open(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		srv := newTestServer(t, st, serverOptions{queue: 4096})
		roomID := srv.createRoom()

		const writers, posts = 4, 200
		var final int64
		var finalMu sync.Mutex
		finalSet := make(chan struct{}) // closed once final is known
		writing := make(chan struct{})
		var wg sync.WaitGroup

		// Steady subscribers join before the writes.
		steady := make([]*sseClient, 3)
		for i := range steady {
			steady[i], _ = subscribe(t, srv.URL, roomID, "", "?name=steady")
		}
		results := make([]*collector, 5)
		for i := range steady {
			results[i] = &collector{}
			wg.Go(func() {
				<-writing
				fs := finalSet
				for {
					finalMu.Lock()
					f := final
					finalMu.Unlock()
					if f > 0 && results[i].version() == f {
						return
					}
					select {
					case ev, ok := <-steady[i].events:
						if !ok {
							t.Errorf("steady subscriber %d: stream ended", i)
							return
						}
						results[i].take(t, ev)
					case <-fs:
						fs = nil // final is known now: loop to compare
					case <-time.After(30 * time.Second):
						t.Errorf("steady subscriber %d stuck at %d of %d", i, results[i].version(), f)
						return
					}
				}
			})
		}
		// Flaky subscribers drop after a random number of events and resume.
		for i := 3; i < 5; i++ {
			results[i] = &collector{}
			wg.Go(func() {
				<-writing
				rng := rand.New(rand.NewPCG(uint64(i), 7))
				c := results[i]
				fs := finalSet
				for {
					client, resp := subscribe(t, srv.URL, roomID, c.last, "?name=flaky")
					if client == nil {
						t.Errorf("flaky resume from %q: status %d", c.last, resp.StatusCode)
						return
					}
					for n := rng.IntN(40); n >= 0; n-- {
						finalMu.Lock()
						f := final
						finalMu.Unlock()
						if f > 0 && c.version() == f {
							client.Close()
							return
						}
						select {
						case ev, ok := <-client.events:
							if !ok {
								t.Errorf("flaky subscriber: stream ended")
								return
							}
							c.take(t, ev)
						case <-fs:
							fs = nil // final is known now: loop to compare
						case <-time.After(30 * time.Second):
							t.Errorf("flaky subscriber stuck at %d of %d", c.version(), f)
							return
						}
					}
					client.Close()
				}
			})
		}

		close(writing)
		var writersWG sync.WaitGroup
		for w := range writers {
			writersWG.Go(func() {
				for p := range posts {
					ids := make([]string, 1+(p+w)%3)
					for j := range ids {
						ids[j] = fmt.Sprintf("w%d-p%d-%d", w, p, j)
					}
					if _, err := srv.post(roomID, addNodes(ids...)); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		writersWG.Wait()
		rm, err := st.GetRoom(context.Background(), roomID)
		if err != nil {
			t.Fatal(err)
		}
		finalMu.Lock()
		final = rm.Version
		finalMu.Unlock()
		close(finalSet)
		wg.Wait()
		for i, c := range results {
			if c.version() != final {
				t.Errorf("subscriber %d ended at version %d, want %d", i, c.version(), final)
			}
		}
		t.Logf("%d ops by %d writers; 5 subscribers saw 1..%d in order", final, writers, final)
	})
}

// TestStalledSubscriberDoesNotSlowOthers: a subscriber that stops reading is
// cut off within the write deadline, and a fast one keeps receiving meanwhile.
func TestStalledSubscriberDoesNotSlowOthers(t *testing.T) {
	st := storetest.Open(t, "sqlite")
	const writeTimeout = 300 * time.Millisecond
	srv := newTestServer(t, st, serverOptions{queue: 64, writeTimeout: writeTimeout})
	roomID := srv.createRoom()
	fast, _ := subscribe(t, srv.URL, roomID, "", "?name=fast")
	fast.nextNamed(t, "snapshot", 5*time.Second)

	blob := strings.Repeat("x", 60000)
	post := func(i int) time.Time {
		body := fmt.Sprintf(`{"ops":[{"op":"add_node","node":{"id":"n%d","data":{"blob":%q}}}]}`, i, blob)
		sent := time.Now()
		if _, err := srv.post(roomID, body); err != nil {
			t.Fatal(err)
		}
		return sent
	}
	// delays posts n ops and returns how long each took from the post to
	// its arrival at the fast subscriber.
	next := 0
	delays := func(n int) []time.Duration {
		var out []time.Duration
		for range n {
			sent := post(next)
			next++
			ev := fast.nextNamed(t, "ops", 10*time.Second)
			if ev.ID != strconv.Itoa(next) {
				t.Fatalf("fast subscriber got id %s, want %d", ev.ID, next)
			}
			out = append(out, ev.At.Sub(sent))
		}
		return out
	}
	alone := delays(50)

	// The stalled subscriber: a raw connection with a tiny receive buffer
	// that sends its request and never reads.
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(conn, "GET /rooms/%s/events?name=stalled HTTP/1.1\r\nHost: x\r\n\r\n", roomID)
	waitFor(t, 5*time.Second, "stalled subscriber to join", func() bool { return subscribers(srv, roomID) == 2 })

	stalledAt := time.Now()
	withStalled := delays(200)
	waitFor(t, 10*time.Second, "stalled subscriber to be cut off", func() bool { return subscribers(srv, roomID) == 1 })
	cutAfter := time.Since(stalledAt)

	t.Logf("fast subscriber delay alone: p50 %s p99 %s; with a stalled one: p50 %s p99 %s; stalled one cut off %s after it stopped reading (write timeout %s)",
		pct(alone, 50), pct(alone, 99), pct(withStalled, 50), pct(withStalled, 99), cutAfter.Round(time.Millisecond), writeTimeout)
}

func subscribers(srv *testServer, roomID string) int {
	rm, ok := srv.Rooms.Loaded(roomID)
	if !ok {
		return 0
	}
	return rm.Subscribers()
}

func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func pct(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(0, min(i, len(s))-1)].Round(time.Microsecond)
}

// TestThousandSubscribers: 1,000 subscribers all receive a burst, and no
// goroutine is left once they are gone.
func TestThousandSubscribers(t *testing.T) {
	st := storetest.Open(t, "sqlite") // its pool's goroutine outlives the check
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	srv := newTestServer(t, st, serverOptions{})
	roomID := srv.createRoom()
	transport := &http.Transport{MaxConnsPerHost: 0}
	client := &http.Client{Transport: transport}
	defer transport.CloseIdleConnections()

	const n, burst = 1000, 20
	closers := make([]func(), n)
	var wg sync.WaitGroup
	for i := range n {
		req, _ := http.NewRequest("GET", srv.URL+"/rooms/"+roomID+"/events", nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("subscriber %d: %v", i, err)
		}
		closers[i] = func() { resp.Body.Close() }
		body := bufio.NewReader(resp.Body)
		wg.Go(func() {
			want := "id: " + strconv.Itoa(burst)
			for {
				line, err := body.ReadString('\n')
				if err != nil {
					t.Errorf("subscriber %d: %v before seq %d", i, err, burst)
					return
				}
				if strings.TrimSpace(line) == want {
					return
				}
			}
		})
	}
	waitFor(t, 30*time.Second, "1000 subscribers", func() bool { return subscribers(srv, roomID) == n })
	for i := range burst {
		if _, err := srv.post(roomID, addNodes(fmt.Sprintf("n%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	for _, c := range closers {
		c()
	}
	waitFor(t, 10*time.Second, "subscribers to leave", func() bool { return subscribers(srv, roomID) == 0 })
	transport.CloseIdleConnections()
	srv.Close()
}

func TestResumePositions(t *testing.T) {
	st := storetest.Open(t, "sqlite") // the test server keeps 3 snapshots
	srv := newTestServer(t, st, serverOptions{})
	roomID := srv.createRoom()
	post := func(id string) {
		t.Helper()
		if _, err := srv.post(roomID, addNodes(id)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 {
		post(fmt.Sprintf("n%d", i))
	}

	t.Run("no snapshot yet: empty snapshot at 0, then the log", func(t *testing.T) {
		c, resp := subscribe(t, srv.URL, roomID, "", "")
		if got := resp.Header.Get("Content-Type"); got != "text/event-stream" {
			t.Errorf("Content-Type %q", got)
		}
		if got := resp.Header.Get("X-Accel-Buffering"); got != "no" {
			t.Errorf("X-Accel-Buffering %q, want no", got)
		}
		ev := c.next(t, 5*time.Second)
		var s snapshotEvent
		decodeEvent(t, ev, &s)
		if ev.Name != "snapshot" || ev.ID != "0" || s.SnapshotID != nil || s.Version != 0 || len(s.State.Nodes) != 0 || ev.Retry == "" {
			t.Fatalf("first event %+v", ev)
		}
		col := &collector{}
		col.take(t, ev)
		for col.version() < 2 {
			col.take(t, c.nextNamed(t, "ops", 5*time.Second))
		}
	})

	// Snapshots at versions 2..5 with KEEP 3 prune the log through 3.
	rm, err := srv.Rooms.Get(context.Background(), roomID)
	if err != nil {
		t.Fatal(err)
	}
	var latestID string
	for i := 2; i < 6; i++ {
		if i > 2 {
			post(fmt.Sprintf("n%d", i))
		}
		meta, err := srv.Snapshots.Take(context.Background(), rm, "manual")
		if err != nil {
			t.Fatal(err)
		}
		latestID = meta.ID
	}
	post("n6") // version 6: one op after the latest snapshot

	startsFromSnapshot := func(t *testing.T, c *sseClient) {
		t.Helper()
		ev := c.next(t, 5*time.Second)
		var s snapshotEvent
		decodeEvent(t, ev, &s)
		if ev.Name != "snapshot" || ev.ID != "5" || s.Version != 5 || s.SnapshotID == nil || *s.SnapshotID != latestID || len(s.State.Nodes) != 5 {
			t.Fatalf("first event %+v, want the stored snapshot %s at 5", ev, latestID)
		}
		col := &collector{}
		col.take(t, ev)
		col.take(t, c.nextNamed(t, "ops", 5*time.Second))
		if col.version() != 6 {
			t.Fatalf("after the snapshot: version %d, want 6", col.version())
		}
	}
	t.Run("no position: the latest stored snapshot, then the ops after it", func(t *testing.T) {
		c, _ := subscribe(t, srv.URL, roomID, "", "")
		startsFromSnapshot(t, c)
	})
	t.Run("position older than the log: snapshot", func(t *testing.T) {
		c, _ := subscribe(t, srv.URL, roomID, "1", "")
		startsFromSnapshot(t, c)
	})
	t.Run("position 0 after pruning: snapshot", func(t *testing.T) {
		c, _ := subscribe(t, srv.URL, roomID, "0", "")
		startsFromSnapshot(t, c)
	})
	t.Run("position ahead of the room: snapshot", func(t *testing.T) {
		c, _ := subscribe(t, srv.URL, roomID, "99", "")
		startsFromSnapshot(t, c)
	})
	t.Run("position inside the log, by query parameter, then live", func(t *testing.T) {
		c, _ := subscribe(t, srv.URL, roomID, "", "?last_event_id=3")
		col := &collector{base: 3, last: "3"}
		for col.version() < 6 {
			col.take(t, c.nextNamed(t, "ops", 5*time.Second))
		}
		post("live")
		col.take(t, c.nextNamed(t, "ops", 5*time.Second))
		if col.version() != 7 {
			t.Fatalf("live op: version %d", col.version())
		}
	})
	for _, bad := range []string{"abc", "-1", "1.5", "99999999999999999999"} {
		t.Run("malformed position "+bad, func(t *testing.T) {
			c, resp := subscribe(t, srv.URL, roomID, bad, "")
			if c != nil {
				t.Fatal("stream started")
			}
			defer resp.Body.Close()
			if resp.StatusCode != 400 || resp.Header.Get("Content-Type") != "application/problem+json" {
				t.Fatalf("status %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			var p struct{ Code string }
			decodeEvent(t, event{Data: readAll(resp)}, &p)
			if p.Code != "invalid_last_event_id" {
				t.Fatalf("code %q", p.Code)
			}
		})
	}
	t.Run("GET /ops before the log: 410 history_gone", func(t *testing.T) {
		resp, err := http.Get(srv.URL + "/rooms/" + roomID + "/ops?since=2")
		if err != nil {
			t.Fatal(err)
		}
		body := readAll(resp)
		if resp.StatusCode != 410 || !strings.Contains(body, `"code":"history_gone"`) {
			t.Fatalf("status %d %s", resp.StatusCode, body)
		}
		resp, err = http.Get(srv.URL + "/rooms/" + roomID + "/ops?since=3")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("since the oldest kept snapshot: %v %d", err, resp.StatusCode)
		}
	})
}

func readAll(resp *http.Response) string {
	var sb strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		sb.WriteString(sc.Text())
	}
	return sb.String()
}

func TestUnknownAndDeletedRooms(t *testing.T) {
	st := storetest.Open(t, "sqlite")
	srv := newTestServer(t, st, serverOptions{heartbeat: 50 * time.Millisecond})
	for path, want := range map[string]int{
		"00000000-0000-4000-8000-000000000000": 404,
		"not-a-room":                           400,
	} {
		c, resp := subscribe(t, srv.URL, path, "", "")
		if c != nil || resp.StatusCode != want || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: status %d, want %d problem+json before any stream", path, resp.StatusCode, want)
		}
	}

	roomID := srv.createRoom()
	req, _ := http.NewRequest("GET", srv.URL+"/rooms/"+roomID+"/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	readUntil := func(want string) {
		t.Helper()
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("stream ended before %q: %v", want, err)
			}
			if strings.TrimSpace(line) == want {
				return
			}
		}
	}
	readUntil(": ping") // heartbeats keep an idle stream alive

	del, _ := http.NewRequest("DELETE", srv.URL+"/rooms/"+roomID, nil)
	dresp, err := http.DefaultClient.Do(del)
	if err != nil || dresp.StatusCode != 204 {
		t.Fatalf("delete: %v %v", err, dresp.StatusCode)
	}
	readUntil("event: room_deleted")
	done := make(chan error, 1)
	go func() {
		for {
			if _, err := r.ReadString('\n'); err != nil {
				done <- err
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("stream did not end after room_deleted")
	}
}

func TestPresence(t *testing.T) {
	st := storetest.Open(t, "sqlite")
	srv := newTestServer(t, st, serverOptions{})
	roomID := srv.createRoom()
	alice, _ := subscribe(t, srv.URL, roomID, "", "?name=alice")
	ev := alice.nextNamed(t, "presence", 5*time.Second)
	if !strings.Contains(ev.Data, `"joined":{"id":`) || !strings.Contains(ev.Data, `"name":"alice"`) {
		t.Fatalf("alice's own join: %s", ev.Data)
	}
	bob, _ := subscribe(t, srv.URL, roomID, "", "?name=bob")
	ev = alice.nextNamed(t, "presence", 5*time.Second)
	if !strings.Contains(ev.Data, `"name":"bob"`) || !strings.Contains(ev.Data, `"left":null`) {
		t.Fatalf("bob's join as alice sees it: %s", ev.Data)
	}
	resp, err := http.Get(srv.URL + "/rooms/" + roomID + "/presence")
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(resp)
	if !strings.Contains(body, `"alice"`) || !strings.Contains(body, `"bob"`) || strings.Index(body, "alice") > strings.Index(body, "bob") {
		t.Fatalf("presence: %s", body)
	}
	resp, err = http.Get(srv.URL + "/rooms/" + roomID)
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(resp); !strings.Contains(body, `"subscribers":2`) {
		t.Fatalf("room: %s", body)
	}
	bob.Close()
	ev = alice.nextNamed(t, "presence", 5*time.Second)
	if !strings.Contains(ev.Data, `"left":{"id"`) || strings.Count(ev.Data, `"name":"bob"`) != 1 || strings.Count(ev.Data, `"name":"alice"`) != 1 {
		t.Fatalf("bob's leave: %s", ev.Data)
	}
	if ev.ID != "0" {
		t.Fatalf("presence event id %q: it must keep the stream's position 0", ev.ID)
	}
	resp, err = http.Get(srv.URL + "/rooms/00000000-0000-4000-8000-000000000000/presence")
	if err != nil || resp.StatusCode != 404 {
		t.Fatalf("presence of an unknown room: %v %d", err, resp.StatusCode)
	}
}

func TestShutdownEndsStreams(t *testing.T) {
	st := storetest.Open(t, "sqlite")
	srv := newTestServer(t, st, serverOptions{})
	roomID := srv.createRoom()
	c, _ := subscribe(t, srv.URL, roomID, "", "")
	c.nextNamed(t, "snapshot", 5*time.Second)
	close(srv.done)
	select {
	case _, ok := <-c.events:
		for ok {
			_, ok = <-c.events
		}
	case <-time.After(5 * time.Second):
		t.Fatal("stream still open after shutdown began")
	}
}
