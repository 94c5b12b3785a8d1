package handlers_test

// Contract tests, part 2: real requests against the real API over a real
// store, success and error cases for every endpoint, each answer's status,
// headers and body validated against openapi.yaml by libopenapi-validator,
// and every event of the event stream validated against the data schema the
// spec names for it.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pb33f/libopenapi-validator/paths"
	"github.com/pb33f/libopenapi-validator/schema_validation"

	"github.com/liveshare/liveshare/handlers"
	"github.com/liveshare/liveshare/room"
	"github.com/liveshare/liveshare/snapshot"
	"github.com/liveshare/liveshare/store"
	"github.com/liveshare/liveshare/store/storetest"
	"github.com/liveshare/liveshare/web"
)

// contractServer is the API as the binary wires it, on an httptest server.
type contractServer struct {
	URL   string
	Store *store.Store
}

type contractLimits struct {
	keep        int
	maxSnapshot int64
	stateBudget int64
	auth        handlers.AuthConfig
	limits      handlers.Limits
}

func newContractServer(t *testing.T, st *store.Store, l contractLimits) *contractServer {
	t.Helper()
	if l.keep == 0 {
		l.keep = 2
	}
	if l.maxSnapshot == 0 {
		l.maxSnapshot = 10 << 20
	}
	snaps := snapshot.NewRegistry(st, snapshot.Config{Interval: time.Hour, Keep: l.keep, MaxBytes: l.maxSnapshot})
	rooms := room.NewManager(st, room.Options{Snapshots: snaps, StateBudget: l.stateBudget})
	done := make(chan struct{})
	h := handlers.New(handlers.Config{
		Store: st, Rooms: rooms, Snapshots: snaps, MaxBodyBytes: 256 << 10, App: web.App(http.HandlerFunc(handlers.NotFound)),
		Streams: handlers.StreamConfig{Done: done}, BodyTimeout: time.Second, Auth: l.auth, Limits: l.limits,
	})
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		close(done)
		srv.Close()
	})
	return &contractServer{URL: srv.URL, Store: st}
}

// contract sends requests and checks every answer against the spec, and
// records which documented answers the suite has seen.
type contract struct {
	t    *testing.T
	spec *spec

	mu   sync.Mutex
	seen map[string]map[string]bool // "GET /rooms/{}" → status → seen
}

func newContract(t *testing.T) *contract {
	return &contract{t: t, spec: loadSpec(t), seen: map[string]map[string]bool{}}
}

// answer is one response, read whole.
type answer struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into a generic value.
func (a answer) JSON(t testing.TB) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(a.Body, &v); err != nil {
		t.Fatalf("answer %d is not a JSON object: %v\n%s", a.Status, err, a.Body)
	}
	return v
}

func (a answer) str(t testing.TB, field string) string {
	t.Helper()
	s, _ := a.JSON(t)[field].(string)
	return s
}

// expect fails the test unless the answer has status (and, for a problem,
// code).
func (a answer) expect(t testing.TB, status int, code string) answer {
	t.Helper()
	if a.Status != status {
		t.Fatalf("status %d, want %d: %s", a.Status, status, a.Body)
	}
	if code != "" {
		if got := a.str(t, "code"); got != code {
			t.Fatalf("problem code %q, want %q: %s", got, code, a.Body)
		}
	}
	return a
}

// do sends one request to base and validates its answer against the spec.
func (c *contract) do(base, method, path, body string, header ...string) answer {
	c.t.Helper()
	req, err := http.NewRequest(method, base+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if body != "" || method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
		if header[i] == "Host" { // net/http sends req.Host, never the header
			req.Host = header[i+1]
		}
	}
	return c.send(req, []byte(body))
}

// send does req, reads the answer whole and checks the exchange; sent is
// the body as the server saw it.
func (c *contract) send(req *http.Request, sent []byte) answer {
	c.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		c.t.Fatalf("%s %s: read answer: %v", req.Method, req.URL.Path, err)
	}
	c.check(req, sent, resp, data)
	return answer{Status: resp.StatusCode, Header: resp.Header, Body: data}
}

// doSlow sends a request whose body stops after part (it announces more),
// and validates the answer the server gives without waiting for the rest.
func (c *contract) doSlow(base, method, path, part string) answer {
	c.t.Helper()
	pr, pw := io.Pipe()
	defer pw.Close()
	req, err := http.NewRequest(method, base+path, pr)
	if err != nil {
		c.t.Fatal(err)
	}
	req.ContentLength = int64(len(part) + 100)
	req.Header.Set("Content-Type", "application/json")
	go func() { _, _ = io.WriteString(pw, part) }()
	return c.send(req, []byte(part))
}

