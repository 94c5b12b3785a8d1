package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/liveshare/liveshare/store"
)

// The browser tests drive the page at / in headless Chromium against the
// built binary. They skip when no Chromium is installed, unless
// LIVESHARE_BROWSER_TESTS=required (CI), where a missing browser fails.

func chromiumPath(t *testing.T) string {
	t.Helper()
	candidates := []string{os.Getenv("LIVESHARE_CHROMIUM"), "/usr/bin/chromium"}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			candidates = append(candidates, p)
		}
	}
	for _, p := range candidates {
		if p == "" {
			continue
		}
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			takeBrowserTurn(t)
			return p
		}
	}
	if os.Getenv("LIVESHARE_BROWSER_TESTS") == "required" {
		t.Fatal("chromium not found and LIVESHARE_BROWSER_TESTS=required")
	}
	t.Skip("chromium not found; set LIVESHARE_BROWSER_TESTS=required to make this a failure")
	return ""
}

// browserTurns lets one browser test drive Chromium at a time. The other
// end-to-end tests run beside it (they mostly wait), but each browser test
// starts one or two Chromiums that take a core each: several at once on a
// small machine only make each slower, and their waits longer.
var browserTurns = make(chan struct{}, 1)

// takeBrowserTurn waits for the test's turn with Chromium and gives it back
// when the test ends (after its browsers closed: cleanups run last-in
// first-out, and this one is registered before them).
func takeBrowserTurn(t *testing.T) {
	t.Helper()
	browserTurns <- struct{}{}
	t.Cleanup(func() { <-browserTurns })
}

// browserArtifacts is where a test's screenshots go: $LIVESHARE_ARTIFACTS
// (CI keeps it), or a temporary directory that is removed when the test
// passes — each run would otherwise leave about half a megabyte in /tmp —
// and kept, with its path logged, when it fails or when
// LIVESHARE_KEEP_ARTIFACTS=1 asks to look at them.
func browserArtifacts(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv("LIVESHARE_ARTIFACTS"); dir != "" {
		dir = filepath.Join(dir, "browser")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshots in %s", dir)
		return dir
	}
	dir, err := os.MkdirTemp("", "liveshare-browser-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("LIVESHARE_KEEP_ARTIFACTS") == "1" {
			t.Logf("screenshots kept in %s", dir)
			return
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove the screenshots: %v", err)
		}
	})
	return dir
}

func browserFreePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

// browserPage is one headless Chromium with one tab: each page is its own
// browser process, as two people in a room would be, so neither is a
// throttled background tab.
type browserPage struct {
	t         *testing.T
	name      string
	ctx       context.Context
	artifacts string

	mu         sync.Mutex
	urls       []string
	exceptions []string
}

func newBrowserPage(t *testing.T, chromium, name, artifacts string) *browserPage {
	t.Helper()
	profile := t.TempDir() // removed after the browser is gone: cleanups run last-in first-out
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1400, 860),
	)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelCtx()
		cancelAlloc()
	})
	p := &browserPage{t: t, name: name, ctx: ctx, artifacts: artifacts}
	if err := chromedp.Do(ctx); err != nil { // start the browser and open the tab
		t.Fatalf("%s: start chromium: %v", name, err)
	}
	if err := chromedp.Listen(ctx, p.record); err != nil {
		t.Fatal(err)
	}
	return p
}

// record runs on the tab's reader goroutine: it only appends.
func (p *browserPage) record(ev any) {
	switch e := ev.(type) {
	case *network.EventRequestWillBeSent:
		p.mu.Lock()
		p.urls = append(p.urls, e.Request.URL)
		p.mu.Unlock()
	case *runtime.EventExceptionThrown:
		msg := e.ExceptionDetails.Text
		if e.ExceptionDetails.Exception != nil {
			msg += " " + e.ExceptionDetails.Exception.Description
		}
		p.mu.Lock()
		p.exceptions = append(p.exceptions, msg)
		p.mu.Unlock()
	}
}

func (p *browserPage) do(steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		p.t.Fatalf("%s: %v\n%s", p.name, err, p.dump())
	}
}

