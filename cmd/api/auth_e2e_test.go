package main_test

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/liveshare/liveshare/auth"
	"github.com/liveshare/liveshare/store/storetest"
)

// TestAuthConfiguration: open mode is refused on an address other machines
// reach unless asked for; jwt mode needs a key; each refusal is one line
// naming the setting, and never shows the secret.
func TestAuthConfiguration(t *testing.T) {
	t.Parallel()
	cases := []struct {
		env  []string
		want string
	}{
		{[]string{"LIVESHARE_ADDR=0.0.0.0:0"}, "LIVESHARE_AUTH"},
		{[]string{"LIVESHARE_ADDR=0.0.0.0:0", "LIVESHARE_AUTH=jwt"}, "LIVESHARE_AUTH"},
		{[]string{"LIVESHARE_AUTH=sometimes"}, "LIVESHARE_AUTH"},
		{[]string{"LIVESHARE_JWT_SECRET=short-secret-oops"}, "LIVESHARE_JWT_SECRET"},
		{[]string{"LIVESHARE_JWT_PUBLIC_KEY_FILE=/nonexistent.pem"}, "LIVESHARE_JWT_PUBLIC_KEY_FILE"},
		{[]string{"LIVESHARE_CORS_ORIGINS=https://app.example/path"}, "LIVESHARE_CORS_ORIGINS"},
		{[]string{"LIVESHARE_PUBLIC_URL=ftp://x"}, "LIVESHARE_PUBLIC_URL"},
	}
	for _, c := range cases {
		cmd := exec.Command(binary)
		cmd.Env = append(os.Environ(), append([]string{"LIVESHARE_DATA_DIR=" + t.TempDir(), "LIVESHARE_ADDR=127.0.0.1:0"}, c.env...)...)
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Errorf("%v: the process started", c.env)
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != 1 || !strings.Contains(lines[0], c.want) || strings.Contains(lines[0], "short-secret-oops") {
			t.Errorf("%v: output %q, want one line naming %s (and no secret)", c.env, out, c.want)
		}
	}
	// -h shows no secret taken from the environment.
	cmd := exec.Command(binary, "-h")
	cmd.Env = append(os.Environ(), "LIVESHARE_JWT_SECRET=never-print-me-never-print-me-0123", "DATABASE_URL=postgres://u:never-print-me@db/x")
	out, _ := cmd.CombinedOutput()
	if strings.Contains(string(out), "never-print-me") || !strings.Contains(string(out), "-jwt-secret") {
		t.Errorf("-h output shows the secret, or no -jwt-secret flag:\n%s", out)
	}
	// Asked for explicitly, open mode starts on any address.
	srv := startServer(t, storetest.Config(t, "sqlite"), "LIVESHARE_AUTH=open", "LIVESHARE_ADDR=0.0.0.0:0")
	if !strings.Contains(srv.logs.String(), "auth=open") {
		t.Errorf("the start line does not name the mode:\n%s", srv.logs.String())
	}
}

// TestDNSRebinding: the default configuration answers only its own names.
func TestDNSRebinding(t *testing.T) {
	t.Parallel()
	srv := startServer(t, storetest.Config(t, "sqlite"))
	rm := srv.createRoom("laptop")
	for _, host := range []string{"attacker.example", "rebind.attacker.example:8080"} {
		for _, path := range []string{"/rooms", "/rooms/" + rm.ID, "/healthz"} {
			req, _ := http.NewRequest("GET", srv.URL+path, nil)
			req.Host = host
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusMisdirectedRequest {
				t.Errorf("GET %s with Host %s: %d, want 421", path, host, resp.StatusCode)
			}
		}
	}
	port := srv.URL[strings.LastIndex(srv.URL, ":")+1:]
	req, _ := http.NewRequest("GET", srv.URL+"/rooms/"+rm.ID, nil)
	req.Host = "localhost:" + port
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("Host localhost: %d", resp.StatusCode)
	}
	// A cross-site no-cors post changes nothing.
	r := srv.must("POST", "/rooms/"+rm.ID+"/ops", `{"ops":[{"op":"add_node","node":{"id":"x"}}]}`, "Content-Type", "text/plain;charset=UTF-8")
	if r.Status != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain post: %d %s", r.Status, r.Body)
	}
	if v := srv.roomVersion(rm.ID); v != 0 {
		t.Errorf("version %d after a refused post", v)
	}
}

