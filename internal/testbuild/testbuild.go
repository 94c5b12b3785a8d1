// Package testbuild gives end-to-end tests the LiveShare binary without
// linking it again on every run, and makes go test's result cache see the
// sources that binary is built from. It is for tests only.
//
// Linking cmd/api takes seconds (much longer on a busy machine), and every
// test binary that runs the server used to link its own copy into a fresh
// temporary directory. Binary builds into one place per module checkout
// instead: `go build -o` leaves a target alone when its build ID already
// matches the sources, so a warm run costs a hash check, and the test
// binaries of several packages (cmd/api, cmd/loadgen) share one build.
package testbuild

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// ServerPackage is the import path of the LiveShare server.
const ServerPackage = "github.com/liveshare/liveshare/cmd/api"

// ModuleRoot returns the directory of the go.mod above the working
// directory (a test runs in its package's directory).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find the module root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("find the module root: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Binary builds pkg (ServerPackage for the server) with `go build` into a
// directory kept between runs, one per module checkout and package, and
// returns the binary's path. When the binary there is up to date, go build
// only checks that. Builds of the same binary by concurrent test processes
// are serialised by a lock file beside it; a process that runs the binary
// keeps running the file it started even if a later build replaces it, since
// go build moves a new binary into place rather than writing over it.
func Binary(pkg string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	sum := sha256.Sum256([]byte(root + "\x00" + pkg))
	dir := filepath.Join(base, "liveshare-test", hex.EncodeToString(sum[:8]))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("build %s: %w", pkg, err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "build.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", fmt.Errorf("build %s: %w", pkg, err)
	}
	defer lock.Close() // closing releases the lock
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("build %s: lock %s: %w", pkg, lock.Name(), err)
	}

	name := filepath.Base(pkg)
	if pkg == ServerPackage {
		name = "liveshare" // as ps and logs show it
	}
	bin := filepath.Join(dir, name)
	build := exec.Command("go", "build", "-o", bin, pkg)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
	}
	return bin, nil
}

// TrackSources opens every file of the module under root (hidden
// directories aside), so that the result of the running test depends on
// them. End-to-end tests run a binary built with `go build`, which go test's
// result cache does not see: it keys on the test binary, which links little
// of the server, and on the files the test opened, whose contents it hashes
// when it looks a result up. Without this, `go test ./cmd/api` would answer
// a cached PASS after a change to, say, store/ops.go, for a server it never
// built.
func TrackSources(root string) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
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
}
