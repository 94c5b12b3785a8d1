package main_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/liveshare/liveshare/store"
	"github.com/liveshare/liveshare/store/storetest"
)

// dbProxy stands between LiveShare and PostgreSQL: cut drops every
// connection and refuses new ones, as a stopped database does; restore
// lets them through again.
type dbProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	down   bool
	wg     sync.WaitGroup
}

func startDBProxy(t *testing.T, target string) *dbProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &dbProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		ln.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *dbProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			_, _ = io.Copy(dst, src)
			dst.Close()
			src.Close()
		}
		p.wg.Go(func() { pipe(up, c) })
		p.wg.Go(func() { pipe(c, up) })
	}
}

func (p *dbProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

func (p *dbProxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// outageWriters post one add_node at a time with its own Idempotency-Key
// and record every answer.
type outageWriters struct {
	mu       sync.Mutex
	statuses map[int]int
	acked    []string // node ids acknowledged
	bad      []string // answers that are neither 200 nor a retryable 503
	stop     chan struct{}
	wg       sync.WaitGroup
	lastOK   atomic.Int64 // unix nanos of the last 200
}

func startOutageWriters(srv *server, roomID string, n int) *outageWriters {
	w := &outageWriters{statuses: map[int]int{}, stop: make(chan struct{})}
	client := &http.Client{Timeout: 20 * time.Second}
	for i := range n {
		w.wg.Go(func() {
			for j := 0; ; j++ {
				select {
				case <-w.stop:
					return
				default:
				}
				id := fmt.Sprintf("w%d-%d", i, j)
				body := fmt.Sprintf(`{"ops":[{"op":"add_node","node":{"id":%q,"data":{"pad":%q}}}]}`, id, strings.Repeat("p", 2000))
				req, _ := http.NewRequest("POST", srv.URL+"/rooms/"+roomID+"/ops", strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Idempotency-Key", id)
				resp, err := client.Do(req)
				if err != nil {
					w.note(0, id, err.Error())
					time.Sleep(50 * time.Millisecond)
					continue
				}
				data, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case resp.StatusCode == http.StatusOK:
					w.lastOK.Store(time.Now().UnixNano())
					w.note(200, id, "")
				case resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "" &&
					strings.Contains(string(data), `"code":"unavailable"`):
					w.note(503, id, "")
					time.Sleep(50 * time.Millisecond)
				default:
					w.note(resp.StatusCode, id, string(data))
				}
			}
		})
	}
	return w
}

func (w *outageWriters) note(status int, id, bad string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.statuses[status]++
	if status == 200 {
		w.acked = append(w.acked, id)
	}
	if bad != "" {
		w.bad = append(w.bad, fmt.Sprintf("%d %s: %.300s", status, id, bad))
	}
}

func (w *outageWriters) count(status int) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.statuses[status]
}

// recovered waits until the writers' requests and /readyz succeed again
// after the database came back, stops the writers, and checks every answer
// and the log.
func (w *outageWriters) recovered(t *testing.T, srv *server, roomID string) {
	t.Helper()
	back := time.Now()
	waitFor(t, 30*time.Second, "writes succeeding again", func() bool { return w.lastOK.Load() > back.UnixNano() })
	waitFor(t, 15*time.Second, "/readyz 200 again", func() bool { return srv.readyStatus() == http.StatusOK })
	close(w.stop)
	w.wg.Wait()
	t.Logf("answers: %v", w.statuses)
	for _, b := range w.bad {
		t.Errorf("neither 200 nor 503 unavailable with Retry-After: %s", b)
	}
	checkAckedOnce(t, srv, roomID, w.acked)
}

// waitFor polls cond every 50ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *server) readyStatus() int {
	r, err := s.do("GET", "/readyz", nil)
	if err != nil {
		return 0
	}
	return r.Status
}

// checkAckedOnce fails unless every acknowledged node is in the room's log
// exactly once, and no node twice.
func checkAckedOnce(t *testing.T, srv *server, roomID string, acked []string) {
	t.Helper()
	_, logged := srv.allOps(roomID)
	seen := map[string]int{}
	for _, op := range logged {
		var o struct {
			Node struct {
				ID string `json:"id"`
			} `json:"node"`
		}
		if err := json.Unmarshal(op.Op, &o); err != nil {
			t.Fatal(err)
		}
		seen[o.Node.ID]++
	}
	for id, n := range seen {
		if n > 1 {
			t.Errorf("node %s is in the log %d times", id, n)
		}
	}
	for _, id := range acked {
		if seen[id] != 1 {
			t.Errorf("acknowledged node %s is in the log %d times", id, seen[id])
		}
	}
}

