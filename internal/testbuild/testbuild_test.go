package testbuild_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/liveshare/liveshare/internal/testbuild"
)

// TestBinaryIsBuiltOncePerChange: a second build of unchanged sources
// leaves the binary in place (go build replaces a target it links again by
// a new file), and the binary is the server.
func TestBinaryIsBuiltOncePerChange(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the server")
	}
	first, err := testbuild.Binary(testbuild.ServerPackage)
	if err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(first)
	if err != nil {
		t.Fatal(err)
	}
	second, err := testbuild.Binary(testbuild.ServerPackage)
	if err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat(second)
	if err != nil {
		t.Fatal(err)
	}
	if first != second || !os.SameFile(before, after) {
		t.Errorf("the second build replaced the binary: %s then %s", first, second)
	}
	out, err := exec.Command(second, "-h").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "LIVESHARE_ADDR") {
		t.Errorf("%s -h: %v\n%s", second, err, out)
	}
}

// TestTrackSources opens a tree's files, and fails on a root it cannot
// walk rather than let the test cache see nothing.
func TestTrackSources(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(root+"/pkg", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(root+"/pkg/a.go", []byte("package pkg\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := testbuild.TrackSources(root); err != nil {
		t.Errorf("TrackSources: %v", err)
	}
	if err := testbuild.TrackSources(root + "/missing"); err == nil {
		t.Error("TrackSources of a missing directory: no error")
	}
}