// check validates one exchange: the answer always, the request too when the
// server accepted it (a 2xx or 3xx to a request the spec forbids is drift).
func (c *contract) check(req *http.Request, reqBody []byte, resp *http.Response, respBody []byte) {
	c.t.Helper()
	where := fmt.Sprintf("%s %s → %d", req.Method, req.URL.RequestURI(), resp.StatusCode)
	pathItem, errs, template := paths.FindPath(req, c.spec.model, nil)
	if pathItem == nil {
		c.t.Errorf("%s: no path of the spec matches:%s", where, describe(errs))
		return
	}
	key := routeKey(req.Method, template)
	status := strconv.Itoa(resp.StatusCode)
	op := pathItem.GetOperations().GetOrZero(strings.ToLower(req.Method))
	if op == nil {
		c.t.Errorf("%s: the spec has no %s operation on %s", where, req.Method, template)
		return
	}
	if _, ok := op.Responses.Codes.Get(status); !ok {
		c.t.Errorf("%s: status %s is not documented for %s\n%s", where, status, key, respBody)
	}
	c.mu.Lock()
	if c.seen[key] == nil {
		c.seen[key] = map[string]bool{}
	}
	c.seen[key][status] = true
	c.mu.Unlock()

	resp.Body = io.NopCloser(bytes.NewReader(respBody))
	req.Body = io.NopCloser(bytes.NewReader(reqBody))
	if ok, errs := c.spec.validator.ValidateHttpResponse(req, resp); !ok {
		c.t.Errorf("%s: the answer does not match the spec:%s\nheaders: %v\nbody: %s", where, describe(errs), resp.Header, truncateBytes(respBody))
	}
	if resp.StatusCode < 400 {
		req.Body = io.NopCloser(bytes.NewReader(reqBody))
		if ok, errs := c.spec.validator.ValidateHttpRequest(req); !ok {
			c.t.Errorf("%s: the server accepted a request the spec forbids:%s\nbody: %s", where, describe(errs), truncateBytes(reqBody))
		}
	}
}

func truncateBytes(b []byte) string {
	if len(b) > 2000 {
		return string(b[:2000]) + "…"
	}
	return string(b)
}

// sseEventSchemas maps event names to the data schemas the spec names in
// the events operation's x-sse-events extension.
func (c *contract) sseEventSchemas() map[string]string {
	c.t.Helper()
	item, ok := c.spec.model.Paths.PathItems.Get("/rooms/{room}/events")
	if !ok || item.Get == nil || item.Get.Extensions == nil {
		c.t.Fatal("the spec does not describe GET /rooms/{room}/events with x-sse-events")
	}
	node, ok := item.Get.Extensions.Get("x-sse-events")
	if !ok {
		c.t.Fatal("GET /rooms/{room}/events has no x-sse-events")
	}
	var list []struct {
		Event string `yaml:"event"`
		Data  string `yaml:"data"`
	}
	if err := node.Decode(&list); err != nil {
		c.t.Fatalf("x-sse-events: %v", err)
	}
	out := map[string]string{}
	for _, e := range list {
		out[e.Event] = strings.TrimPrefix(e.Data, "#/components/schemas/")
	}
	return out
}

// stream opens an event stream and validates its status and headers against
// the spec; the events are checked by checkEvent as they are read.
func (c *contract) stream(base, path string, header ...string) (*sseClient, answer) {
	c.t.Helper()
	lastID := ""
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "Last-Event-ID" {
			lastID = header[i+1]
		}
	}
	room, query, _ := strings.Cut(strings.TrimPrefix(path, "/rooms/"), "/events")
	cl, resp := subscribe(c.t, base, room, lastID, query)
	req, _ := http.NewRequest(http.MethodGet, base+path, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	var body []byte
	if cl == nil {
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	// The body of a stream is checked event by event, not as a whole.
	c.check(req, nil, resp, body)
	return cl, answer{Status: resp.StatusCode, Header: resp.Header, Body: body}
}

// checkEvent validates one event: a name the spec lists, a numeric id, and
// data matching the schema the spec names for it.
func (c *contract) checkEvent(ev event, schemas map[string]string) {
	c.t.Helper()
	name, ok := schemas[ev.Name]
	if !ok {
		c.t.Errorf("event %q is not described by the spec (x-sse-events lists %v)", ev.Name, schemas)
		return
	}
	if _, err := strconv.ParseInt(ev.ID, 10, 64); err != nil {
		c.t.Errorf("event %s has id %q, not a position", ev.Name, ev.ID)
	}
	sp, ok := c.spec.model.Components.Schemas.Get(name)
	if !ok {
		c.t.Errorf("x-sse-events names schema %q, which components/schemas lacks", name)
		return
	}
	sv := schema_validation.NewSchemaValidator()
	if ok, errs := sv.ValidateSchemaString(sp.Schema(), ev.Data); !ok {
		c.t.Errorf("event %s data does not match %s:%s\n%s", ev.Name, name, describe(errs), ev.Data)
	}
	c.mu.Lock()
	c.seen["SSE "+ev.Name] = map[string]bool{"200": true}
	c.mu.Unlock()
}

// expectEvent reads events until one named name, checking every one.
func (c *contract) expectEvent(cl *sseClient, schemas map[string]string, name string) event {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ev := cl.next(c.t, time.Until(deadline))
		c.checkEvent(ev, schemas)
		if ev.Name == name {
			return ev
		}
	}
}

// untestable lists the documented answers this suite cannot provoke through
// the API alone: faults of ours (500), a room whose every snapshot is
// corrupt with its log pruned (503), a stored snapshot that does not verify
// (422), and a restore past the size budget (a snapshot holds at most what
// the budget allows, so it needs the budget lowered between the two).
func untestable(op, status string) bool {
	switch {
	case status == "500":
		return true
	case status == "503" && op != "GET /readyz":
		return true
	case status == "422" && strings.Contains(op, "/snapshots/"):
		return true
	case status == "413" && op == "POST /rooms/{}/snapshots/{}/restore":
		return true
	}
	return false
}

