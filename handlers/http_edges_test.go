package handlers_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/liveshare/liveshare/handlers"
	"github.com/liveshare/liveshare/room"
	"github.com/liveshare/liveshare/store/storetest"
	"github.com/liveshare/liveshare/web"
)

// Every GET route answers HEAD with the GET's status and headers and no
// body; the event stream's HEAD does not open a stream.
func TestHeadOfEveryGetRoute(t *testing.T) {
	st := storetest.Open(t, "sqlite")
	ts := newTestServer(t, st, serverOptions{})
	h := handlers.New(handlers.Config{Store: st, Rooms: ts.Rooms, Snapshots: ts.Snapshots, App: web.App(http.HandlerFunc(handlers.NotFound))})
	srv := httptest.NewServer(h)
	defer srv.Close()
	roomID := ts.createRoom()
	if _, err := ts.post(roomID, `{"ops":[{"op":"add_node","node":{"id":"n"}}]}`); err != nil {
		t.Fatal(err)
	}
	meta, err := ts.Snapshots.Take(context.Background(), mustRoom(t, ts, roomID), "manual")
	if err != nil {
		t.Fatal(err)
	}
	fill := strings.NewReplacer("{roomID}", roomID, "{snapshotID}", meta.ID, "*", "index.html")
	var gets []string
	err = chi.Walk(h.(chi.Routes), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		if method == http.MethodGet {
			gets = append(gets, fill.Replace(route))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(gets) < 10 {
		t.Fatalf("only %d GET routes found: %v", len(gets), gets)
	}
	client := &http.Client{Timeout: 5 * time.Second}
	for _, path := range gets {
		path = strings.TrimSuffix(path, "/")
		if path == "" {
			path = "/"
		}
		get, err := client.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		get.Body.Close()
		head, err := client.Head(srv.URL + path)
		if err != nil {
			t.Fatalf("HEAD %s: %v", path, err)
		}
		body, _ := io.ReadAll(head.Body)
		head.Body.Close()
		if head.StatusCode != get.StatusCode || len(body) != 0 {
			t.Errorf("HEAD %s: %d with %d bytes, GET %d", path, head.StatusCode, len(body), get.StatusCode)
		}
		if hc, gc := head.Header.Get("Content-Type"), get.Header.Get("Content-Type"); hc != gc {
			t.Errorf("HEAD %s: Content-Type %q, GET %q", path, hc, gc)
		}
	}
	// HEAD of an unknown room's stream is its 404, as GET's.
	resp, err := client.Head(srv.URL + "/rooms/00000000-0000-4000-8000-000000000000/events")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("HEAD of an unknown room's events: %d", resp.StatusCode)
	}
}

func TestUnknownDocsFileIsProblemJSON(t *testing.T) {
	srv := httptest.NewServer(fullRouter(t))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/docs/nope.js")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p struct {
		Code string `json:"code"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil || resp.StatusCode != 404 ||
		resp.Header.Get("Content-Type") != "application/problem+json" || p.Code != "not_found" {
		t.Fatalf("GET /docs/nope.js: %d %q code %q (%v)", resp.StatusCode, resp.Header.Get("Content-Type"), p.Code, err)
	}
	// The real assets are still served.
	if resp, err := http.Get(srv.URL + "/docs/swagger-ui-bundle.js"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /docs/swagger-ui-bundle.js: %v %v", resp.StatusCode, err)
	}
}

// A body that trickles in is cut at the body timeout with 408, and
// nothing is applied.
func TestSlowBodyIsRequestTimeout(t *testing.T) {
	st := storetest.Open(t, "sqlite")
	ts := newTestServer(t, st, serverOptions{})
	h := handlers.New(handlers.Config{Store: st, Rooms: ts.Rooms, Snapshots: ts.Snapshots, BodyTimeout: 300 * time.Millisecond})
	srv := httptest.NewServer(h)
	defer srv.Close()
	roomID := ts.createRoom()

	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := `{"ops":[{"op":"add_node","node":{"id":"slow"}}]}`
	fmt.Fprintf(conn, "POST /rooms/%s/ops HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", roomID, len(body))
	// Half the body, then nothing.
	if _, err := io.WriteString(conn, body[:10]); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p struct {
		Code string `json:"code"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&p)
	if resp.StatusCode != http.StatusRequestTimeout || p.Code != "request_timeout" {
		t.Fatalf("slow body: %d %q, want 408 request_timeout", resp.StatusCode, p.Code)
	}
	if v := mustRoom(t, ts, roomID).Version(); v != 0 {
		t.Fatalf("room at version %d after a timed-out body", v)
	}
}

func mustRoom(t *testing.T, ts *testServer, id string) *room.Room {
	t.Helper()
	rm, err := ts.Rooms.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return rm
}
