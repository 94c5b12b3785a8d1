//go:build unix

package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// ErrDataDirInUse: another process holds the embedded database's lock.
var ErrDataDirInUse = errors.New("another LiveShare process is using this data directory")

// LockDataDir takes an exclusive lock on dir's lock file for as long as the
// process runs, or until release is called: the embedded database serves
// one process, and a second one on the same directory must not start. The
// kernel drops the lock when the process dies, kill -9 included.
func LockDataDir(dir string) (release func(), err error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	path := filepath.Join(dir, "liveshare.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			abs, _ := filepath.Abs(dir)
			return nil, fmt.Errorf("%w (%s): stop it, or give this one its own LIVESHARE_DATA_DIR, or use PostgreSQL (DATABASE_URL) to run several", ErrDataDirInUse, abs)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { _ = f.Close() }, nil
}