// TestTokenCommand: `token` mints what the server accepts, as the README
// shows.
func TestTokenCommand(t *testing.T) {
	t.Parallel()
	const secret = "token-command-secret-0123456789abcdef"
	cmd := exec.Command(binary, "token", "-sub", "alice", "-name", "Alice", "-room", "*:editor", "-create-rooms", "-ttl", "12h")
	cmd.Env = append(os.Environ(), "LIVESHARE_JWT_SECRET="+secret)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("token: %v", err)
	}
	tok := strings.TrimSpace(string(out))
	srv := startServer(t, storetest.Config(t, "sqlite"), "LIVESHARE_JWT_SECRET="+secret)
	bearer := []string{"Authorization", "Bearer " + tok}
	if r := srv.must("POST", "/rooms", `{"name":"minted"}`, bearer...); r.Status != 201 {
		t.Fatalf("create with a minted token: %d %s", r.Status, r.Body)
	}
	if r := srv.must("GET", "/session", nil, bearer...); r.Status != 200 || !strings.Contains(string(r.Body), `"name":"Alice"`) {
		t.Errorf("session: %d %s", r.Status, r.Body)
	}
	if r := srv.must("GET", "/rooms", nil); r.Status != 401 {
		t.Errorf("no token in jwt mode: %d", r.Status)
	}
	if r := srv.must("GET", "/rooms?access_token="+tok, nil); r.Status != 401 {
		t.Errorf("a token in the URL was accepted: %d", r.Status)
	}
	for _, args := range [][]string{{"token"}, {"token", "-sub", "a", "-room", "x:boss"}} {
		cmd := exec.Command(binary, args...)
		cmd.Env = append(os.Environ(), "LIVESHARE_JWT_SECRET="+secret)
		if out, err := cmd.CombinedOutput(); err == nil {
			t.Errorf("%v: minted %s", args, out)
		}
	}
	cmd = exec.Command(binary, "token", "-sub", "a")
	cmd.Env = append(os.Environ(), "LIVESHARE_JWT_SECRET=")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "LIVESHARE_JWT_SECRET") {
		t.Errorf("without a secret: %v %s", err, out)
	}
}

// TestMetricsAccess: /metrics is admin-only in jwt mode, or alone on its own
// address.
func TestMetricsAccess(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr := ln.Addr().String()
	ln.Close()
	srv := startServer(t, storetest.Config(t, "sqlite"), "LIVESHARE_JWT_SECRET="+matrixSecret, "LIVESHARE_METRICS_ADDR="+metricsAddr)
	admin := mintToken(t, matrixSecret, "root", time.Hour, func(c *auth.Claims) { c.Admin = true })
	if r := srv.must("GET", "/metrics", nil, "Authorization", "Bearer "+admin); r.Status != 404 {
		t.Errorf("/metrics on the API with LIVESHARE_METRICS_ADDR: %d", r.Status)
	}
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/metrics on %s: %d", metricsAddr, resp.StatusCode)
	}
	resp, err = http.Get("http://" + metricsAddr + "/rooms")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("the metrics address serves /rooms: %d", resp.StatusCode)
	}
}

// TestMemberRemovalAcrossInstances: a member removed on one instance loses
// its stream on another within 5 s.
func TestMemberRemovalAcrossInstances(t *testing.T) {
	t.Parallel()
	_, servers := startCluster(t, 2, "LIVESHARE_JWT_SECRET="+matrixSecret)
	a, b := servers[0], servers[1]
	owner := []string{"Authorization", "Bearer " + mintToken(t, matrixSecret, "olga", time.Hour, func(c *auth.Claims) { c.CreateRooms = true })}
	r := a.must("POST", "/rooms", `{"name":"shared"}`, owner...)
	var rm roomJSON
	r.decode(t, &rm)
	if r := a.must("PUT", "/rooms/"+rm.ID+"/members/bob", `{"role":"viewer"}`, owner...); r.Status != 204 {
		t.Fatalf("add bob: %d %s", r.Status, r.Body)
	}
	bob := mintToken(t, matrixSecret, "bob", time.Hour, nil)
	cl := snapSubscribeHeader(t, b.URL, rm.ID, http.Header{"Authorization": {"Bearer " + bob}})
	cl.nextNamed(t, "snapshot", 5*time.Second)
	start := time.Now()
	if r := a.must("DELETE", "/rooms/"+rm.ID+"/members/bob", nil, owner...); r.Status != 204 {
		t.Fatalf("remove bob: %d %s", r.Status, r.Body)
	}
	cl.nextNamed(t, "auth_expired", 5*time.Second)
	t.Logf("bob's stream on the other instance ended %s after the removal", time.Since(start))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	select {
	case _, ok := <-cl.events:
		if ok {
			t.Error("an event after auth_expired")
		}
	case <-ctx.Done():
		t.Error("the stream did not end after auth_expired")
	}
	if r := b.must("GET", "/rooms/"+rm.ID, nil, "Authorization", "Bearer "+bob); r.Status != 404 {
		t.Errorf("bob reads the room on the other instance after removal: %d", r.Status)
	}
}

// TestHeaderLimit: request headers are bounded at 64 KiB.
func TestHeaderLimit(t *testing.T) {
	t.Parallel()
	srv := startServer(t, storetest.Config(t, "sqlite"))
	if r := srv.must("GET", "/healthz", nil, "X-Padding", strings.Repeat("p", 60<<10)); r.Status != 200 {
		t.Errorf("60 KiB of headers: %d", r.Status)
	}
	if r := srv.must("GET", "/healthz", nil, "X-Padding", strings.Repeat("p", 80<<10)); r.Status != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("80 KiB of headers: %d, want 431", r.Status)
	}
}
