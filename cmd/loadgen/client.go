package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// do sends one request and reads the answer whole.
func (g *gen) do(ctx context.Context, method, path string, body []byte, extra ...string) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, g.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	// Every POST says JSON, even without a body: the server refuses any
	// other (a cross-site form could send those).
	if body != nil || method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
	}
	if g.token != "" {
		req.Header.Set("Authorization", "Bearer "+g.token)
	}
	for i := 0; i+1 < len(extra); i += 2 {
		req.Header.Set(extra[i], extra[i+1])
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

// must sends a request that has to answer want.
func (g *gen) must(ctx context.Context, want int, method, path string, body []byte) ([]byte, error) {
	status, data, err := g.do(ctx, method, path, body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if status != want {
		return nil, fmt.Errorf("%s %s: %d %s", method, path, status, truncate(data, 300))
	}
	return data, nil
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

func (g *gen) createRoom(ctx context.Context, name string) (string, error) {
	data, err := g.must(ctx, http.StatusCreated, "POST", "/rooms", []byte(`{"name":"`+name+`"}`))
	if err != nil {
		return "", err
	}
	var r struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return "", fmt.Errorf("create room: %w", err)
	}
	return r.ID, nil
}

// opsBody builds a request body; clientID may be empty.
func opsBody(clientID string, ops []string) []byte {
	var b bytes.Buffer
	b.WriteString(`{"client_id":"`)
	b.WriteString(clientID)
	b.WriteString(`","ops":[`)
	for i, op := range ops {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(op)
	}
	b.WriteString("]}")
	return b.Bytes()
}

// addNode is a small node (no data), so that 100k of them stay within the
// default room budget (LIVESHARE_SNAPSHOT_MAX_BYTES).
func addNode(id string, i int) string {
	return fmt.Sprintf(`{"op":"add_node","node":{"id":%q,"kind":"table","label":"t%d","x":%d,"y":%d}}`, id, i, i%1000, i/1000)
}

func moveNode(id string, x int) string {
	return fmt.Sprintf(`{"op":"update_node","id":%q,"patch":{"x":%d}}`, id, x)
}

// fill adds n nodes named prefix0… to the room, 1000 per request, and
// returns the room's version.
func (g *gen) fill(ctx context.Context, roomID, prefix string, n int) (int64, error) {
	var version int64
	for done := 0; done < n; {
		k := min(1000, n-done)
		ops := make([]string, k)
		for i := range ops {
			ops[i] = addNode(prefix+strconv.Itoa(done+i), done+i)
		}
		data, err := g.must(ctx, http.StatusOK, "POST", "/rooms/"+roomID+"/ops", opsBody("loadgen-fill", ops))
		if err != nil {
			return 0, err
		}
		var r struct {
			Version int64 `json:"version"`
		}
		if err := json.Unmarshal(data, &r); err != nil {
			return 0, err
		}
		version = r.Version
		done += k
	}
	return version, nil
}

// metric reads one series from the server's /metrics: the sum of the
// series called name (over their labels).
func (g *gen) metric(ctx context.Context, name string) (float64, error) {
	data, err := g.must(ctx, http.StatusOK, "GET", "/metrics", nil)
	if err != nil {
		return 0, err
	}
	return seriesSum(data, name)
}

// memory reads the server's resident memory and Go heap in use, from one
// read of its /metrics.
func (g *gen) memory(ctx context.Context) (rss, heap float64, err error) {
	data, err := g.must(ctx, http.StatusOK, "GET", "/metrics", nil)
	if err != nil {
		return 0, 0, err
	}
	if rss, err = seriesSum(data, "process_resident_memory_bytes"); err != nil {
		return 0, 0, err
	}
	if heap, err = seriesSum(data, "go_memstats_heap_inuse_bytes"); err != nil {
		return 0, 0, err
	}
	return rss, heap, nil
}

// seriesSum is the sum of the series called name (over their labels) in
// a /metrics text.
func seriesSum(data []byte, name string) (float64, error) {
	var sum float64
	found := false
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			return 0, fmt.Errorf("metric %s: %q: %w", name, line, err)
		}
		sum += v
		found = true
	}
	if !found {
		return 0, fmt.Errorf("the server has no metric %s", name)
	}
	return sum, nil
}

// stream is one open event stream.
type stream struct {
	body   io.ReadCloser
	opened chan struct{} // closed when the first event arrived
	ended  chan struct{} // closed when the stream ended
	err    error         // why it ended, once ended is closed
}

// subscribe opens the room's event stream; onData, when not nil, gets each
// data line of each event (on the stream's goroutine, with the time it was
// read). The stream ends when ctx is done or the server ends it.
func (g *gen) subscribe(ctx context.Context, client *http.Client, roomID string, onData func(event string, data []byte, at time.Time)) (*stream, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", g.base+"/rooms/"+roomID+"/events", nil)
	if err != nil {
		return nil, err
	}
	if g.token != "" {
		req.Header.Set("Authorization", "Bearer "+g.token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return nil, fmt.Errorf("subscribe: %d %s", resp.StatusCode, truncate(data, 200))
	}
	s := &stream{body: resp.Body, opened: make(chan struct{}), ended: make(chan struct{})}
	go func() {
		defer close(s.ended)
		defer resp.Body.Close()
		rd := bufio.NewReaderSize(resp.Body, 4096)
		// r3labs writes an event's fields as id, data, event: the event
		// is dispatched at the blank line that ends it.
		var event string
		var data []byte
		first := true
		for {
			line, err := rd.ReadSlice('\n')
			if err == bufio.ErrBufferFull {
				// A long data line: read the rest of it.
				full := append([]byte(nil), line...)
				for err == bufio.ErrBufferFull {
					line, err = rd.ReadSlice('\n')
					full = append(full, line...)
				}
				line = full
			}
			if err != nil {
				s.err = err
				return
			}
			switch {
			case bytes.HasPrefix(line, []byte("event: ")):
				event = string(bytes.TrimSpace(line[7:]))
			case bytes.HasPrefix(line, []byte("data: ")):
				data = append(data, line[6:]...)
			case len(bytes.TrimSpace(line)) == 0:
				if event != "" && first {
					first = false
					close(s.opened)
				}
				if event != "" && onData != nil {
					onData(event, data, time.Now())
				}
				event, data = "", data[:0]
			}
		}
	}()
	return s, nil
}
