//go:build unix

package main

import "syscall"

// openFileLimit returns how many file descriptors the process may open: the
// soft RLIMIT_NOFILE, which the Go runtime raised to the hard limit at
// start. ok is false when there is no limit to speak of (RLIM_INFINITY
// among them).
func openFileLimit() (n int, ok bool) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur > 1<<40 {
		return 0, false
	}
	return int(rl.Cur), true
}
