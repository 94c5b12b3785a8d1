package main_test

import (
	"path/filepath"
	"sync"
	"testing"

	"github.com/liveshare/liveshare/internal/testbuild"
)

var (
	trackOnce sync.Once
	trackErr  error
)

// trackSources makes the result of the running tests depend on every file
// of the module (testbuild.TrackSources says why). Every test that runs the
// binary calls it.
func trackSources(t testing.TB) {
	t.Helper()
	trackOnce.Do(func() {
		trackErr = testbuild.TrackSources(filepath.Join("..", ".."))
	})
	if trackErr != nil {
		t.Fatalf("track the module's sources for the test cache: %v", trackErr)
	}
}
