package main_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// deployNginxConfig returns the nginx block of docs/DEPLOY.md.
func deployNginxConfig(t *testing.T) string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "DEPLOY.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```nginx\n(.*?)```").FindSubmatch(doc)
	if m == nil {
		t.Fatal("docs/DEPLOY.md has no ```nginx block")
	}
	return string(m[1])
}

// nginxPath finds nginx; where it is missing the test is skipped, unless
// LIVESHARE_NGINX_TESTS=required (CI), where it fails.
func nginxPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"nginx", "/usr/sbin/nginx"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("LIVESHARE_NGINX_TESTS") == "required" {
		t.Fatal("LIVESHARE_NGINX_TESTS=required but nginx was not found (apt-get install nginx)")
	}
	t.Skip("nginx not installed")
	return ""
}

// startNginx runs nginx in the foreground with the DEPLOY.md block, its
// upstream servers replaced by upstreams and its listen port by a free
// one, and returns the address it listens on.
func startNginx(t *testing.T, upstreams []string) string {
	t.Helper()
	bin := nginxPath(t)
	conf := deployNginxConfig(t)
	servers := regexp.MustCompile(`(?m)^(\s*)server 127\.0\.0\.1:\d+;\n`)
	if n := len(servers.FindAllString(conf, -1)); n != len(upstreams) {
		t.Fatalf("DEPLOY.md's upstream has %d servers, the test starts %d", n, len(upstreams))
	}
	i := 0
	conf = servers.ReplaceAllStringFunc(conf, func(line string) string {
		indent := line[:len(line)-len(strings.TrimLeft(line, " \t"))]
		i++
		return indent + "server " + strings.TrimPrefix(upstreams[i-1], "http://") + ";\n"
	})
	addr := fmt.Sprintf("127.0.0.1:%d", browserFreePort(t))
	listen := regexp.MustCompile(`(?m)^(\s*)listen \d+;`)
	if !listen.MatchString(conf) {
		t.Fatal("DEPLOY.md's server block has no `listen <port>;` line")
	}
	conf = listen.ReplaceAllString(conf, "${1}listen "+addr+";")

	dir := t.TempDir()
	main := fmt.Sprintf(`daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 256; }
http {
    access_log off;
    # The config must stream by itself, not thanks to LiveShare's
    # X-Accel-Buffering header.
    proxy_ignore_headers X-Accel-Buffering;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    include %[1]s/liveshare.conf;
}
`, dir)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "liveshare.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"))
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx exited: %s\n%s\nconfig:\n%s", out.String(), log, conf)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx does not listen on %s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// nginxStream is an event stream read through nginx: every event name with
// the time it arrived.
type nginxStream struct {
	events chan string
	opened time.Time
}

func openNginxStream(t *testing.T, ctx context.Context, url string) *nginxStream {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &nginxStream{events: make(chan string, 64), opened: time.Now()}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s through nginx: %d", url, resp.StatusCode)
	}
	go func() {
		defer resp.Body.Close()
		defer close(s.events)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 8<<20)
		for sc.Scan() {
			if name, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
				s.events <- name
			} else if strings.HasPrefix(sc.Text(), ":") {
				s.events <- "(heartbeat)"
			}
		}
	}()
	return s
}

func (s *nginxStream) next(t *testing.T, within time.Duration) string {
	t.Helper()
	select {
	case ev, ok := <-s.events:
		if !ok {
			t.Fatal("the stream through nginx ended")
		}
		return ev
	case <-time.After(within):
		t.Fatalf("nothing came through nginx within %s", within)
		return ""
	}
}

// TestNginxStreamsThroughDeployConfig runs docs/DEPLOY.md's nginx config in
// front of two instances on one PostgreSQL: a stream through it gets its
// first event within 1 s (nginx does not buffer it), heartbeats and ops
// pass at once, and a write through either instance reaches both streams.
func TestNginxStreamsThroughDeployConfig(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts LiveShare and nginx")
	}
	nginxPath(t) // skip before starting instances where nginx is missing
	_, servers := startCluster(t, 2, "LIVESHARE_SSE_HEARTBEAT=300ms")
	proxy := &server{t: t, URL: "http://" + startNginx(t, []string{servers[0].URL, servers[1].URL})}

	r := proxy.must("POST", "/rooms", map[string]any{"name": "through nginx"})
	if r.Status != http.StatusCreated {
		t.Fatalf("POST /rooms through nginx: %d %s", r.Status, r.Body)
	}
	var room struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(r.Body, &room); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// nginx sends consecutive requests to alternate instances: two streams
	// land on both.
	var streams []*nginxStream
	for range 2 {
		s := openNginxStream(t, ctx, proxy.URL+"/rooms/"+room.ID+"/events")
		if ev := s.next(t, time.Second); ev == "" {
			t.Fatal("no first event")
		}
		if d := time.Since(s.opened); d > time.Second {
			t.Fatalf("first event through nginx after %s", d)
		}
		streams = append(streams, s)
	}
	for _, s := range streams {
		for ev := s.next(t, 2*time.Second); ev != "(heartbeat)"; ev = s.next(t, 2*time.Second) {
		}
	}
	for i := range 2 {
		r := proxy.must("POST", "/rooms/"+room.ID+"/ops", map[string]any{"ops": []any{
			map[string]any{"op": "add_node", "node": map[string]any{"id": fmt.Sprintf("n%d", i)}}}})
		if r.Status != http.StatusOK {
			t.Fatalf("POST ops through nginx: %d %s", r.Status, r.Body)
		}
		for _, s := range streams {
			for ev := s.next(t, 2*time.Second); ev != "ops"; ev = s.next(t, 2*time.Second) {
			}
		}
	}
}