// eval evaluates js and decodes its (JSON) value into out.
func (p *browserPage) eval(js string, out any) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](js))
	if err != nil {
		p.t.Fatalf("%s: eval %s: %v", p.name, js, err)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			p.t.Fatalf("%s: eval %s: decode %s: %v", p.name, js, raw, err)
		}
	}
}

// clickUntil clicks sel until the JavaScript expression is truthy, a few
// times: under CI's full parallel load a click on a table was seen to
// select nothing (no presence PATCH followed it, the page otherwise
// alive; cause not found), and tests that only need the selection as a
// step should not fail on that. Tests of clicking itself use click.
func (p *browserPage) clickUntil(sel, what, expr string) {
	p.t.Helper()
	for try := 1; ; try++ {
		p.click(sel)
		ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
		_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr,
			chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(5*time.Second)))
		cancel()
		if err == nil {
			return
		}
		if try == 3 {
			p.waitJS(what, expr) // fails with the page's state
			return
		}
		p.t.Logf("%s: %s not there %d s after a click on %s; clicking again", p.name, what, 5, sel)
	}
}

// waitJS waits until the JavaScript expression is truthy.
func (p *browserPage) waitJS(what, expr string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 40*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(30*time.Second)))
	if err != nil {
		p.screenshot("failed-" + strings.ReplaceAll(what, " ", "-"))
		p.t.Fatalf("%s: waiting for %s (%s): %v\n%s", p.name, what, expr, err, p.dump())
	}
}

type browserPageState struct {
	Room     string           `json:"room"`
	Version  int64            `json:"version"`
	Conn     string           `json:"conn"`
	Nodes    []map[string]any `json:"nodes"`
	Edges    []map[string]any `json:"edges"`
	Users    []string         `json:"users"`
	Pending  int              `json:"pending"`
	Recovery map[string]any   `json:"recovery"`
}

func (p *browserPage) state() browserPageState {
	p.t.Helper()
	var s browserPageState
	p.eval(`window.liveshare.state()`, &s)
	return s
}

func (p *browserPage) dump() string {
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](
		`JSON.stringify({state: window.liveshare && window.liveshare.state(), errors: document.getElementById('errors').innerText, activity: document.getElementById('activity').innerText})`))
	if err != nil {
		return fmt.Sprintf("(no page state: %v)", err)
	}
	return string(raw)
}

func (p *browserPage) screenshot(name string) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		p.t.Logf("%s: screenshot %s: %v", p.name, name, err)
		return ""
	}
	path := filepath.Join(p.artifacts, p.name+"-"+name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		p.t.Logf("write %s: %v", path, err)
	}
	return path
}

// center is the viewport position of the middle of what sel selects.
// center is the middle of sel on the screen, once it stayed put over two
// animation frames: the page draws once per frame, and a click aimed while
// a redraw (a Fit after the graph arrived) is about to move the element
// lands where it used to be.
func (p *browserPage) center(sel string) (float64, float64) {
	p.t.Helper()
	var c struct{ X, Y float64 }
	js := fmt.Sprintf(`new Promise(resolve => {
		const at = () => { const e = document.querySelector(%q); if (!e) return null;
			const r = e.getBoundingClientRect(); return {X: r.left + r.width / 2, Y: r.top + r.height / 2}; };
		let last = at(), frames = 0;
		const next = () => requestAnimationFrame(() => requestAnimationFrame(() => {
			const now = at();
			if (++frames >= 60 || now && last && now.X === last.X && now.Y === last.Y) { resolve(now); return; }
			last = now; next();
		}));
		next();
	})`, sel)
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](js, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("%s: where is %s: %v", p.name, sel, err)
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		p.t.Fatalf("%s: where is %s: decode %s: %v", p.name, sel, raw, err)
	}
	if c.X == 0 && c.Y == 0 {
		p.t.Fatalf("%s: %s is not on the page\n%s", p.name, sel, p.dump())
	}
	return c.X, c.Y
}

func (p *browserPage) click(sel string) {
	p.t.Helper()
	x, y := p.center(sel)
	p.do(chromedp.MouseClickXY(x, y))
}

func (p *browserPage) key(k string) {
	p.t.Helper()
	p.do(chromedp.KeyEvent(k))
}

