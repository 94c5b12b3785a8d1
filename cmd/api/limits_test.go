package main_test

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/liveshare/liveshare/store/storetest"
)

// underFileLimit returns a command that runs the binary with at most
// nofile file descriptors (soft and hard), as a small server would have.
func underFileLimit(nofile string, env []string) *exec.Cmd {
	cmd := exec.Command("sh", "-c", `ulimit -n "$1" && exec "$0"`, binary, nofile)
	cmd.Env = env
	return cmd
}

// TestStreamFloodKeepsHealthzAndWrites: a process that may open 700 file
// descriptors, capped at 100 streams, takes a flood of 1000 stream
// connects — more than it has descriptors — and keeps answering /healthz
// and writes while the 100 streams stay open; every connect past the cap is
// 503 too_many_streams and its connection closed.
func TestStreamFloodKeepsHealthzAndWrites(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh to set the file descriptor limit with")
	}
	cfg := storetest.Config(t, "sqlite")
	env := append(os.Environ(), "LIVESHARE_ADDR=127.0.0.1:0", "LIVESHARE_DATA_DIR="+cfg.DataDir,
		"LIVESHARE_MAX_STREAMS=100")
	s := startCommand(t, underFileLimit("700", env), env)
	var room struct{ ID string }
	s.must("POST", "/rooms", `{"name":"flood"}`).decode(t, &room)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Each stream its own connection, as a flood of clients would open.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	defer client.CloseIdleConnections()
	var (
		mu                        sync.Mutex
		open, refused, closedConn int
		other                     []int
	)
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for range 1000 {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			req, _ := http.NewRequestWithContext(ctx, "GET", s.URL+"/rooms/"+room.ID+"/events", nil)
			resp, err := client.Do(req)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				other = append(other, -1)
				return
			}
			switch resp.StatusCode {
			case http.StatusOK:
				open++ // held open until the test ends
				return
			case http.StatusServiceUnavailable:
				refused++
				if resp.Close {
					closedConn++
				}
			default:
				other = append(other, resp.StatusCode)
			}
			resp.Body.Close()
		})
	}
	wg.Wait()
	if open != 100 || refused != 900 || closedConn != 900 || len(other) > 0 {
		t.Fatalf("flood of 1000: %d open, %d refused (%d with the connection closed), others %v; want 100 open, 900 refused and closed",
			open, refused, closedConn, other)
	}

	// With every stream slot taken and the flood over: the process answers.
	if r := s.must("GET", "/healthz", nil); r.Status != 200 {
		t.Errorf("/healthz during the flood: %d", r.Status)
	}
	if r := s.must("POST", "/rooms/"+room.ID+"/ops", `{"ops":[{"op":"add_node","node":{"id":"still-writing"}}]}`); r.Status != 200 {
		t.Errorf("a write during the flood: %d %s", r.Status, r.Body)
	}
	if r := s.must("GET", "/rooms/"+room.ID+"/events", nil); r.Status != 503 {
		t.Errorf("the 1001st connect: %d, want 503", r.Status)
	}
}

// A stream cap the process has no descriptors for stops it at start, with
// one line naming the setting; left at its default, the cap is lowered to
// what the descriptors allow, and said so.
func TestMaxStreamsCheckedAgainstFileLimit(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh to set the file descriptor limit with")
	}
	trackSources(t)
	env := append(os.Environ(), "LIVESHARE_ADDR=127.0.0.1:0", "LIVESHARE_DATA_DIR="+t.TempDir(), "LIVESHARE_MAX_STREAMS=5000")
	out, err := underFileLimit("1024", env).CombinedOutput()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if err == nil || len(lines) != 1 || !strings.Contains(lines[0], "LIVESHARE_MAX_STREAMS") || !strings.Contains(lines[0], "512") {
		t.Errorf("5000 streams with 1024 descriptors: err %v, output %q; want one line naming LIVESHARE_MAX_STREAMS and the 512 streams that fit", err, out)
	}

	cfg := storetest.Config(t, "sqlite")
	env = append(os.Environ(), "LIVESHARE_ADDR=127.0.0.1:0", "LIVESHARE_DATA_DIR="+cfg.DataDir)
	s := startCommand(t, underFileLimit("1024", env), env)
	if logs := s.logs.String(); !strings.Contains(logs, "max_streams=512") {
		t.Errorf("the default cap under 1024 descriptors was not lowered to 512:\n%s", logs)
	}
}

// Bad limit settings stop the process with one line naming the setting.
func TestInvalidLimitSettingsStop(t *testing.T) {
	trackSources(t)
	for _, c := range []struct{ env, want string }{
		{"LIVESHARE_RATE_OPS=fast", "LIVESHARE_RATE_OPS"},
		{"LIVESHARE_RATE_SNAPSHOT_READS=10/fortnight", "LIVESHARE_RATE_SNAPSHOT_READS"},
		{"LIVESHARE_RATE_ROOMS=-1/h", "LIVESHARE_RATE_ROOMS"},
		{"LIVESHARE_MAX_STREAMS=-1", "LIVESHARE_MAX_STREAMS"},
		{"LIVESHARE_MAX_STREAMS_PER_SUBJECT=many", "LIVESHARE_MAX_STREAMS_PER_SUBJECT"},
		{"LIVESHARE_TRUSTED_PROXIES=the-proxy", "LIVESHARE_TRUSTED_PROXIES"},
		{"LIVESHARE_AUDIT_RETENTION=forever", "LIVESHARE_AUDIT_RETENTION"},
	} {
		cmd := exec.Command(binary)
		cmd.Env = append(os.Environ(), "LIVESHARE_DATA_DIR="+t.TempDir(), "LIVESHARE_ADDR=127.0.0.1:0", c.env)
		out, err := cmd.CombinedOutput()
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if err == nil || len(lines) != 1 || !strings.Contains(lines[0], c.want) {
			t.Errorf("%s: err %v, output %q; want one line naming %s", c.env, err, out, c.want)
		}
	}
}
