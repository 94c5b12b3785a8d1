package main_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/liveshare/liveshare/store"
)

// metricSet is one scrape of /metrics: each series' value under its full
// name with labels, as the text format writes it.
type metricSet map[string]float64

func (s *server) scrape() metricSet {
	s.t.Helper()
	r := s.must("GET", "/metrics", nil)
	if r.Status != http.StatusOK {
		s.t.Fatalf("GET /metrics: %d %s", r.Status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		s.t.Fatalf("GET /metrics: Content-Type %q, want the text format", ct)
	}
	m := metricSet{}
	for line := range strings.SplitSeq(string(r.Body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			s.t.Fatalf("metrics line %q: %v", line, err)
		}
		m[line[:i]] = v
	}
	return m
}

// sum adds the series called name whose labels include every one of
// labels (each `key="value"`); found tells whether any series matched.
func (m metricSet) sum(name string, labels ...string) (total float64, found bool) {
	for k, v := range m {
		base, rest, _ := strings.Cut(k, "{")
		if base != name {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(rest, l) {
				ok = false
			}
		}
		if ok {
			total += v
			found = true
		}
	}
	return total, found
}

func (m metricSet) get(name string, labels ...string) float64 {
	v, _ := m.sum(name, labels...)
	return v
}

// moved checks that a series grew by at least min between two scrapes.
func moved(t *testing.T, before, after metricSet, min float64, name string, labels ...string) {
	t.Helper()
	if _, ok := after.sum(name, labels...); !ok {
		t.Errorf("%s%v: no such series", name, labels)
		return
	}
	if got := after.get(name, labels...) - before.get(name, labels...); got < min {
		t.Errorf("%s%v moved by %v, want at least %v", name, labels, got, min)
	}
}

// openStream subscribes to a room's events and reports each event name
// read on the returned channel until the stream ends.
func openStream(t *testing.T, ctx context.Context, url string) <-chan string {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return openStreamReq(t, req)
}

func openStreamReq(t *testing.T, req *http.Request) <-chan string {
	t.Helper()
	url := req.URL.String()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	events := make(chan string, 1024)
	go func() {
		defer resp.Body.Close()
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 8<<20)
		for sc.Scan() {
			if name, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
				select {
				case events <- name:
				default:
				}
			}
		}
	}()
	return events
}

func waitEvent(t *testing.T, events <-chan string, want string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case name, ok := <-events:
			if !ok {
				t.Fatalf("stream ended before a %s event", want)
			}
			if name == want {
				return
			}
		case <-timeout:
			t.Fatalf("no %s event within 10s", want)
		}
	}
}

