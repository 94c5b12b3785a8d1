//go:build !unix

package store

import "errors"

// ErrDataDirInUse: another process holds the embedded database's lock.
var ErrDataDirInUse = errors.New("another LiveShare process is using this data directory")

// LockDataDir is a no-op where advisory file locks are not available: there
// the operator keeps to one process per data directory.
func LockDataDir(dir string) (release func(), err error) { return func() {}, nil }