// PostgreSQL going away during writes: writers get 503 with Retry-After
// (never a 500), /readyz says 503, and when it is back writes succeed by
// themselves with every acknowledged op kept once.
func TestPostgresOutageIs503(t *testing.T) {
	t.Parallel()
	cfg := storetest.Config(t, "postgres")
	u, err := url.Parse(cfg.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := startDBProxy(t, u.Host)
	u.Host = proxy.ln.Addr().String()
	srv := startServer(t, store.Config{DatabaseURL: u.String(), DataDir: t.TempDir()})
	rm := srv.createRoom("outage")

	w := startOutageWriters(srv, rm.ID, 4)
	waitFor(t, 10*time.Second, "first acks", func() bool { return w.count(200) >= 20 })
	proxy.cut()
	waitFor(t, 15*time.Second, "503 while the database is away", func() bool { return w.count(503) >= 5 })
	waitFor(t, 15*time.Second, "/readyz 503 while the database is away", func() bool { return srv.readyStatus() == http.StatusServiceUnavailable })
	// Every route that needs the database says 503, never 500.
	room, ghostSnap := "/rooms/"+rm.ID, "/snapshots/00000000-0000-4000-8000-000000000001"
	for _, req := range [][3]string{
		{"GET", "/rooms", ""}, {"POST", "/rooms", `{"name":"x"}`}, {"GET", room, ""}, {"DELETE", room, ""},
		{"GET", room + "/graph", ""}, {"GET", room + "/ops", ""}, {"POST", room + "/ops", `{"ops":[{"op":"add_node","node":{"id":"z"}}]}`},
		{"GET", room + "/presence", ""}, {"GET", room + "/events", ""},
		{"GET", room + "/snapshots", ""}, {"POST", room + "/snapshots", ""}, {"DELETE", room + "/snapshots", ""},
		{"GET", room + "/snapshots/latest", ""}, {"GET", room + "/snapshots/stats", ""}, {"GET", room + ghostSnap, ""},
		{"POST", room + ghostSnap + "/restore", ""}, {"GET", "/snapshots/stats", ""},
	} {
		var body any
		if req[2] != "" {
			body = req[2]
		}
		r, err := srv.do(req[0], req[1], body)
		if err != nil {
			t.Fatalf("%s %s: %v", req[0], req[1], err)
		}
		if r.Status >= 500 && (r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "") {
			t.Errorf("%s %s with the database away: %d %s", req[0], req[1], r.Status, r.Body)
		}
	}
	proxy.restore()
	w.recovered(t, srv, rm.ID)
}

// SQLite on a full filesystem: writes get 503, /readyz 503; when space
// returns, both recover by themselves and every acknowledged op is kept.
func TestSQLiteDiskFullIs503(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("mounts a small filesystem")
	}
	dir := t.TempDir()
	if _, err := exec.LookPath("mount"); err != nil {
		t.Skip("no mount command: a full disk cannot be made here")
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs here (%v: %s): the full-disk case needs it", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	data := filepath.Join(dir, "data")
	srv := startServer(t, store.Config{DataDir: data}, "LIVESHARE_SNAPSHOT_INTERVAL=1h", "LIVESHARE_SNAPSHOT_EVERY_OPS=1000000")
	rm := srv.createRoom("disk full")

	w := startOutageWriters(srv, rm.ID, 2)
	waitFor(t, 60*time.Second, "503 on a full disk", func() bool { return w.count(503) >= 5 })
	waitFor(t, 15*time.Second, "/readyz 503 on a full disk", func() bool { return srv.readyStatus() == http.StatusServiceUnavailable })
	if out, err := exec.Command("mount", "-o", "remount,size=64m", dir).CombinedOutput(); err != nil {
		t.Fatalf("remount with space: %v: %s", err, out)
	}
	w.recovered(t, srv, rm.ID)
	// And after a restart on the same file.
	srv = srv.restart()
	checkAckedOnce(t, srv, rm.ID, w.acked)
	if _, err := os.Stat(filepath.Join(data, "liveshare.db")); err != nil {
		t.Fatal(err)
	}
}
