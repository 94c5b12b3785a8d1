package main_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/liveshare/liveshare/store"
)

// TestBrowserHistoryPanel: on each database, the page's history panel
// lists the room's checkpoint and snapshots with their times, shows a past
// version read-only with what changed since marked on the canvas (from the
// list and from the slider), and restores it.
func TestBrowserHistoryPanel(t *testing.T) {
	chromium := chromiumPath(t)
	artifacts := browserArtifacts(t)
	databases(t, func(t *testing.T, cfg store.Config) {
		srv := startServer(t, cfg, "LIVESHARE_SNAPSHOT_INTERVAL=200ms")
		rm := srv.createRoom("history panel")
		browserPostOps(t, srv, rm.ID, tableOp("users", 0, 0, "id uuid"), tableOp("orders", 300, 0, "id uuid"),
			relationOp("orders_user", "orders", "users", "user_id"))
		srv.snapWait(rm.ID, 30*time.Second, "checkpoint", func(l []snapMeta) bool { return len(l) > 0 && l[0].Trigger == "checkpoint" })
		at3 := browserGraph(t, srv, rm.ID)
		browserPostOps(t, srv, rm.ID, map[string]any{"op": "remove_node", "id": "orders"})                                            // 4
		browserPostOps(t, srv, rm.ID, map[string]any{"op": "update_node", "id": "users", "patch": map[string]any{"label": "people"}}) // 5
		browserPostOps(t, srv, rm.ID, tableOp("notes", 0, 300))                                                                       // 6

		p := newBrowserPage(t, chromium, strings.ReplaceAll(t.Name(), "/", "-"), artifacts)
		defer p.assertLocal(srv.URL)
		p.do(chromedp.Navigate(srv.URL + "/?room=" + rm.ID + "&name=hana"))
		browserConverge(t, srv, rm.ID, p)
		p.waitJS("the history panel with the checkpoint", `!document.getElementById('history-panel').hidden &&
			document.querySelector('#history-points li[data-trigger="checkpoint"][data-version="3"]') !== null &&
			document.getElementById('history-slider').max === '6'`)
		var when string
		p.eval(`document.querySelector('#history-points li[data-trigger="checkpoint"] span').textContent`, &when)
		if when == "" {
			t.Errorf("the checkpoint is listed without its time")
		}

		// From the list: version 3, read-only, with the diff against now.
		p.click(`#history-points li[data-trigger="checkpoint"] button`)
		p.waitJS("version 3 shown", `window.liveshare.state().past === 3`)
		marks := func() map[string]string {
			var m map[string]string
			p.eval(`Object.fromEntries([...document.querySelectorAll('#nodes g.node, #edges g.edge')].map((g) =>
				[g.dataset.id, [...g.classList].filter((c) => c.startsWith('diff-')).join(' ')]))`, &m)
			return m
		}
		if got, want := marks(), map[string]string{"users": "diff-changed", "orders": "diff-removed", "orders_user": "diff-removed", "notes": "diff-added"}; !reflect.DeepEqual(got, want) {
			t.Errorf("canvas at version 3: marks %v, want %v", got, want)
		}
		var readOnly bool
		p.eval(`document.getElementById('add-table').disabled && document.getElementById('delete').disabled`, &readOnly)
		if !readOnly {
			t.Errorf("editing is possible while a past version is shown")
		}
		var summary string
		p.eval(`document.getElementById('history-diff').textContent`, &summary)
		if summary != "Since v3: 1 added, 2 removed, 1 changed (to v6)." {
			t.Errorf("diff summary %q", summary)
		}
		p.screenshot("version-3")

		// From the slider: version 4 (orders already gone).
		p.eval(`(() => { const s = document.getElementById('history-slider'); s.value = '4'; s.dispatchEvent(new Event('change')); return true; })()`, nil)
		p.waitJS("version 4 shown", `window.liveshare.state().past === 4`)
		if got, want := marks(), map[string]string{"users": "diff-changed", "notes": "diff-added"}; !reflect.DeepEqual(got, want) {
			t.Errorf("canvas at version 4: marks %v, want %v", got, want)
		}

		// Back to version 3 and restore it.
		p.click(`#history-points li[data-trigger="checkpoint"] button`)
		p.waitJS("version 3 shown again", `window.liveshare.state().past === 3`)
		p.click(`#history-restore`)
		p.waitJS("the confirmation", `document.getElementById('confirm').open`)
		p.click(`#confirm-ok`)
		p.waitJS("live again after the restore", `window.liveshare.state().past === null && window.liveshare.state().version === 7`)
		g := browserConverge(t, srv, rm.ID, p)
		if !reflect.DeepEqual(g.Nodes, at3.Nodes) || !reflect.DeepEqual(g.Edges, at3.Edges) {
			t.Errorf("after restoring version 3 the graph is %+v, want %+v", g, at3)
		}
		var marked int
		p.eval(`document.querySelectorAll('[class*="diff-"]').length`, &marked)
		if marked != 0 {
			t.Errorf("%d elements still marked after returning to live", marked)
		}
	})
}
