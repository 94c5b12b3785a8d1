package main_test

import (
	"os"
	"os/exec"
	"testing"
)

// TestClientModule runs the node tests of web/app/liveshare.js (the page's
// client module) against the built binary: web/clienttest starts the
// binary itself, as often as its outage cases need. It skips when node is
// not installed, unless LIVESHARE_BROWSER_TESTS=required (CI), where a
// missing node fails.
func TestClientModule(t *testing.T) {
	t.Parallel()
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("LIVESHARE_BROWSER_TESTS") == "required" {
			t.Fatal("node not found and LIVESHARE_BROWSER_TESTS=required")
		}
		t.Skip("node not found; set LIVESHARE_BROWSER_TESTS=required to make this a failure")
	}
	// The result depends on web/'s files, which go test does not see read.
	trackSources(t)
	cmd := exec.Command(node, "--test", "--test-reporter=tap", "../../web/clienttest/")
	cmd.Env = append(os.Environ(), "LIVESHARE_BINARY="+binary)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node --test web/clienttest: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