func (p *browserPage) nodeSel(id string) string {
	return fmt.Sprintf(`g.node[data-id=%q] rect.box`, id)
}

// assertLocal checks that every request the page made went to the service.
func (p *browserPage) assertLocal(base string) {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.urls) == 0 {
		p.t.Errorf("%s: no request was seen; is the network listener working?", p.name)
	}
	for _, u := range p.urls {
		if strings.HasPrefix(u, "data:") {
			continue // made in the page (the PNG export draws one): it goes nowhere
		}
		if !strings.HasPrefix(u, base+"/") {
			p.t.Errorf("%s: request to %s, which is not the service (%s)", p.name, u, base)
		}
	}
	for _, e := range p.exceptions {
		p.t.Errorf("%s: uncaught exception in the page: %s", p.name, e)
	}
}

type browserServerGraph struct {
	Version int64            `json:"version"`
	Nodes   []map[string]any `json:"nodes"`
	Edges   []map[string]any `json:"edges"`
}

func browserGraph(t *testing.T, srv *server, roomID string) browserServerGraph {
	t.Helper()
	r := srv.must("GET", "/rooms/"+roomID+"/graph", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("get graph: %d %s", r.Status, r.Body)
	}
	var g browserServerGraph
	r.decode(t, &g)
	return g
}

