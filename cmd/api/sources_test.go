package main_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	trackOnce sync.Once
	trackErr  error
)

// trackSources makes the result of the running tests depend on every file
// of the module. The end-to-end tests run the binary TestMain builds with
// `go build`, which go test's result cache does not see: it keys on the
// test binary, which links little of the server, and on the files the tests
// opened. Without this, `go test ./cmd/api` answers a cached PASS after a
// change to, say, store/ops.go, for a server it never built. go test hashes
// the contents of the files a test opened when it looks a result up, so
// opening them here is enough. Every test that runs the binary calls it.
func trackSources(t testing.TB) {
	t.Helper()
	trackOnce.Do(func() {
		root := filepath.Join("..", "..")
		trackErr = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if path != root && strings.HasPrefix(d.Name(), ".") {
					return filepath.SkipDir
				}
				return nil
			}
			if !d.Type().IsRegular() {
				return nil
			}
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			return f.Close()
		})
	})
	if trackErr != nil {
		t.Fatalf("track the module's sources for the test cache: %v", trackErr)
	}
}
