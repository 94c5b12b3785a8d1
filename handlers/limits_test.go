package handlers_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/liveshare/liveshare/auth"
	"github.com/liveshare/liveshare/handlers"
	"github.com/liveshare/liveshare/store/storetest"
)

// Windows of an hour: no window ends within a test, so what is counted
// is exactly what the test sent (httprate reads the wall clock).
var threePerHour = handlers.Rate{Limit: 3, Window: time.Hour}

// limitCase is one limit of DESIGN.md 9.4: how to set it, one request it
// counts, and what the test reads to see that nothing was applied.
type limitCase struct {
	name string
	set  func(l *handlers.Limits)
	// do sends one counted request as tok in room and returns its answer.
	do func(t *testing.T, srv *testServer, tok, room string) *http.Response
	// applied is what the counted requests changed so far.
	applied func(t *testing.T, srv *testServer, room string) int64
}

func authz(tok string) []string {
	return []string{"Authorization", "Bearer " + tok, "Content-Type", "application/json"}
}

func limitCases() []limitCase {
	snapshotCount := func(t *testing.T, srv *testServer, room string) int64 {
		metas, err := srv.Store.ListSnapshots(context.Background(), room)
		if err != nil {
			t.Fatal(err)
		}
		return int64(len(metas))
	}
	return []limitCase{{
		name: "snapshot reads",
		set:  func(l *handlers.Limits) { l.SnapshotReads = threePerHour },
		do: func(t *testing.T, srv *testServer, tok, room string) *http.Response {
			resp, _ := call(t, "GET", srv.URL+"/rooms/"+room+"/snapshots", "", authz(tok)...)
			return resp
		},
		applied: func(*testing.T, *testServer, string) int64 { return 0 },
	}, {
		name: "snapshot creates",
		set:  func(l *handlers.Limits) { l.SnapshotCreates = threePerHour },
		do: func(t *testing.T, srv *testServer, tok, room string) *http.Response {
			// A change first: a snapshot of an unchanged room stores nothing.
			if r, body := call(t, "POST", srv.URL+"/rooms/"+room+"/ops", addNodes("n"+strconv.FormatInt(time.Now().UnixNano(), 36)), authz(tok)...); r.StatusCode != 200 {
				t.Fatalf("post ops: %d %s", r.StatusCode, body)
			}
			resp, _ := call(t, "POST", srv.URL+"/rooms/"+room+"/snapshots", "", authz(tok)...)
			return resp
		},
		applied: snapshotCount,
	}, {
		name: "ops",
		set:  func(l *handlers.Limits) { l.Ops = threePerHour },
		do: func(t *testing.T, srv *testServer, tok, room string) *http.Response {
			resp, _ := call(t, "POST", srv.URL+"/rooms/"+room+"/ops", addNodes("n"+strconv.FormatInt(time.Now().UnixNano(), 36)), authz(tok)...)
			return resp
		},
		applied: func(t *testing.T, srv *testServer, room string) int64 { return roomVersion(t, srv, room) },
	}, {
		name: "connects",
		set:  func(l *handlers.Limits) { l.Connects = threePerHour },
		do: func(t *testing.T, srv *testServer, tok, room string) *http.Response {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel() // ends the stream once its answer's head is read
			req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/rooms/"+room+"/events", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp
		},
		applied: func(*testing.T, *testServer, string) int64 { return 0 },
	}, {
		name: "rooms",
		set:  func(l *handlers.Limits) { l.Rooms = threePerHour },
		do: func(t *testing.T, srv *testServer, tok, _ string) *http.Response {
			resp, _ := call(t, "POST", srv.URL+"/rooms", `{"name":"r"}`, authz(tok)...)
			return resp
		},
		applied: func(t *testing.T, srv *testServer, _ string) int64 {
			rooms, _, err := srv.Store.ListRooms(context.Background(), 100, "")
			if err != nil {
				t.Fatal(err)
			}
			return int64(len(rooms))
		},
	}}
}

