package main_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/liveshare/liveshare/internal/testbuild"
	"github.com/liveshare/liveshare/store"
	"github.com/liveshare/liveshare/store/storetest"
)

// binary is the LiveShare binary the end-to-end tests run, built (or found
// up to date) once per test process.
var binary string

func TestMain(m *testing.M) {
	flag.Parse()
	// The end-to-end tests spend their time waiting on other processes (the
	// server, Chromium, PostgreSQL), which GOMAXPROCS, go test's default
	// -parallel, does not count: on two cores it would run two at a time.
	if !flagGiven("test.parallel") {
		if err := flag.Set("test.parallel", strconv.Itoa(max(4, 2*runtime.GOMAXPROCS(0)))); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	var err error
	if binary, err = testbuild.Binary(testbuild.ServerPackage); err != nil {
		fmt.Fprintln(os.Stderr, "build liveshare:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// flagGiven reports whether the command line set the flag.
func flagGiven(name string) bool {
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}

// server is a running LiveShare binary.
type server struct {
	t    testing.TB
	cmd  *exec.Cmd
	URL  string
	env  []string
	logs *syncBuffer
	done chan struct{}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var listeningLine = regexp.MustCompile(`msg=listening addr=(\S+)`)

// startServer starts the binary with cfg's database on a free port and waits
// until it listens. The process is killed at the end of the test.
func startServer(t testing.TB, cfg store.Config, extraEnv ...string) *server {
	t.Helper()
	env := append(os.Environ(),
		"LIVESHARE_ADDR=127.0.0.1:0",
		"DATABASE_URL="+cfg.DatabaseURL,
		"LIVESHARE_DATA_DIR="+cfg.DataDir,
		"LIVESHARE_LOG_LEVEL=debug",
	)
	env = append(env, extraEnv...)
	return startWithEnv(t, env)
}

func startWithEnv(t testing.TB, env []string) *server {
	t.Helper()
	return startCommand(t, exec.Command(binary), env)
}

// startCommand starts cmd, which runs the binary (perhaps through a shell
// that sets its limits first), with env, and waits until it listens.
func startCommand(t testing.TB, cmd *exec.Cmd, env []string) *server {
	t.Helper()
	trackSources(t)
	s := &server{t: t, env: env, logs: &syncBuffer{}, done: make(chan struct{})}
	s.cmd = cmd
	s.cmd.Env = env
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start liveshare: %v", err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			s.logs.Write([]byte(line + "\n"))
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
	t.Cleanup(func() {
		s.kill()
		if t.Failed() {
			t.Logf("server log:\n%s", s.logs.String())
		}
	})
	select {
	case a := <-addr:
		s.URL = "http://" + a
	case <-s.done:
		t.Fatalf("liveshare exited before listening:\n%s", s.logs.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("liveshare did not listen within 30s:\n%s", s.logs.String())
	}
	return s
}

// kill stops the process with SIGKILL, as a crash would.
func (s *server) kill() {
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-s.done
}

// terminate sends SIGTERM and returns the exit code.
func (s *server) terminate(timeout time.Duration) int {
	s.t.Helper()
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(timeout):
		s.t.Fatalf("liveshare did not exit within %s of SIGTERM", timeout)
	}
	return s.cmd.ProcessState.ExitCode()
}

// restart kills the process and starts it again on the same database.
func (s *server) restart() *server {
	s.t.Helper()
	s.kill()
	return startWithEnv(s.t, s.env)
}

// response is an HTTP answer read whole.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

// problem is the problem+json body of an error answer.
type problem struct {
	Type    string `json:"type"`
	Title   string `json:"title"`
	Status  int    `json:"status"`
	Detail  string `json:"detail"`
	Code    string `json:"code"`
	OpIndex *int   `json:"op_index"`
	Current *int64 `json:"current_version"`
}

func (s *server) do(method, path string, body any, header ...string) (response, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		enc, err := json.Marshal(b)
		if err != nil {
			return response{}, err
		}
		rd = bytes.NewReader(enc)
	}
	req, err := http.NewRequest(method, s.URL+path, rd)
	if err != nil {
		return response{}, err
	}
	// Every body, and every POST even without one, is JSON: the server
	// refuses other types (tests of that set the header themselves).
	if rd != nil || method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: data}, nil
}

// must does a request that has to reach the server.
func (s *server) must(method, path string, body any, header ...string) response {
	s.t.Helper()
	r, err := s.do(method, path, body, header...)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

type roomJSON struct {
	ID           string `json:"id"`
	Name         string `json:"name"`
	Version      int64  `json:"version"`
	ElementCount int64  `json:"element_count"`
}

func (s *server) createRoom(name string) roomJSON {
	s.t.Helper()
	r := s.must("POST", "/rooms", map[string]string{"name": name})
	if r.Status != http.StatusCreated {
		s.t.Fatalf("create room: %d %s", r.Status, r.Body)
	}
	var rm roomJSON
	r.decode(s.t, &rm)
	return rm
}

func (s *server) roomVersion(id string) int64 {
	s.t.Helper()
	r := s.must("GET", "/rooms/"+id, nil)
	if r.Status != http.StatusOK {
		s.t.Fatalf("get room: %d %s", r.Status, r.Body)
	}
	var rm roomJSON
	r.decode(s.t, &rm)
	return rm.Version
}

type loggedOp struct {
	Seq       int64           `json:"seq"`
	Op        json.RawMessage `json:"op"`
	ClientID  string          `json:"client_id"`
	CreatedAt string          `json:"created_at"`
}

// allOps pages through GET /ops from the start.
func (s *server) allOps(id string) (int64, []loggedOp) {
	s.t.Helper()
	var all []loggedOp
	var version int64
	since := int64(0)
	for {
		r := s.must("GET", fmt.Sprintf("/rooms/%s/ops?since=%d&limit=1000", id, since), nil)
		if r.Status != http.StatusOK {
			s.t.Fatalf("list ops: %d %s", r.Status, r.Body)
		}
		var page struct {
			Version int64      `json:"version"`
			Ops     []loggedOp `json:"ops"`
		}
		r.decode(s.t, &page)
		version = page.Version
		all = append(all, page.Ops...)
		if len(page.Ops) < 1000 {
			return version, all
		}
		since = page.Ops[len(page.Ops)-1].Seq
	}
}

// databases runs fn against the built binary on each database.
func databases(t *testing.T, fn func(t *testing.T, cfg store.Config)) {
	storetest.Dialects(t, fn)
}
