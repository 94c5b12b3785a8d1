package main_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/liveshare/liveshare/auth"
	"github.com/liveshare/liveshare/store"
)

// TestBrowserSharing: in jwt mode an owner signs in with #token=, creates a
// room and shares it from the members panel with a viewer and an editor.
// The viewer's page offers no change (controls disabled) and the API
// refuses its changes; the editor's changes reach everyone; removing the
// viewer ends its stream.
func TestBrowserSharing(t *testing.T) {
	t.Parallel()
	chromium := chromiumPath(t)
	artifacts := browserArtifacts(t)
	srv := startServer(t, store.Config{DataDir: t.TempDir()}, "LIVESHARE_JWT_SECRET="+matrixSecret, "LIVESHARE_SNAPSHOT_INTERVAL=1h")
	base := srv.URL
	ownerTok := mintToken(t, matrixSecret, "olga", time.Hour, func(c *auth.Claims) { c.Name, c.CreateRooms = "Olga", true })
	viewerTok := mintToken(t, matrixSecret, "vic", time.Hour, func(c *auth.Claims) { c.Name = "Vic" })
	editorTok := mintToken(t, matrixSecret, "eddie", time.Hour, func(c *auth.Claims) { c.Name = "Eddie" })

	owner := newBrowserPage(t, chromium, "owner", artifacts)
	viewer := newBrowserPage(t, chromium, "viewer", artifacts)
	editor := newBrowserPage(t, chromium, "editor", artifacts)
	defer func() {
		for _, p := range []*browserPage{owner, viewer, editor} {
			p.assertLocal(base)
		}
	}()

	// Without a token the page asks for one.
	owner.do(chromedp.Navigate(base + "/"))
	owner.waitJS("the sign-in box", `window.liveshare && !document.getElementById('signin').hidden`)

	// The owner signs in through the fragment, which leaves the address bar.
	owner.do(chromedp.Navigate(base + "/#token=" + ownerTok))
	owner.waitJS("signed in", `window.liveshare.state().me === 'olga' && document.getElementById('signin').hidden`)
	var href string
	owner.eval(`location.href`, &href)
	if strings.Contains(href, "token") {
		t.Errorf("the token is still in the address bar: %s", href)
	}
	owner.do(chromedp.SetValue(chromedp.ID("new-room-name"), "team schema"))
	owner.click(`#create-room button`)
	owner.waitJS("the new room live as owner", `window.liveshare.state().conn === 'live' && window.liveshare.state().role === 'owner' && !document.getElementById('members-panel').hidden`)
	roomID := owner.state().Room
	for _, m := range []struct{ sub, role string }{{"vic", "viewer"}, {"eddie", "editor"}} {
		owner.do(chromedp.SetValue(chromedp.ID("member-subject"), m.sub))
		owner.do(chromedp.SetValue(chromedp.ID("member-role"), m.role))
		owner.click(`#add-member button`)
		owner.waitJS("the member listed", fmt.Sprintf(`!!document.querySelector('#members li[data-subject=%q][data-role=%q]')`, m.sub, m.role))
	}
	owner.screenshot("shared")

	// The viewer: signed in by pasting the token; nothing to change.
	viewer.do(chromedp.Navigate(base + "/?room=" + roomID))
	viewer.waitJS("the sign-in box", `window.liveshare && !document.getElementById('signin').hidden`)
	viewer.do(chromedp.SetValue(chromedp.ID("token"), viewerTok))
	viewer.click(`#signin-form button`)
	viewer.waitJS("viewer live", `window.liveshare.state().conn === 'live' && window.liveshare.state().role === 'viewer'`)
	var disabled map[string]bool
	viewer.eval(`(() => { const o = {}; for (const id of ['add-table','add-note','connect','rename','delete','snap-now']) o[id] = document.getElementById(id).disabled;
		o.members = document.getElementById('members-panel').hidden; o.fit = !document.getElementById('fit').disabled;
		o.badge = document.getElementById('role').textContent === 'viewer'; return o; })()`, &disabled)
	for k, v := range disabled {
		if !v {
			t.Errorf("viewer page: %s is not as a viewer's should be (%v)", k, disabled)
		}
	}
	viewer.screenshot("viewer")
	// The API refuses what the controls would do, even from the page.
	var status int
	viewer.eval(fmt.Sprintf(`window.sneaky = 0; fetch('/rooms/%s/ops', {method: 'POST', headers: {'Content-Type': 'application/json'},
		body: JSON.stringify({ops: [{op: 'add_node', node: {id: 'sneaky'}}]})}).then((r) => { window.sneaky = r.status; }); true`, roomID), nil)
	viewer.waitJS("the viewer's post answered", `window.sneaky > 0`)
	viewer.eval(`window.sneaky`, &status)
	if status != 403 {
		t.Errorf("the viewer's post from the page answered %d, want 403", status)
	}
	viewer.click(`#canvas`)
	viewer.key("n")

	// The editor adds a table; the owner and the viewer see it.
	editor.do(chromedp.Navigate(base + "/?room=" + roomID + "#token=" + editorTok))
	editor.waitJS("editor live", `window.liveshare.state().conn === 'live' && window.liveshare.state().role === 'editor'`)
	editor.click(`#add-table`)
	editor.waitJS("the editor's table", `window.liveshare.state().nodes.length === 1`)
	table := editor.state().Nodes[0]["id"].(string)
	for _, p := range []*browserPage{owner, viewer} {
		p.waitJS("the editor's table", fmt.Sprintf(`!!document.querySelector(%q)`, p.nodeSel(table)))
	}
	for _, p := range []*browserPage{owner, viewer, editor} {
		p.waitJS("everyone present by token name", `(() => { const t = document.getElementById('presence').innerText; return t.includes('Olga') && t.includes('Vic') && t.includes('Eddie'); })()`)
		if n := len(p.state().Nodes); n != 1 {
			t.Errorf("%s holds %d nodes, want only the editor's (the viewer's key press must change nothing)", p.name, n)
		}
	}
	editor.screenshot("edited")
	r := srv.must("GET", "/rooms/"+roomID+"/graph", nil, "Authorization", "Bearer "+ownerTok)
	if r.Status != 200 || strings.Contains(string(r.Body), "sneaky") || !strings.Contains(string(r.Body), table) {
		t.Errorf("the graph on the server: %d %s", r.Status, r.Body)
	}

	// The owner removes the viewer: its stream ends and the page says so.
	owner.click(`#members li[data-subject="vic"] button`)
	viewer.waitJS("the viewer's access ended", `window.liveshare.state().conn !== 'live' && document.getElementById('errors').innerText.includes('access to this room ended')`)
	viewer.screenshot("removed")
}
