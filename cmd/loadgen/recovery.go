package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// server is a LiveShare process the recovery scenario started.
type server struct {
	cmd  *exec.Cmd
	addr string
	done chan struct{}
}

var listeningLine = regexp.MustCompile(`msg=listening addr=(\S+)`)

// startServer runs bin with env and waits until it listens.
func startServer(ctx context.Context, bin string, env []string) (*server, error) {
	s := &server{cmd: exec.Command(bin), done: make(chan struct{})}
	s.cmd.Env = env
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	addr := make(chan string, 1)
	var tail []string
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if len(tail) < 20 {
				tail = append(tail, line)
			}
			if m := listeningLine.FindStringSubmatch(line); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
	}()
	go func() {
		_ = s.cmd.Wait()
		close(s.done)
	}()
	select {
	case s.addr = <-addr:
		return s, nil
	case <-s.done:
		return nil, fmt.Errorf("the server exited before listening: %s", strings.Join(tail, "\n"))
	case <-ctx.Done():
		s.kill()
		return nil, ctx.Err()
	}
}

// kill ends the process with SIGKILL, as a crash would.
func (s *server) kill() {
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
}

// stop ends the process gracefully, or kills it after 30s.
func (s *server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		s.kill()
	}
}

// serverBinary returns the binary to run: -server-bin, or one built now
// from this module into dir.
func (g *gen) serverBinary(ctx context.Context, dir string) (string, error) {
	if g.o.serverBin != "" {
		return g.o.serverBin, nil
	}
	bin := filepath.Join(dir, "liveshare")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/liveshare/liveshare/cmd/api")
	build.Stdout, build.Stderr = g.log, g.log
	if err := build.Run(); err != nil {
		return "", fmt.Errorf("build the server (or give -server-bin): %w", err)
	}
	return bin, nil
}

// recovery: a room of E elements and K ops after its last snapshot; the
// server is killed (-9) and started again, and the time until the room
// answers GET /graph is measured.
func (g *gen) recovery(ctx context.Context) (result, error) {
	o := g.o
	dir, err := os.MkdirTemp("", "liveshare-loadgen-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	bin, err := g.serverBinary(ctx, dir)
	if err != nil {
		return result{}, err
	}
	env := serverEnv(
		"LIVESHARE_ADDR=127.0.0.1:0",
		"LIVESHARE_DATA_DIR="+filepath.Join(dir, "data"),
		"DATABASE_URL="+o.databaseURL,
		"LIVESHARE_LOG_FORMAT=text",
		// Only the snapshot taken below: the K ops must come after it.
		"LIVESHARE_SNAPSHOT_INTERVAL=1h",
		"LIVESHARE_SNAPSHOT_EVERY_OPS="+strconv.Itoa(o.elements+o.ops+1000000),
	)
	srv, err := startServer(ctx, bin, env)
	if err != nil {
		return result{}, err
	}
	defer func() { srv.stop() }()
	g.base = "http://" + srv.addr
	if err := localOnly(g.base); err != nil {
		return result{}, err
	}

	roomID, err := g.createRoom(ctx, "loadgen recovery")
	if err != nil {
		return result{}, err
	}
	fillStart := time.Now()
	if _, err := g.fill(ctx, roomID, "e", o.elements); err != nil {
		return result{}, err
	}
	if _, err := g.must(ctx, http.StatusCreated, "POST", "/rooms/"+roomID+"/snapshots", nil); err != nil {
		return result{}, err
	}
	want := int64(o.elements)
	for done := 0; done < o.ops; {
		k := min(1000, o.ops-done)
		ops := make([]string, k)
		for j := range ops {
			ops[j] = moveNode("e"+strconv.Itoa((done+j)%o.elements), done+j)
		}
		if _, err := g.must(ctx, http.StatusOK, "POST", "/rooms/"+roomID+"/ops", opsBody("loadgen", ops)); err != nil {
			return result{}, err
		}
		done += k
		want += int64(k)
	}
	fmt.Fprintf(g.log, "[recovery] room of %d elements, %d ops after its snapshot, in %s; killing the server\n",
		o.elements, o.ops, secs(time.Since(fillStart)))

	srv.kill()
	start := time.Now()
	srv, err = startServer(ctx, bin, env)
	if err != nil {
		return result{}, err
	}
	listening := time.Since(start)
	g.base = "http://" + srv.addr
	getStart := time.Now()
	data, err := g.must(ctx, http.StatusOK, "GET", "/rooms/"+roomID+"/graph", nil)
	if err != nil {
		return result{}, err
	}
	get := time.Since(getStart)
	total := time.Since(start)
	var graph struct {
		Version int64             `json:"version"`
		Nodes   []json.RawMessage `json:"nodes"`
	}
	if err := json.Unmarshal(data, &graph); err != nil {
		return result{}, fmt.Errorf("decode graph: %w", err)
	}
	if graph.Version != want || len(graph.Nodes) != o.elements {
		return result{}, fmt.Errorf("recovered version %d with %d nodes, want version %d with %d", graph.Version, len(graph.Nodes), want, o.elements)
	}
	load, err := g.metric(ctx, "liveshare_room_load_duration_seconds_sum")
	if err != nil && !errors.Is(err, context.Canceled) {
		return result{}, err
	}
	var r result
	r.add("elements", "%d", o.elements)
	r.add("ops after snapshot", "%d", o.ops)
	r.add("start → listening", "%s", secs(listening))
	r.add("GET /graph (loads the room)", "%s", secs(get))
	r.add("room load (metric)", "%.2f s", load)
	r.add("start → graph answered", "%s", secs(total))
	r.add("version", "%d ✓", graph.Version)
	return r, nil
}