// Each limit: within it requests pass and say what is left; past it 429
// rate_limited with Retry-After and the RateLimit headers, and nothing
// applied; another subject is unaffected; off (0), nothing is refused.
func TestRateLimits(t *testing.T) {
	for _, c := range limitCases() {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var lim handlers.Limits
			c.set(&lim)
			srv := newTestServer(t, storetest.Open(t, "sqlite"), serverOptions{auth: jwtConfig(t), limits: lim})
			everything := func(cl *auth.Claims) { cl.CreateRooms, cl.Rooms = true, map[string]string{"*": "owner"} }
			alice, bob := mint(t, "alice", time.Hour, everything), mint(t, "bob", time.Hour, everything)
			room := srv.createRoom()

			for i := range 3 {
				resp := c.do(t, srv, alice, room)
				if resp.StatusCode >= 300 {
					t.Fatalf("request %d within the limit: %d", i+1, resp.StatusCode)
				}
				if got, want := resp.Header.Get("RateLimit-Limit"), "3"; got != want {
					t.Errorf("request %d: RateLimit-Limit %q, want %q", i+1, got, want)
				}
				if got, want := resp.Header.Get("RateLimit-Remaining"), strconv.Itoa(2-i); got != want {
					t.Errorf("request %d: RateLimit-Remaining %q, want %q", i+1, got, want)
				}
			}
			before := c.applied(t, srv, room)
			resp := c.do(t, srv, alice, room)
			if resp.StatusCode != http.StatusTooManyRequests {
				t.Fatalf("past the limit: %d, want 429", resp.StatusCode)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("429 Content-Type %q", ct)
			}
			retry, err := strconv.Atoi(resp.Header.Get("Retry-After"))
			if err != nil || retry < 1 || retry > 3600+1200 {
				t.Errorf("Retry-After %q, want seconds within the window and a request's share", resp.Header.Get("Retry-After"))
			}
			reset, err := strconv.Atoi(resp.Header.Get("RateLimit-Reset"))
			if err != nil || reset < 0 || reset > 3600 || retry < reset {
				t.Errorf("RateLimit-Reset %q (Retry-After %d), want seconds to the window's end, no later than Retry-After", resp.Header.Get("RateLimit-Reset"), retry)
			}
			if resp.Header.Get("RateLimit-Limit") != "3" || resp.Header.Get("RateLimit-Remaining") != "0" {
				t.Errorf("429 headers %v", resp.Header)
			}
			if after := c.applied(t, srv, room); after != before {
				t.Errorf("a refused request applied something: %d before, %d after", before, after)
			}

			if resp := c.do(t, srv, bob, room); resp.StatusCode >= 300 {
				t.Errorf("another subject: %d, want it unaffected", resp.StatusCode)
			}
		})
	}
}

// 0 turns each limit off: no request is refused, and no RateLimit header
// is sent.
func TestRateLimitsOff(t *testing.T) {
	for _, c := range limitCases() {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			srv := newTestServer(t, storetest.Open(t, "sqlite"), serverOptions{auth: jwtConfig(t)})
			alice := mint(t, "alice", time.Hour, func(cl *auth.Claims) { cl.CreateRooms, cl.Rooms = true, map[string]string{"*": "owner"} })
			room := srv.createRoom()
			for i := range 5 {
				resp := c.do(t, srv, alice, room)
				if resp.StatusCode >= 300 || resp.Header.Get("RateLimit-Limit") != "" {
					t.Fatalf("request %d with the limit off: %d, RateLimit-Limit %q", i+1, resp.StatusCode, resp.Header.Get("RateLimit-Limit"))
				}
			}
		})
	}
}

