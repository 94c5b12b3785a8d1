package handlers_test

// Contract tests, part 3: GET /docs renders the spec in a real headless
// Chromium with no network, lists every operation, and fetches nothing from
// anywhere but the service.

import (
	"context"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// findChromium returns the browser to test with. Without one the test is
// skipped, unless LIVESHARE_BROWSER_TESTS=required (CI), where it fails.
func findChromium(t *testing.T) string {
	t.Helper()
	candidates := []string{os.Getenv("LIVESHARE_CHROMIUM"), "/usr/bin/chromium", "chromium", "chromium-browser"}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	if os.Getenv("LIVESHARE_BROWSER_TESTS") == "required" {
		t.Fatal("LIVESHARE_BROWSER_TESTS=required but no Chromium was found (set LIVESHARE_CHROMIUM or install Debian's chromium)")
	}
	t.Skip("no Chromium found; set LIVESHARE_BROWSER_TESTS=required to make this a failure")
	return ""
}

func TestContractDocsPageInChromium(t *testing.T) {
	browser := findChromium(t)
	s := loadSpec(t)
	srv := httptest.NewServer(fullRouter(t))
	t.Cleanup(srv.Close)

	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(browser),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(allocCtx)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 60*time.Second)
	defer cancelTimeout()

	// Attach the tab, then pause every request it makes: one to the
	// service goes on, any other is recorded and failed, so the test also
	// proves the page works without them.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	var mu sync.Mutex
	var requested, outside []string
	paused := chromedp.Events(ctx, fetch.RequestPaused)
	if _, err := chromedp.Call(ctx, fetch.Enable, fetch.EnableParams{Patterns: []*fetch.RequestPattern{{URLPattern: "*"}}}); err != nil {
		t.Fatalf("enable request interception: %v", err)
	}
	go func() {
		for e, err := range paused {
			if err != nil {
				return
			}
			u, perr := url.Parse(e.Request.URL)
			local := perr == nil && (u.Scheme == "data" || u.Scheme == "blob" || u.Hostname() == "127.0.0.1")
			mu.Lock()
			requested = append(requested, e.Request.URL)
			if !local {
				outside = append(outside, e.Request.URL)
			}
			mu.Unlock()
			if local {
				_, _ = chromedp.Call(ctx, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: e.RequestID})
			} else {
				_, _ = chromedp.Call(ctx, fetch.FailRequest, fetch.FailRequestParams{RequestID: e.RequestID, ErrorReason: network.ErrorReasonBlockedByClient})
			}
		}
	}()

	if err := chromedp.Do(ctx,
		chromedp.Navigate(srv.URL+"/docs"),
		chromedp.WaitVisible(chromedp.CSS(".opblock-summary-path")),
	); err != nil {
		t.Fatalf("open /docs in Chromium: %v", err)
	}
	listed, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('.opblock')).map(function (b) {
		var m = b.querySelector('.opblock-summary-method');
		var p = b.querySelector('.opblock-summary-path');
		return (m ? m.textContent : '?') + ' ' + (p ? (p.getAttribute('data-path') || p.textContent) : '?');
	})`))
	if err != nil {
		t.Fatalf("read the operations the page lists: %v", err)
	}
	if path := os.Getenv("LIVESHARE_DOCS_SCREENSHOT"); path != "" {
		if png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)); err == nil {
			_ = os.WriteFile(path, png, 0o644)
		}
	}

	var want []string
	for path, item := range s.model.Paths.PathItems.FromOldest() {
		for method := range item.GetOperations().FromOldest() {
			want = append(want, strings.ToUpper(method)+" "+path)
		}
	}
	got := make([]string, 0, len(listed))
	for _, l := range listed {
		got = append(got, strings.Join(strings.Fields(strings.ReplaceAll(l, "\u200b", "")), " "))
	}
	sort.Strings(want)
	sort.Strings(got)
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("the docs page does not list %s", w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("the docs page lists %d operations, the spec has %d:\n%v", len(got), len(want), got)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(outside) > 0 {
		t.Errorf("the docs page requested %d URLs outside 127.0.0.1: %v", len(outside), outside)
	}
	if !slices.ContainsFunc(requested, func(u string) bool { return strings.HasSuffix(u, "/openapi.yaml") }) {
		t.Errorf("the docs page never loaded /openapi.yaml; it requested %v", requested)
	}
	t.Logf("the page made %d requests, all to 127.0.0.1", len(requested))
}