// waitGauge polls until the gauge name equals want.
func (s *server) waitGauge(name string, want float64) metricSet {
	s.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		m := s.scrape()
		if m.get(name) == want {
			return m
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s is %v, want %v", name, m.get(name), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func addNodes(prefix string, n int) map[string]any {
	ops := make([]map[string]any, n)
	for i := range ops {
		ops[i] = map[string]any{"op": "add_node", "node": map[string]any{
			"id": fmt.Sprintf("%s%d", prefix, i), "kind": "table", "label": "t", "x": 1, "y": 2}}
	}
	return map[string]any{"ops": ops}
}

// TestMetricsMove scrapes /metrics before and after exercising each thing
// it measures, on the built binary, and checks that each metric moved.
func TestMetricsMove(t *testing.T) {
	t.Parallel()
	databases(t, func(t *testing.T, cfg store.Config) {
		srv := startServer(t, cfg, "LIVESHARE_SSE_QUEUE=4", "LIVESHARE_SSE_WRITE_TIMEOUT=200ms")
		before := srv.scrape()

		rm := srv.createRoom("metrics")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		events := openStream(t, ctx, srv.URL+"/rooms/"+rm.ID+"/events")
		waitEvent(t, events, "snapshot")
		if got := srv.scrape().get("liveshare_sse_subscribers"); got != 1 {
			t.Errorf("liveshare_sse_subscribers = %v with one stream open, want 1", got)
		}
		for i, n := range []int{1, 3} {
			if r := srv.must("POST", "/rooms/"+rm.ID+"/ops", addNodes(fmt.Sprintf("w%d-", i), n)); r.Status != http.StatusOK {
				t.Fatalf("post ops: %d %s", r.Status, r.Body)
			}
			waitEvent(t, events, "ops")
		}
		srv.must("GET", "/rooms/"+rm.ID+"/graph", nil)
		srv.must("GET", "/no/such/endpoint", nil)
		after := srv.scrape()

		moved(t, before, after, 2, "liveshare_http_requests_total", `route="/rooms/{roomID}/ops"`, `method="POST"`, `status="200"`)
		moved(t, before, after, 1, "liveshare_http_requests_total", `route="/rooms/{roomID}/graph"`, `method="GET"`, `status="200"`)
		moved(t, before, after, 1, "liveshare_http_requests_total", `route="unmatched"`, `status="404"`)
		moved(t, before, after, 2, "liveshare_http_request_duration_seconds_count", `route="/rooms/{roomID}/ops"`)
		moved(t, before, after, 1, "liveshare_http_request_duration_seconds_count", `route="/rooms"`, `method="POST"`)
		moved(t, before, after, 4, "liveshare_room_ops_committed_total")
		moved(t, before, after, 2, "liveshare_room_commit_batch_ops_count")
		moved(t, before, after, 4, "liveshare_room_commit_batch_ops_sum")
		moved(t, before, after, 2, "liveshare_room_commit_duration_seconds_count")
		moved(t, before, after, 1, "liveshare_room_load_duration_seconds_count")
		moved(t, before, after, 1, "liveshare_room_live")
		moved(t, before, after, 1, "liveshare_sse_events_sent_total", `event="snapshot"`)
		moved(t, before, after, 2, "liveshare_sse_events_sent_total", `event="ops"`)
		moved(t, before, after, 2, "liveshare_sse_commit_to_write_seconds_count")
		moved(t, before, after, 4, "liveshare_snapshot_lag_versions")
		if got := after.get("liveshare_snapshot_lag_seconds"); got <= 0 {
			t.Errorf("liveshare_snapshot_lag_seconds = %v after unsnapshotted ops, want > 0", got)
		}
		for k := range after {
			if strings.Contains(k, rm.ID) {
				t.Errorf("a raw path leaked into a label: %s", k)
			}
		}

		// A manual snapshot: counted, measured, and the lag is gone.
		if r := srv.must("POST", "/rooms/"+rm.ID+"/snapshots", nil); r.Status != http.StatusCreated {
			t.Fatalf("snapshot: %d %s", r.Status, r.Body)
		}
		snapped := srv.scrape()
		moved(t, after, snapped, 1, "liveshare_snapshot_attempts_total", `trigger="manual"`, `outcome="stored"`)
		moved(t, after, snapped, 1, "liveshare_snapshot_encode_duration_seconds_count")
		moved(t, after, snapped, 1, "liveshare_snapshot_size_bytes_count")
		moved(t, after, snapped, 50, "liveshare_snapshot_size_bytes_sum")
		if v, s := snapped.get("liveshare_snapshot_lag_versions"), snapped.get("liveshare_snapshot_lag_seconds"); v != 0 || s != 0 {
			t.Errorf("snapshot lag after a snapshot: %v versions, %vs; want 0, 0", v, s)
		}

		// The stream ends: the gauge comes back down.
		cancel()
		srv.waitGauge("liveshare_sse_subscribers", 0)

		// Runtime and process collectors are there.
		for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_resident_memory_bytes", "process_cpu_seconds_total"} {
			if v, ok := snapped.sum(name); !ok || v <= 0 {
				t.Errorf("%s = %v (present %v), want > 0", name, v, ok)
			}
		}
	})
}

// TestMetricsSlowSubscriber: a subscriber that stops reading while large
// events keep coming is cut off and counted.
func TestMetricsSlowSubscriber(t *testing.T) {
	t.Parallel()
	databases(t, func(t *testing.T, cfg store.Config) {
		srv := startServer(t, cfg, "LIVESHARE_SSE_QUEUE=2", "LIVESHARE_SSE_WRITE_TIMEOUT=200ms")
		rm := srv.createRoom("slow")
		if r := srv.must("POST", "/rooms/"+rm.ID+"/ops", addNodes("n", 1)); r.Status != http.StatusOK {
			t.Fatalf("post ops: %d %s", r.Status, r.Body)
		}
		before := srv.scrape()

		// Open a stream and never read it.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/rooms/"+rm.ID+"/events", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()

		// Each write replaces the node's data with 60 KiB, 14 times: about
		// 850 KB per event, so the socket buffers fill within a few dozen.
		blob := strings.Repeat("x", 60<<10)
		ops := make([]map[string]any, 14)
		for i := range ops {
			ops[i] = map[string]any{"op": "update_node", "id": "n0", "patch": map[string]any{"data": map[string]any{"blob": blob, "i": i}}}
		}
		body := map[string]any{"ops": ops}
		for i := 0; ; i++ {
			if r := srv.must("POST", "/rooms/"+rm.ID+"/ops", body); r.Status != http.StatusOK {
				t.Fatalf("post ops: %d %s", r.Status, r.Body[:min(len(r.Body), 300)])
			}
			if srv.scrape().get("liveshare_sse_slow_subscribers_total") > before.get("liveshare_sse_slow_subscribers_total") {
				break
			}
			if i == 200 {
				t.Fatal("the stalled subscriber was not cut off after 200 large writes")
			}
		}
		after := srv.waitGauge("liveshare_sse_subscribers", 0)
		moved(t, before, after, 1, "liveshare_sse_slow_subscribers_total")
	})
}