// In open mode a limit counts per client address; X-Forwarded-For names
// the client only when the peer is a trusted proxy.
func TestRateLimitsByAddress(t *testing.T) {
	post := func(t *testing.T, srv *testServer, room, xff string) int {
		resp, _ := call(t, "POST", srv.URL+"/rooms/"+room+"/ops", addNodes("n"+strconv.FormatInt(time.Now().UnixNano(), 36)),
			"Content-Type", "application/json", "X-Forwarded-For", xff)
		return resp.StatusCode
	}
	limits := handlers.Limits{Ops: handlers.Rate{Limit: 2, Window: time.Hour}}

	t.Run("untrusted peer", func(t *testing.T) {
		srv := newTestServer(t, storetest.Open(t, "sqlite"), serverOptions{limits: limits})
		room := srv.createRoom()
		// A client naming a new address each time is still one client.
		for i, want := range []int{200, 200, 429} {
			if got := post(t, srv, room, "203.0.113."+strconv.Itoa(i)); got != want {
				t.Errorf("request %d: %d, want %d", i+1, got, want)
			}
		}
	})
	t.Run("trusted proxy", func(t *testing.T) {
		limits := limits
		limits.TrustedProxies = []string{"127.0.0.0/8", "::1/128"}
		srv := newTestServer(t, storetest.Open(t, "sqlite"), serverOptions{limits: limits})
		room := srv.createRoom()
		for i, want := range []int{200, 200, 429} {
			if got := post(t, srv, room, "203.0.113.7"); got != want {
				t.Errorf("client 203.0.113.7, request %d: %d, want %d", i+1, got, want)
			}
		}
		// Another client behind the proxy; an address the client put in
		// front of the proxy's entry is not read.
		if got := post(t, srv, room, "198.51.100.1, 203.0.113.8"); got != 200 {
			t.Errorf("client 203.0.113.8: %d, want 200", got)
		}
	})
}

// The process's stream cap answers 503 too_many_streams and closes the
// connection; a subject's cap answers 429; the streams open are unharmed
// and a closed one frees its slot.
func TestStreamCaps(t *testing.T) {
	srv := newTestServer(t, storetest.Open(t, "sqlite"), serverOptions{auth: jwtConfig(t),
		limits: handlers.Limits{MaxStreams: 3, MaxStreamsPerSubject: 2}})
	room := srv.createRoom()
	viewer := func(sub string) string {
		return mint(t, sub, time.Hour, func(c *auth.Claims) { c.Rooms = map[string]string{"*": "viewer"} })
	}
	alice, bob, carol := viewer("alice"), viewer("bob"), viewer("carol")
	open := func(tok string) (*http.Response, context.CancelFunc) {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/rooms/"+room+"/events", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cancel(); resp.Body.Close() })
		return resp, cancel
	}
	a1, closeA1 := open(alice)
	a2, _ := open(alice)
	if a1.StatusCode != 200 || a2.StatusCode != 200 {
		t.Fatalf("alice's two streams: %d, %d", a1.StatusCode, a2.StatusCode)
	}
	a3, _ := open(alice)
	var p handlers.Problem
	_ = json.NewDecoder(a3.Body).Decode(&p)
	if a3.StatusCode != 429 || p.Code != "too_many_streams" || a3.Header.Get("Retry-After") == "" {
		t.Errorf("alice's third stream: %d %q, want 429 too_many_streams with Retry-After", a3.StatusCode, p.Code)
	}
	b1, _ := open(bob)
	if b1.StatusCode != 200 {
		t.Fatalf("bob's stream: %d", b1.StatusCode)
	}
	c1, _ := open(carol)
	p = handlers.Problem{}
	_ = json.NewDecoder(c1.Body).Decode(&p)
	if c1.StatusCode != 503 || p.Code != "too_many_streams" || !c1.Close {
		t.Errorf("past the process's cap: %d %q (connection closed: %v), want 503 too_many_streams and Connection: close", c1.StatusCode, p.Code, c1.Close)
	}
	if resp, _ := call(t, "GET", srv.URL+"/healthz", ""); resp.StatusCode != 200 {
		t.Errorf("/healthz at the cap: %d", resp.StatusCode)
	}
	closeA1()
	// The slot is freed when alice's stream's handler ends: wait for it
	// by asking until carol gets in (each refusal changes nothing).
	deadline := time.Now().Add(10 * time.Second)
	for {
		c2, cancel := open(carol)
		if c2.StatusCode == 200 {
			break
		}
		cancel()
		if time.Now().After(deadline) {
			t.Fatalf("a closed stream never freed its slot: %d", c2.StatusCode)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