// coverage fails for every documented answer that was never seen.
func (c *contract) coverage() {
	c.t.Helper()
	var missing []string
	for path, item := range c.spec.model.Paths.PathItems.FromOldest() {
		for method, op := range item.GetOperations().FromOldest() {
			key := routeKey(method, path)
			for status := range op.Responses.Codes.KeysFromOldest() {
				if !c.seen[key][status] && !untestable(key, status) {
					missing = append(missing, key+" "+status)
				}
			}
		}
	}
	for ev := range c.sseEventSchemas() {
		if !c.seen["SSE "+ev]["200"] {
			missing = append(missing, "event "+ev)
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		c.t.Errorf("documented but never exercised: %s", m)
	}
}

func randomText(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.RawStdEncoding.EncodeToString(b)[:n]
}

func TestContractAPI(t *testing.T) {
	c := newContract(t)
	srv := newContractServer(t, storetest.Open(t, "sqlite"), contractLimits{keep: 2})
	u := srv.URL
	const ghost = "00000000-0000-4000-8000-000000000000"
	const jsonCT = "Content-Type"

	t.Run("service", func(t *testing.T) {
		c.do(u, "GET", "/healthz", "").expect(t, 200, "")
		c.do(u, "GET", "/readyz", "").expect(t, 200, "")
		c.do(u, "GET", "/metrics", "").expect(t, 200, "")
		spec := c.do(u, "GET", "/openapi.yaml", "").expect(t, 200, "")
		if !bytes.HasPrefix(spec.Body, []byte("openapi: 3.1")) {
			t.Errorf("GET /openapi.yaml does not answer the spec: %.60s", spec.Body)
		}
		docs := c.do(u, "GET", "/docs", "").expect(t, 200, "")
		if !bytes.Contains(docs.Body, []byte("/openapi.yaml")) || !bytes.Contains(docs.Body, []byte("swagger-ui-bundle.js")) {
			t.Errorf("GET /docs does not render the spec with Swagger UI:\n%s", docs.Body)
		}
		c.do(u, "GET", "/docs/swagger-ui-bundle.js", "").expect(t, 200, "")
		c.do(u, "GET", "/docs/swagger-ui.css", "").expect(t, 200, "")
		c.do(u, "GET", "/docs/no-such-file.js", "").expect(t, 404, "")
		c.do(u, "GET", "/", "").expect(t, 200, "")
		c.do(u, "GET", "/app/app.css", "").expect(t, 200, "")
		c.do(u, "GET", "/app/no-such-file.js", "").expect(t, 404, "")
	})

	t.Run("readyz down", func(t *testing.T) {
		st, err := store.Open(context.Background(), storetest.Config(t, "sqlite"))
		if err != nil {
			t.Fatal(err)
		}
		down := newContractServer(t, st, contractLimits{})
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		c.do(down.URL, "GET", "/readyz", "").expect(t, 503, "not_ready")
	})

	var roomID string
	t.Run("rooms", func(t *testing.T) {
		a := c.do(u, "POST", "/rooms", `{"name":"shop schema"}`).expect(t, 201, "")
		roomID = a.str(t, "id")
		if loc := a.Header.Get("Location"); loc != "/rooms/"+roomID {
			t.Errorf("Location %q, want /rooms/%s", loc, roomID)
		}
		c.do(u, "POST", "/rooms", "").expect(t, 201, "")
		c.do(u, "POST", "/rooms", `{"nme":"typo"}`).expect(t, 400, "invalid_json")
		c.doSlow(u, "POST", "/rooms", `{"name":`).expect(t, 408, "request_timeout")
		c.do(u, "POST", "/rooms", `{"name":`).expect(t, 400, "invalid_json")
		c.do(u, "POST", "/rooms", `{"name":"`+strings.Repeat("n", 257)+`"}`).expect(t, 400, "invalid_request")
		c.do(u, "POST", "/rooms", `{"name":"`+strings.Repeat("n", 300<<10)+`"}`).expect(t, 413, "payload_too_large")

		page := c.do(u, "GET", "/rooms?limit=1", "").expect(t, 200, "")
		next, _ := page.JSON(t)["next_cursor"].(string)
		if next == "" {
			t.Fatalf("no next_cursor with two rooms and limit=1: %s", page.Body)
		}
		c.do(u, "GET", "/rooms?cursor="+next, "").expect(t, 200, "")
		c.do(u, "GET", "/rooms", "").expect(t, 200, "")
		c.do(u, "GET", "/rooms?limit=0", "").expect(t, 400, "invalid_parameter")
		c.do(u, "GET", "/rooms?limit=101", "").expect(t, 400, "invalid_parameter")
		c.do(u, "GET", "/rooms?cursor=forged", "").expect(t, 400, "invalid_cursor")

		c.do(u, "GET", "/rooms/"+roomID, "").expect(t, 200, "")
		c.do(u, "GET", "/rooms/not-a-uuid", "").expect(t, 400, "invalid_room_id")
		c.do(u, "GET", "/rooms/"+ghost, "").expect(t, 404, "room_not_found")
	})

	t.Run("ops and graph", func(t *testing.T) {
		base := "/rooms/" + roomID
		first := `{"client_id":"tab-1","ops":[
			{"op":"add_node","node":{"id":"users","kind":"table","label":"users","x":120,"y":80,"data":{"columns":[{"name":"id","type":"uuid"}]}}},
			{"op":"add_node","node":{"id":"orders","kind":"table","label":"orders","x":320,"y":80}},
			{"op":"add_edge","edge":{"id":"orders_user_fk","kind":"relation","source":"orders","target":"users","label":"user_id"}}]}`
		c.doSlow(u, "POST", base+"/ops", first[:10]).expect(t, 408, "request_timeout")
		a := c.do(u, "POST", base+"/ops", first, "Idempotency-Key", "first-batch").expect(t, 200, "")
		if a.Header.Get("Idempotent-Replayed") != "" {
			t.Errorf("a first request was marked replayed")
		}
		a = c.do(u, "POST", base+"/ops", first, "Idempotency-Key", "first-batch").expect(t, 200, "")
		if a.Header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("a retry was not marked Idempotent-Replayed: %v", a.Header)
		}
		c.do(u, "POST", base+"/ops", `{"base_version":3,"ops":[
			{"op":"update_node","id":"users","patch":{"x":140}},
			{"op":"update_edge","id":"orders_user_fk","patch":{"label":"user"}},
			{"op":"add_node","node":{"id":"note"}},
			{"op":"remove_node","id":"note"}]}`).expect(t, 200, "")
		c.do(u, "POST", base+"/ops", `{"ops":[{"op":"add_node","node":{"id":"tmp"}},{"op":"add_edge","edge":{"id":"e2","source":"tmp","target":"tmp"}},{"op":"remove_edge","id":"e2"}]}`).expect(t, 200, "")

		c.do(u, "POST", base+"/ops", `{"ops":[]}`).expect(t, 400, "invalid_request")
		c.do(u, "POST", base+"/ops", `{"ops":[{"op":"remove_node","id":"users"}],"bogus":1}`).expect(t, 400, "invalid_json")
		c.do(u, "POST", base+"/ops", "").expect(t, 400, "invalid_json")
		c.do(u, "POST", base+"/ops", `{"ops":[{"op":"remove_node","id":"users"}]}`, "Idempotency-Key", strings.Repeat("k", 129)).expect(t, 400, "invalid_request")
		c.do(u, "POST", base+"/ops", `{"ops":[{"op":"remove_node","id":"users"}],"client_id":"`+strings.Repeat("c", 129)+`"}`).expect(t, 400, "invalid_request")
		c.do(u, "POST", base+"/ops", `{"ops":[{"op":"remove_node","id":"users"}],"base_version":-1}`).expect(t, 400, "invalid_request")
		many := strings.TrimSuffix(strings.Repeat(`{"op":"remove_node","id":"x"},`, 1001), ",")
		c.do(u, "POST", base+"/ops", `{"ops":[`+many+`]}`).expect(t, 400, "too_many_ops")
		c.do(u, "POST", "/rooms/nope/ops", `{"ops":[{"op":"remove_node","id":"users"}]}`).expect(t, 400, "invalid_room_id")
		c.do(u, "POST", "/rooms/"+ghost+"/ops", `{"ops":[{"op":"remove_node","id":"users"}]}`).expect(t, 404, "room_not_found")
		conflict := c.do(u, "POST", base+"/ops", `{"base_version":1,"ops":[{"op":"remove_node","id":"users"}]}`).expect(t, 409, "conflict")
		if conflict.JSON(t)["current_version"] != float64(10) {
			t.Errorf("conflict does not carry current_version 10: %s", conflict.Body)
		}
		bad := c.do(u, "POST", base+"/ops", `{"ops":[{"op":"remove_node","id":"users"},{"op":"add_edge","edge":{"id":"e1","source":"users","target":"ghost"}}]}`).expect(t, 422, "invalid_op")
		if bad.JSON(t)["op_index"] != float64(1) {
			t.Errorf("invalid_op does not name op 1: %s", bad.Body)
		}
		c.do(u, "POST", base+"/ops", `{"ops":[{"op":"explode"}]}`).expect(t, 422, "invalid_op")
		c.do(u, "POST", base+"/ops", `{"ops":[{"op":"add_node","node":{"id":"`+strings.Repeat("d", 300<<10)+`"}}]}`).expect(t, 413, "payload_too_large")

		g := c.do(u, "GET", base+"/graph", "").expect(t, 200, "")
		if g.Header.Get("ETag") != `"10"` {
			t.Errorf("graph ETag %q, want \"10\"", g.Header.Get("ETag"))
		}
		c.do(u, "GET", base+"/graph", "", "If-None-Match", `"10"`).expect(t, 304, "")
		c.do(u, "GET", base+"/graph", "", "If-None-Match", `"9"`).expect(t, 200, "")
		c.do(u, "GET", "/rooms/nope/graph", "").expect(t, 400, "invalid_room_id")
		c.do(u, "GET", "/rooms/"+ghost+"/graph", "").expect(t, 404, "room_not_found")

		log := c.do(u, "GET", base+"/ops?since=2&limit=5", "").expect(t, 200, "")
		if n := len(log.JSON(t)["ops"].([]any)); n != 5 {
			t.Errorf("GET ops?since=2&limit=5 listed %d ops", n)
		}
		c.do(u, "GET", base+"/ops", "").expect(t, 200, "")
		c.do(u, "GET", base+"/ops?since=-1", "").expect(t, 400, "invalid_parameter")
		c.do(u, "GET", base+"/ops?limit=10001", "").expect(t, 400, "invalid_parameter")
		c.do(u, "GET", "/rooms/nope/ops", "").expect(t, 400, "invalid_room_id")
		c.do(u, "GET", "/rooms/"+ghost+"/ops", "").expect(t, 404, "room_not_found")

		c.do(u, "GET", base+"/presence", "").expect(t, 200, "")
		c.do(u, "GET", "/rooms/nope/presence", "").expect(t, 400, "invalid_room_id")
		c.do(u, "GET", "/rooms/"+ghost+"/presence", "").expect(t, 404, "room_not_found")
	})

	t.Run("snapshots", func(t *testing.T) {
		base := "/rooms/" + roomID
		c.do(u, "GET", base+"/snapshots/latest", "").expect(t, 404, "snapshot_not_found")
		c.do(u, "GET", base+"/snapshots", "").expect(t, 200, "")
		c.do(u, "GET", base+"/snapshots/stats", "").expect(t, 200, "")
		a := c.do(u, "POST", base+"/snapshots", "").expect(t, 201, "")
		snapID := a.str(t, "id")
		if loc := a.Header.Get("Location"); loc != base+"/snapshots/"+snapID {
			t.Errorf("Location %q, want %s/snapshots/%s", loc, base, snapID)
		}
		// Nothing changed since: the same snapshot again, no new one.
		if again := c.do(u, "POST", base+"/snapshots", "").expect(t, 200, ""); again.str(t, "id") != snapID {
			t.Errorf("a snapshot of an unchanged room answered %s, want the existing %s", again.str(t, "id"), snapID)
		}
		c.do(u, "GET", base+"/snapshots", "").expect(t, 200, "")
		c.do(u, "GET", base+"/snapshots/stats", "").expect(t, 200, "")
		latest := c.do(u, "GET", base+"/snapshots/latest", "").expect(t, 200, "")
		etag := latest.Header.Get("ETag")
		c.do(u, "GET", base+"/snapshots/latest", "", "If-None-Match", etag).expect(t, 304, "")
		bin := c.do(u, "GET", base+"/snapshots/latest", "", "Accept", "application/octet-stream").expect(t, 200, "")
		if !bytes.HasPrefix(bin.Body, []byte("LSNP")) || bin.Header.Get("X-Snapshot-Id") != snapID ||
			bin.Header.Get("X-Snapshot-Version") != "10" || bin.Header.Get("X-Element-Count") == "" {
			t.Errorf("binary snapshot: headers %v, body %.8q", bin.Header, bin.Body)
		}
		c.do(u, "GET", base+"/snapshots/"+snapID, "").expect(t, 200, "")
		c.do(u, "GET", base+"/snapshots/"+snapID, "", "Accept", "application/octet-stream").expect(t, 200, "")
		c.do(u, "GET", base+"/snapshots/"+snapID, "", "If-None-Match", etag).expect(t, 304, "")
		c.do(u, "GET", base+"/snapshots/not-a-uuid", "").expect(t, 400, "invalid_snapshot_id")
		c.do(u, "GET", base+"/snapshots/"+ghost, "").expect(t, 404, "snapshot_not_found")
		c.do(u, "GET", "/rooms/"+ghost+"/snapshots/"+snapID, "").expect(t, 404, "room_not_found")

		c.do(u, "POST", base+"/ops", `{"ops":[{"op":"remove_node","id":"orders"}]}`).expect(t, 200, "")
		r := c.do(u, "POST", base+"/snapshots/"+snapID+"/restore", "").expect(t, 200, "")
		if r.JSON(t)["version"] != float64(12) {
			t.Errorf("restore answered %s, want version 12", r.Body)
		}
		c.do(u, "POST", base+"/snapshots/nope/restore", "").expect(t, 400, "invalid_snapshot_id")
		c.do(u, "POST", base+"/snapshots/"+ghost+"/restore", "").expect(t, 404, "snapshot_not_found")
		c.do(u, "GET", base+"/ops?since=11", "").expect(t, 200, "") // holds the reset op

		c.do(u, "DELETE", base+"/snapshots", "").expect(t, 204, "")
		c.do(u, "GET", base+"/snapshots", "").expect(t, 200, "")

		for _, p := range []string{"/snapshots", "/snapshots/latest", "/snapshots/stats"} {
			c.do(u, "GET", "/rooms/nope"+p, "").expect(t, 400, "invalid_room_id")
			c.do(u, "GET", "/rooms/"+ghost+p, "").expect(t, 404, "room_not_found")
		}
		c.do(u, "POST", "/rooms/nope/snapshots", "").expect(t, 400, "invalid_room_id")
		c.do(u, "POST", "/rooms/"+ghost+"/snapshots", "").expect(t, 404, "room_not_found")
		c.do(u, "DELETE", "/rooms/nope/snapshots", "").expect(t, 400, "invalid_room_id")
		c.do(u, "DELETE", "/rooms/"+ghost+"/snapshots", "").expect(t, 404, "room_not_found")
		c.do(u, "GET", "/snapshots/stats", "").expect(t, 200, "")
	})

	t.Run("history gone", func(t *testing.T) {
		id := c.do(u, "POST", "/rooms", `{"name":"pruned"}`).expect(t, 201, "").str(t, "id")
		base := "/rooms/" + id
		for i := range 3 {
			c.do(u, "POST", base+"/ops", fmt.Sprintf(`{"ops":[{"op":"add_node","node":{"id":"n%d"}}]}`, i)).expect(t, 200, "")
			c.do(u, "POST", base+"/snapshots", "").expect(t, 201, "")
		}
		c.do(u, "GET", base+"/ops?since=0", "").expect(t, 410, "history_gone")
		c.do(u, "GET", base+"/ops?since=2", "").expect(t, 200, "")
	})

	t.Run("history", func(t *testing.T) {
		id := c.do(u, "POST", "/rooms", `{"name":"history"}`).expect(t, 201, "").str(t, "id")
		base := "/rooms/" + id
		c.do(u, "POST", base+"/ops", `{"ops":[{"op":"add_node","node":{"id":"users","label":"users"}},{"op":"add_node","node":{"id":"orders"}},
			{"op":"add_edge","edge":{"id":"fk","source":"orders","target":"users"}}]}`).expect(t, 200, "")
		c.do(u, "POST", base+"/snapshots", "").expect(t, 201, "")
		c.do(u, "POST", base+"/ops", `{"ops":[{"op":"update_node","id":"users","patch":{"label":"people","data":{"columns":[]}}}]}`).expect(t, 200, "")
		c.do(u, "POST", base+"/snapshots", "").expect(t, 201, "")
		c.do(u, "POST", base+"/ops", `{"ops":[{"op":"remove_node","id":"orders"}]}`).expect(t, 200, "")
		c.do(u, "POST", base+"/snapshots", "").expect(t, 201, "") // keep 2: ops through 4 pruned

		g := c.do(u, "GET", base+"/graph?version=4", "").expect(t, 200, "").JSON(t)
		if g["version"] != float64(4) || len(g["edges"].([]any)) != 1 {
			t.Errorf("graph at version 4 = %v, want version 4 with the edge fk", g)
		}
		c.do(u, "GET", base+"/graph?version=4", "", "If-None-Match", `"4"`).expect(t, 304, "")
		c.do(u, "GET", base+"/graph?version=3", "").expect(t, 410, "history_gone")
		c.do(u, "GET", base+"/graph?version=0", "").expect(t, 200, "")
		c.do(u, "GET", base+"/graph?version=6", "").expect(t, 400, "invalid_version")
		c.do(u, "GET", base+"/graph?version=-1", "").expect(t, 400, "invalid_version")
		c.do(u, "GET", base+"/graph?version=", "").expect(t, 400, "invalid_version")
		c.do(u, "GET", "/rooms/"+ghost+"/graph?version=1", "").expect(t, 404, "room_not_found")
		c.do(u, "GET", "/rooms/nope/graph?version=1", "").expect(t, 400, "invalid_room_id")

		d := c.do(u, "GET", base+"/diff?from=4", "").expect(t, 200, "").JSON(t)
		if d["from"] != float64(4) || d["to"] != float64(5) {
			t.Errorf("diff from 4 = %v, want from 4 to the current 5", d)
		}
		edges := d["edges"].(map[string]any)
		if removed := edges["removed"].([]any); len(removed) != 1 || removed[0].(map[string]any)["id"] != "fk" {
			t.Errorf("diff from 4: edges removed %v, want fk, removed with its node", edges["removed"])
		}
		c.do(u, "GET", base+"/diff?from=5&to=4", "").expect(t, 200, "")
		c.do(u, "GET", base+"/diff", "").expect(t, 400, "invalid_version")
		c.do(u, "GET", base+"/diff?from=x", "").expect(t, 400, "invalid_version")
		c.do(u, "GET", base+"/diff?from=4&to=9", "").expect(t, 400, "invalid_version")
		c.do(u, "GET", base+"/diff?from=2", "").expect(t, 410, "history_gone")
		c.do(u, "GET", "/rooms/"+ghost+"/diff?from=0", "").expect(t, 404, "room_not_found")
		c.do(u, "GET", "/rooms/nope/diff?from=0", "").expect(t, 400, "invalid_room_id")

		// Bad restores change nothing.
		for _, bad := range []struct{ body, code string }{
			{`{}`, "invalid_version"},
			{`{"version":-1}`, "invalid_version"},
			{`{"version":6}`, "invalid_version"},
			{`{"version":"4"}`, "invalid_json"},
			{`{"version":4,"extra":1}`, "invalid_json"},
			{`[4]`, "invalid_json"},
		} {
			c.do(u, "POST", base+"/restore", bad.body).expect(t, 400, bad.code)
		}
		c.do(u, "POST", base+"/restore", `{"version":4}`, "Idempotency-Key", strings.Repeat("k", 129)).expect(t, 400, "invalid_request")
		c.do(u, "POST", base+"/restore", `{"version":1}`).expect(t, 410, "history_gone")
		c.do(u, "POST", base+"/restore", `{"version":4,"pad":"`+strings.Repeat("p", 300<<10)+`"}`).expect(t, 413, "payload_too_large")
		c.doSlow(u, "POST", base+"/restore", `{"version":`).expect(t, 408, "request_timeout")
		c.do(u, "POST", "/rooms/"+ghost+"/restore", `{"version":0}`).expect(t, 404, "room_not_found")
		c.do(u, "POST", "/rooms/nope/restore", `{"version":0}`).expect(t, 400, "invalid_room_id")
		if v := c.do(u, "GET", base, "").expect(t, 200, "").JSON(t)["version"]; v != float64(5) {
			t.Fatalf("after the refused restores the room is at version %v, want 5", v)
		}
		r := c.do(u, "POST", base+"/restore", `{"version":4}`, "Idempotency-Key", "restore-4").expect(t, 200, "")
		if r.JSON(t)["version"] != float64(6) {
			t.Errorf("restore answered %s, want version 6", r.Body)
		}
		if again := c.do(u, "POST", base+"/restore", `{"version":4}`, "Idempotency-Key", "restore-4").expect(t, 200, ""); again.Header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("a retried restore was not marked Idempotent-Replayed")
		}
		now := c.do(u, "GET", base+"/graph", "").expect(t, 200, "").JSON(t)
		then := c.do(u, "GET", base+"/graph?version=4", "").expect(t, 200, "").JSON(t)
		if fmt.Sprint(now["nodes"], now["edges"]) != fmt.Sprint(then["nodes"], then["edges"]) {
			t.Errorf("after restoring version 4 the graph is %v, want %v", now, then)
		}
		// The versions in between stay readable: history is kept.
		c.do(u, "GET", base+"/graph?version=5", "").expect(t, 200, "")
		st := c.do(u, "GET", base+"/snapshots/stats", "").expect(t, 200, "").JSON(t)
		if _, ok := st["checkpoints"]; !ok {
			t.Errorf("snapshot stats do not count checkpoints: %v", st)
		}
	})

	t.Run("limits", func(t *testing.T) {
		lim := newContractServer(t, storetest.Open(t, "sqlite"), contractLimits{keep: 2, maxSnapshot: 2048, stateBudget: 8192})
		id := c.do(lim.URL, "POST", "/rooms", "").expect(t, 201, "").str(t, "id")
		base := "/rooms/" + id
		c.do(lim.URL, "POST", base+"/ops", `{"ops":[{"op":"add_node","node":{"id":"big","data":{"blob":"`+randomText(t, 4000)+`"}}}]}`).expect(t, 200, "")
		c.do(lim.URL, "POST", base+"/snapshots", "").expect(t, 413, "snapshot_too_large")
		c.do(lim.URL, "DELETE", base+"/snapshots", "").expect(t, 413, "snapshot_too_large")
		c.do(lim.URL, "POST", base+"/ops", `{"ops":[{"op":"add_node","node":{"id":"bigger","data":{"blob":"`+randomText(t, 8000)+`"}}}]}`).expect(t, 413, "room_too_large")
	})

	t.Run("events", func(t *testing.T) {
		schemas := c.sseEventSchemas()
		id := c.do(u, "POST", "/rooms", `{"name":"live"}`).expect(t, 201, "").str(t, "id")
		base := "/rooms/" + id
		c.do(u, "POST", base+"/ops", `{"client_id":"tab-1","ops":[{"op":"add_node","node":{"id":"a"}},{"op":"add_node","node":{"id":"b"}}]}`).expect(t, 200, "")

		cl, _ := c.stream(u, base+"/events?name=alice")
		if cl == nil {
			t.Fatal("the event stream did not open")
		}
		snap := c.expectEvent(cl, schemas, "snapshot")
		if snap.ID != "0" {
			t.Errorf("first snapshot event has id %q, want 0", snap.ID)
		}
		if ev := c.expectEvent(cl, schemas, "ops"); ev.ID != "2" {
			t.Errorf("replayed ops event has id %q, want 2", ev.ID)
		}
		c.expectEvent(cl, schemas, "presence")
		c.do(u, "GET", base+"/presence", "").expect(t, 200, "")

		snapID := c.do(u, "POST", base+"/snapshots", "").expect(t, 201, "").str(t, "id")
		c.do(u, "POST", base+"/ops", `{"ops":[{"op":"add_edge","edge":{"id":"ab","source":"a","target":"b"}}]}`).expect(t, 200, "")
		if ev := c.expectEvent(cl, schemas, "ops"); ev.ID != "3" {
			t.Errorf("live ops event has id %q, want 3", ev.ID)
		}
		c.do(u, "POST", base+"/snapshots/"+snapID+"/restore", "").expect(t, 200, "")
		if ev := c.expectEvent(cl, schemas, "reset"); ev.ID != "4" {
			t.Errorf("reset event has id %q, want 4", ev.ID)
		}

		resumed, _ := c.stream(u, base+"/events", "Last-Event-ID", "1")
		if ev := c.expectEvent(resumed, schemas, "ops"); ev.ID != "3" {
			t.Errorf("resumed stream's first ops event has id %q, want 3 (ops 2..3)", ev.ID)
		}
		c.expectEvent(resumed, schemas, "reset")
		fromQuery, _ := c.stream(u, base+"/events?last_event_id=4")
		if fromQuery == nil {
			t.Fatal("?last_event_id=4 did not open a stream")
		}

		c.stream(u, base+"/events", "Last-Event-ID", "x")
		c.stream(u, base+"/events?last_event_id=-1")
		c.stream(u, base+"/events?name="+strings.Repeat("n", 129))
		c.stream(u, "/rooms/nope/events")
		c.stream(u, "/rooms/"+ghost+"/events")

		c.do(u, "DELETE", base, "").expect(t, 204, "")
		c.expectEvent(cl, schemas, "room_deleted")
		c.do(u, "DELETE", base, "").expect(t, 404, "room_not_found")
		c.do(u, "DELETE", "/rooms/nope", "").expect(t, 400, "invalid_room_id")
	})

	t.Run("rate limits", func(t *testing.T) {
		one := handlers.Rate{Limit: 1, Window: time.Hour}
		lim := newContractServer(t, storetest.Open(t, "sqlite"), contractLimits{limits: handlers.Limits{
			SnapshotReads: handlers.Rate{Limit: 3, Window: time.Hour}, SnapshotCreates: one, Ops: one, Connects: handlers.Rate{Limit: 2, Window: time.Hour},
			Rooms: handlers.Rate{Limit: 2, Window: time.Hour}, MaxStreams: 1,
		}})
		id := c.do(lim.URL, "POST", "/rooms", "").expect(t, 201, "").str(t, "id")
		c.do(lim.URL, "POST", "/rooms", "").expect(t, 201, "")
		c.do(lim.URL, "POST", "/rooms", "").expect(t, 429, "rate_limited")
		base := "/rooms/" + id
		c.do(lim.URL, "POST", base+"/ops", `{"ops":[{"op":"add_node","node":{"id":"a"}}]}`).expect(t, 200, "")
		c.do(lim.URL, "POST", base+"/ops", `{"ops":[{"op":"add_node","node":{"id":"b"}}]}`).expect(t, 429, "rate_limited")
		snap := c.do(lim.URL, "POST", base+"/snapshots", "").expect(t, 201, "").str(t, "id")
		c.do(lim.URL, "POST", base+"/snapshots", "").expect(t, 429, "rate_limited")
		c.do(lim.URL, "GET", base+"/snapshots", "").expect(t, 200, "")
		c.do(lim.URL, "GET", base+"/snapshots/latest", "").expect(t, 200, "")
		c.do(lim.URL, "GET", base+"/snapshots/"+snap, "").expect(t, 200, "")
		c.do(lim.URL, "GET", base+"/snapshots", "").expect(t, 429, "rate_limited")
		c.do(lim.URL, "GET", base+"/snapshots/latest", "").expect(t, 429, "rate_limited")
		c.do(lim.URL, "GET", base+"/snapshots/"+snap, "").expect(t, 429, "rate_limited")
		if cl, _ := c.stream(lim.URL, base+"/events"); cl == nil {
			t.Fatal("the first stream did not open")
		}
		if _, a := c.stream(lim.URL, base+"/events"); a.Status != 503 || !strings.Contains(string(a.Body), "too_many_streams") {
			t.Errorf("past the process's stream cap: %d %s", a.Status, a.Body)
		}
		if _, a := c.stream(lim.URL, base+"/events"); a.Status != 429 || !strings.Contains(string(a.Body), "rate_limited") {
			t.Errorf("past the connect limit: %d %s", a.Status, a.Body)
		}
	})

	t.Run("rename and audit", func(t *testing.T) {
		id := c.do(u, "POST", "/rooms", `{"name":"before"}`).expect(t, 201, "").str(t, "id")
		base := "/rooms/" + id
		if got := c.do(u, "PATCH", base, `{"name":"after"}`).expect(t, 200, "").str(t, "name"); got != "after" {
			t.Errorf("renamed to %q", got)
		}
		c.do(u, "PATCH", base, `{}`).expect(t, 400, "invalid_request")
		c.do(u, "PATCH", base, `{"name":"`+strings.Repeat("n", 257)+`"}`).expect(t, 400, "invalid_request")
		c.do(u, "PATCH", base, `{"nme":"x"}`).expect(t, 400, "invalid_json")
		c.do(u, "PATCH", "/rooms/nope", `{"name":"x"}`).expect(t, 400, "invalid_room_id")
		c.do(u, "PATCH", "/rooms/"+ghost, `{"name":"x"}`).expect(t, 404, "room_not_found")
		c.doSlow(u, "PATCH", base, `{"name":`).expect(t, 408, "request_timeout")
		c.do(u, "PATCH", base, `{"name":"`+strings.Repeat("n", 300<<10)+`"}`).expect(t, 413, "payload_too_large")

		c.do(u, "GET", base+"/snapshots", "").expect(t, 200, "")
		page := c.do(u, "GET", base+"/audit?limit=1", "").expect(t, 200, "")
		c.do(u, "GET", base+"/audit?action=room_rename", "").expect(t, 200, "")
		var p struct {
			NextCursor string `json:"next_cursor"`
		}
		if err := json.Unmarshal(page.Body, &p); err != nil || p.NextCursor == "" {
			t.Fatalf("a page of one row of two: %s", page.Body)
		}
		c.do(u, "GET", base+"/audit?limit=1&cursor="+p.NextCursor, "").expect(t, 200, "")
		c.do(u, "GET", base+"/audit?limit=101", "").expect(t, 400, "invalid_parameter")
		c.do(u, "GET", base+"/audit?action=eat", "").expect(t, 400, "invalid_parameter")
		c.do(u, "GET", base+"/audit?cursor=zz", "").expect(t, 400, "invalid_cursor")
		c.do(u, "GET", "/rooms/nope/audit", "").expect(t, 400, "invalid_room_id")
		c.do(u, "GET", "/rooms/"+ghost+"/audit", "").expect(t, 404, "room_not_found")
		c.do(u, "GET", "/audit?action=room_rename&limit=5", "").expect(t, 200, "")
		c.do(u, "GET", "/audit?limit=0", "").expect(t, 400, "invalid_parameter")
		c.do(u, "GET", "/audit?cursor=zz", "").expect(t, 400, "invalid_cursor")
	})

	t.Run("presence state", func(t *testing.T) {
		id := c.do(u, "POST", "/rooms", `{"name":"cursors"}`).expect(t, 201, "").str(t, "id")
		stream, _ := subscribe(t, u, id, "", "?presence_id=tab-c&name=carol")
		stream.nextNamed(t, "presence", 5*time.Second)
		base := "/rooms/" + id + "/presence/tab-c"
		c.do(u, "PATCH", base, `{"cursor":{"x":1,"y":2},"selection":["users"],"status":"editing"}`).expect(t, 204, "")
		// At once again: faster than one change per 20 ms.
		c.do(u, "PATCH", base, `{"status":"typing"}`).expect(t, 429, "rate_limited")
		c.do(u, "GET", "/rooms/"+id+"/presence", "").expect(t, 200, "")
		c.do(u, "PATCH", base, `{"cursor":{"x":1}}`).expect(t, 400, "invalid_request")
		c.do(u, "PATCH", base, `{"colour":"red"}`).expect(t, 400, "invalid_json")
		c.do(u, "PATCH", "/rooms/nope/presence/tab-c", `{"status":"x"}`).expect(t, 400, "invalid_room_id")
		c.do(u, "PATCH", "/rooms/"+ghost+"/presence/tab-c", `{"status":"x"}`).expect(t, 404, "room_not_found")
		c.do(u, "PATCH", "/rooms/"+id+"/presence/nobody", `{"status":"x"}`).expect(t, 404, "presence_not_found")
		c.doSlow(u, "PATCH", base, `{"status":`).expect(t, 408, "request_timeout")
		c.do(u, "PATCH", base, `{"status":"`+strings.Repeat("s", 5000)+`"}`).expect(t, 413, "payload_too_large")
	})

	t.Run("auth", func(t *testing.T) { contractAuth(t, c) })

	if !t.Failed() {
		c.coverage()
	}
	_ = jsonCT
	_ = slices.Contains[[]string]
}