// converge waits until every page is live and holds exactly GET /graph.
func browserConverge(t *testing.T, srv *server, roomID string, pages ...*browserPage) browserServerGraph {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		g := browserGraph(t, srv, roomID)
		ok := true
		var diff string
		for _, p := range pages {
			s := p.state()
			if s.Conn != "live" || s.Version != g.Version || s.Pending != 0 ||
				!reflect.DeepEqual(emptyAsNil(s.Nodes), emptyAsNil(g.Nodes)) || !reflect.DeepEqual(emptyAsNil(s.Edges), emptyAsNil(g.Edges)) {
				ok = false
				diff = fmt.Sprintf("%s: conn %s version %d (server %d)\npage nodes %v edges %v\nserver nodes %v edges %v",
					p.name, s.Conn, s.Version, g.Version, s.Nodes, s.Edges, g.Nodes, g.Edges)
			}
		}
		if ok {
			return g
		}
		if time.Now().After(deadline) {
			t.Fatalf("pages did not converge on GET /graph:\n%s", diff)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// norm makes nil and empty lists compare equal.
func emptyAsNil(v []map[string]any) []map[string]any {
	if len(v) == 0 {
		return nil
	}
	return v
}

func browserPostOps(t *testing.T, srv *server, roomID string, ops ...map[string]any) int64 {
	t.Helper()
	r := srv.must("POST", "/rooms/"+roomID+"/ops", map[string]any{"client_id": "go-test", "ops": ops})
	if r.Status != http.StatusOK {
		t.Fatalf("post ops: %d %s", r.Status, r.Body)
	}
	var res struct{ Version int64 }
	r.decode(t, &res)
	return res.Version
}

func tableOp(id string, x, y float64, cols ...string) map[string]any {
	var columns []map[string]string
	for _, c := range cols {
		name, typ, _ := strings.Cut(c, " ")
		columns = append(columns, map[string]string{"name": name, "type": typ})
	}
	return map[string]any{"op": "add_node", "node": map[string]any{
		"id": id, "kind": "table", "label": id, "x": x, "y": y, "data": map[string]any{"columns": columns}}}
}

func relationOp(id, source, target, label string) map[string]any {
	return map[string]any{"op": "add_edge", "edge": map[string]any{
		"id": id, "kind": "relation", "source": source, "target": target, "label": label}}
}

func TestBrowserCollaboration(t *testing.T) {
	t.Parallel()
	chromium := chromiumPath(t)
	artifacts := browserArtifacts(t)
	// A fixed port, so that the pages find the server again after the
	// restart; later env entries win, so this overrides startServer's :0.
	port := browserFreePort(t)
	srv := startServer(t, store.Config{DataDir: t.TempDir()},
		"LIVESHARE_ADDR=127.0.0.1:"+strconv.Itoa(port), "LIVESHARE_SNAPSHOT_INTERVAL=1h")
	base := srv.URL

	a := newBrowserPage(t, chromium, "A", artifacts)
	b := newBrowserPage(t, chromium, "B", artifacts)
	defer func() {
		a.assertLocal(base)
		b.assertLocal(base)
	}()

	// A creates a room from the page; its id lands in the URL.
	a.do(chromedp.Navigate(base + "/?name=alice"))
	a.waitJS("the page script", `window.liveshare !== undefined`)
	a.do(chromedp.SetValue(chromedp.ID("new-room-name"), "browser test"))
	a.click(`#create-room button`)
	a.waitJS("the new room to be live", `location.search.startsWith('?room=') && window.liveshare.state().conn === 'live'`)
	roomID := a.state().Room
	var loc string
	a.eval(`location.href`, &loc)
	if loc != base+"/?room="+roomID {
		t.Fatalf("A's URL is %s, want the room in it", loc)
	}
	a.waitJS("the room in the list", fmt.Sprintf(`!!document.querySelector('#rooms a.current[data-id=%q]')`, roomID))

	// B opens the shared URL.
	b.do(chromedp.Navigate(base + "/?room=" + roomID + "&name=bob"))
	b.waitJS("B live", `window.liveshare && window.liveshare.state().conn === 'live'`)
	for _, p := range []*browserPage{a, b} {
		p.waitJS("both present", `(() => { const t = document.getElementById('presence').innerText; return t.includes('alice') && t.includes('bob'); })()`)
	}
	var loadA, loadB string
	a.eval(`window.liveshare.pageLoadId`, &loadA)
	b.eval(`window.liveshare.pageLoadId`, &loadB)

	// A adds a table with the button, renames it and gives it a column in
	// the inspector; B sees it all.
	a.click(`#add-table`)
	a.waitJS("the new table", `window.liveshare.state().nodes.length === 1 && document.activeElement.id === 'node-label'`)
	users := a.state().Nodes[0]["id"].(string)
	b.waitJS("the new table in B", fmt.Sprintf(`!!document.querySelector(%q)`, b.nodeSel(users)))
	a.do(
		chromedp.SetValue(chromedp.ID("node-label"), "users"),
		chromedp.SetValue(chromedp.ID("node-columns"), "id uuid\nemail text"),
	)
	a.click(`#node-form button[type=submit]`)
	b.waitJS("the rename in B", fmt.Sprintf(`(() => { const g = document.querySelector('g.node[data-id=%q]');
		return g && g.querySelector('text.label').textContent === 'users' &&
			[...g.querySelectorAll('text.col-name')].map(t => t.textContent).join() === 'id,email'; })()`, users))
	browserConverge(t, srv, roomID, a, b)

	// A drags it; the move is sent when the drag ends, and B follows.
	a.waitJS("the view fitted", `window.liveshare.state().fitted`)
	before := a.state().Nodes[0]
	x, y := a.center(a.nodeSel(users))
	a.do(chromedp.DragAndDropXY(x, y-10, x+220, y+130, 12))
	a.waitJS("the move acknowledged", fmt.Sprintf(`(() => { const s = window.liveshare.state(); const n = s.nodes.find(n => n.id === %q);
		return s.pending === 0 && n.x !== %v; })()`, users, before["x"]))
	g := browserConverge(t, srv, roomID, a, b)
	if g.Nodes[0]["x"] == before["x"] || g.Nodes[0]["y"] == before["y"] {
		t.Fatalf("the drag did not move the node: before %v, after %v", before, g.Nodes[0])
	}

	// A adds a second table from the keyboard and connects it to the first
	// (select, C, click the target).
	a.do(chromedp.Focus(chromedp.ID("canvas")))
	a.key("n")
	a.waitJS("the second table", `window.liveshare.state().nodes.length === 2 && document.activeElement.id === 'node-label'`)
	var orders string
	a.eval(`document.getElementById('node-form').dataset.id`, &orders)
	a.do(chromedp.SetValue(chromedp.ID("node-label"), "orders"))
	a.key(kb.Enter)
	a.waitJS("orders renamed", fmt.Sprintf(`window.liveshare.state().nodes.find(n => n.id === %q).label === 'orders'`, orders))
	a.clickUntil(a.nodeSel(orders), "orders selected", fmt.Sprintf(`document.getElementById('node-form').dataset.id === %q && !document.getElementById('node-form').hidden`, orders))
	a.key("c")
	a.click(a.nodeSel(users))
	a.waitJS("the edge", `window.liveshare.state().edges.length === 1`)
	edge := a.state().Edges[0]
	if edge["source"] != orders || edge["target"] != users {
		t.Fatalf("edge %v, want %s → %s", edge, orders, users)
	}
	b.waitJS("the edge in B", fmt.Sprintf(`(() => { const e = document.querySelector('g.edge[data-id=%q]');
		return e && e.querySelector('text.label').textContent === 'user_id'; })()`, edge["id"]))
	// A second relation, back from users to orders, by Shift-drag.
	ux, uy := a.center(a.nodeSel(users))
	ox, oy := a.center(a.nodeSel(orders))
	shift := chromedp.ButtonModifiers(chromedp.ModifierShift)
	a.do(
		chromedp.MouseEvent(chromedp.MousePressed, ux, uy, chromedp.ButtonLeft, chromedp.ClickCount(1), shift),
		chromedp.MouseEvent(chromedp.MouseMoved, (ux+ox)/2, (uy+oy)/2, chromedp.ButtonLeft, shift),
		chromedp.MouseEvent(chromedp.MouseMoved, ox, oy, chromedp.ButtonLeft, shift),
		chromedp.MouseEvent(chromedp.MouseReleased, ox, oy, chromedp.ButtonLeft, chromedp.ClickCount(1), shift),
	)
	a.waitJS("the second edge", fmt.Sprintf(`window.liveshare.state().edges.some(e => e.source === %q && e.target === %q) &&
		getComputedStyle(document.getElementById('rubber')).display === 'none'`, users, orders))
	browserConverge(t, srv, roomID, a, b)
	a.screenshot("1-two-tables")

	// B deletes the edge (click it, Delete), then the users table; A follows.
	b.key("f") // fit B's view to the graph
	b.click(fmt.Sprintf(`g.edge[data-id=%q] line.hit`, edge["id"]))
	b.waitJS("the edge selected", `!document.getElementById('edge-form').hidden`)
	b.key(kb.Delete)
	a.waitJS("the edge gone in A", fmt.Sprintf(`window.liveshare.state().edges.length === 1 && !document.querySelector('g.edge[data-id=%q]')`, edge["id"]))
	b.clickUntil(b.nodeSel(users), "users selected", fmt.Sprintf(`document.getElementById('node-form').dataset.id === %q && !document.getElementById('node-form').hidden`, users))
	b.key(kb.Delete)
	// Its other relation goes with it.
	a.waitJS("users gone in A", fmt.Sprintf(`!document.querySelector('g.node[data-id=%q]') && !document.querySelector('g.edge') &&
		window.liveshare.state().nodes.length === 1 && window.liveshare.state().edges.length === 0`, users))
	browserConverge(t, srv, roomID, a, b)

	// Build a schema through the API (another client), snapshot it from the
	// panel, and change it further.
	browserPostOps(t, srv, roomID,
		tableOp("customers", 0, 0, "id uuid", "name text"),
		tableOp("payments", 300, 220, "id uuid", "order_id uuid", "amount numeric"),
		relationOp("orders_customer", orders, "customers", "customer_id"),
		relationOp("payments_order", "payments", orders, "order_id"),
	)
	atSnapshot := browserConverge(t, srv, roomID, a, b)
	a.click(`#snap-now`)
	a.waitJS("the snapshot in the panel", fmt.Sprintf(`!!document.querySelector('#snapshots li[data-version="%d"]')`, atSnapshot.Version))
	browserPostOps(t, srv, roomID,
		tableOp("before_restart", 600, 0, "id uuid"),
		map[string]any{"op": "remove_edge", "id": "payments_order"},
	)
	browserConverge(t, srv, roomID, a, b)

	// The server dies. Both pages notice, and come back by themselves when
	// it is back, without reloading.
	srv.kill()
	for _, p := range []*browserPage{a, b} {
		p.waitJS("reconnecting", `document.getElementById('conn').dataset.state === 'reconnecting'`)
	}
	a.screenshot("2-server-down")
	srv = srv.restart()
	if srv.URL != base {
		t.Fatalf("the restarted server listens on %s, not %s", srv.URL, base)
	}
	// A change made while the pages are still away: they must catch it up.
	browserPostOps(t, srv, roomID, tableOp("after_restart", 600, 250, "id uuid"))
	browserConverge(t, srv, roomID, a, b)
	for _, p := range []*browserPage{a, b} {
		var now string
		p.eval(`window.liveshare.pageLoadId`, &now)
		if want := map[*browserPage]string{a: loadA, b: loadB}[p]; now != want {
			t.Fatalf("%s reloaded (page id %s → %s)", p.name, want, now)
		}
		p.waitJS("the recovery shown", `(() => { const r = document.getElementById('recovery');
			return r.dataset.kind === 'resumed' && r.innerText.includes('Resumed after v') && r.innerText.includes('from an empty room'); })()`)
	}
	a.screenshot("3-reconnected")

	// A restores the snapshot from the panel, confirming; both pages reset.
	a.click(fmt.Sprintf(`#snapshots li[data-version="%d"] button.restore`, atSnapshot.Version))
	a.waitJS("the confirmation", `document.getElementById('confirm').open`)
	a.screenshot("4-confirm-restore")
	a.click(`#confirm-ok`)
	for _, p := range []*browserPage{a, b} {
		p.waitJS("the reset", `document.getElementById('recovery').dataset.kind === 'reset'`)
	}
	g = browserConverge(t, srv, roomID, a, b)
	if !reflect.DeepEqual(g.Nodes, atSnapshot.Nodes) || !reflect.DeepEqual(g.Edges, atSnapshot.Edges) {
		t.Fatalf("after the restore the room is\n%v %v\nwant the snapshot's\n%v %v", g.Nodes, g.Edges, atSnapshot.Nodes, atSnapshot.Edges)
	}
	b.screenshot("5-after-restore")

	// An API error reaches the user in words: B opens a room that does not exist.
	b.do(chromedp.Navigate(base + "/?room=00000000-0000-4000-8000-000000000000"))
	b.waitJS("the error banner", `document.getElementById('errors').innerText.includes('room not found (room_not_found, HTTP 404)')`)
	b.screenshot("6-error")
}

// TestBrowserSchemaScreenshot shows a small schema of five tables and their
// relations, for the eye (the screenshot is the artifact).
func TestBrowserSchemaScreenshot(t *testing.T) {
	t.Parallel()
	chromium := chromiumPath(t)
	artifacts := browserArtifacts(t)
	srv := startServer(t, store.Config{DataDir: t.TempDir()})
	rm := srv.createRoom("shop schema")
	browserPostOps(t, srv, rm.ID,
		tableOp("customers", 40, 60, "id uuid", "email text", "name text", "created_at timestamptz"),
		tableOp("orders", 360, 40, "id uuid", "customer_id uuid", "status text", "placed_at timestamptz"),
		tableOp("order_items", 680, 60, "order_id uuid", "product_id uuid", "quantity int", "price numeric"),
		tableOp("products", 680, 320, "id uuid", "category_id uuid", "name text", "price numeric"),
		tableOp("categories", 360, 340, "id uuid", "parent_id uuid", "name text"),
		relationOp("orders_customer_fk", "orders", "customers", "customer_id"),
		relationOp("items_order_fk", "order_items", "orders", "order_id"),
		relationOp("items_product_fk", "order_items", "products", "product_id"),
		relationOp("products_category_fk", "products", "categories", "category_id"),
		relationOp("categories_parent_fk", "categories", "categories", "parent_id"),
	)
	p := newBrowserPage(t, chromium, "schema", artifacts)
	p.do(chromedp.Navigate(srv.URL + "/?room=" + rm.ID + "&name=alice"))
	p.waitJS("live", `window.liveshare && window.liveshare.state().conn === 'live' && document.querySelectorAll('g.node').length === 5`)
	p.waitJS("drawn", `document.querySelectorAll('g.edge').length === 5 && window.liveshare.state().fitted && !document.querySelector('g.node.flash')`)
	// Select one table so the inspector shows it, and let the fit settle.
	p.click(p.nodeSel("orders"))
	p.waitJS("selected", `!document.getElementById('node-form').hidden`)
	p.waitJS("presence", `document.getElementById('presence').innerText.includes('alice')`)
	path := p.screenshot("schema")
	t.Logf("schema screenshot: %s (kept when LIVESHARE_KEEP_ARTIFACTS=1 or LIVESHARE_ARTIFACTS is set)", path)
	p.assertLocal(srv.URL)
}

// TestBrowserRecoversFromSnapshot: while the page is away, the ops it would
// resume from are pruned (one snapshot kept); when the server is back the
// stream answers with a snapshot event, and the page shows it recovered
// from it and converges, still without reloading.
func TestBrowserRecoversFromSnapshot(t *testing.T) {
	t.Parallel()
	chromium := chromiumPath(t)
	artifacts := browserArtifacts(t)
	cfg := store.Config{DataDir: t.TempDir()}
	port := browserFreePort(t)
	srv := startServer(t, cfg, "LIVESHARE_ADDR=127.0.0.1:"+strconv.Itoa(port),
		"LIVESHARE_SNAPSHOT_INTERVAL=1h", "LIVESHARE_SNAPSHOT_KEEP=1", noHourly, noDaily)
	rm := srv.createRoom("pruned")
	browserPostOps(t, srv, rm.ID, tableOp("users", 0, 0, "id uuid"), tableOp("orders", 300, 0, "id uuid"))

	p := newBrowserPage(t, chromium, "recover", artifacts)
	defer p.assertLocal(srv.URL)
	p.do(chromedp.Navigate(srv.URL + "/?room=" + rm.ID + "&name=carol"))
	browserConverge(t, srv, rm.ID, p)
	var load string
	p.eval(`window.liveshare.pageLoadId`, &load)

	// The server goes away; meanwhile another instance on another port
	// (same database) takes ops and two snapshots, pruning the log past
	// the page's position.
	srv.kill()
	p.waitJS("reconnecting", `document.getElementById('conn').dataset.state === 'reconnecting'`)
	// History off: with it on, the log is kept back to the room's first
	// checkpoint, and this test needs it pruned past the page's position.
	side := startServer(t, cfg, "LIVESHARE_SNAPSHOT_INTERVAL=1h", "LIVESHARE_SNAPSHOT_KEEP=1", noHourly, noDaily)
	browserPostOps(t, side, rm.ID, relationOp("orders_user", "orders", "users", "user_id"))
	for range 2 {
		if r := side.must("POST", "/rooms/"+rm.ID+"/snapshots", nil); r.Status != http.StatusCreated {
			t.Fatalf("snapshot: %d %s", r.Status, r.Body)
		}
		browserPostOps(t, side, rm.ID, tableOp(fmt.Sprintf("t%d", time.Now().UnixNano()), 600, 0))
	}
	if r := side.must("GET", "/rooms/"+rm.ID+"/ops?since=0", nil); r.Status != http.StatusGone {
		t.Fatalf("the log was not pruned: GET /ops?since=0 answered %d %s", r.Status, r.Body)
	}
	side.kill()

	srv = srv.restart()
	g := browserConverge(t, srv, rm.ID, p)
	p.waitJS("the snapshot it recovered from", `(() => { const r = document.getElementById('recovery');
		return r.dataset.kind === 'snapshot' && r.innerText.startsWith('Reconnected; recovered from snapshot v'); })()`)
	var snapVersion string
	p.eval(`document.getElementById('recovery').dataset.version`, &snapVersion)
	if v, _ := strconv.ParseInt(snapVersion, 10, 64); v == 0 || v >= g.Version {
		t.Fatalf("recovered from snapshot v%s, want one between 1 and the room's version %d", snapVersion, g.Version)
	}
	var now string
	p.eval(`window.liveshare.pageLoadId`, &now)
	if now != load {
		t.Fatal("the page reloaded")
	}
	p.screenshot("recovered-from-snapshot")
}
