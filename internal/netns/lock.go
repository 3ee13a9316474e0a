package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// RunLock is the flock a run holds on its own lock file for as long as its
// process lives, so that a cleanup can tell a killed run's leftovers
// (nobody holds the lock) from a run in progress, in this process or
// another. The kernel drops the lock when the process dies, however it dies.
type RunLock struct {
	path string
	file *os.File
}

// LockPath is the lock file of the run whose namespaces start with prefix.
func LockPath(dir, prefix string) string {
	return filepath.Join(dir, strings.TrimSuffix(prefix, "-")+".lock")
}

// ErrLive is returned by TakeLock when a live process holds the run's lock.
var ErrLive = errors.New("a live run holds its lock")

// TakeLock locks the run prefix's lock file in dir without waiting.
func TakeLock(dir, prefix string) (*RunLock, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	path := LockPath(dir, prefix)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("run %s: %w", prefix, ErrLive)
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	return &RunLock{path: path, file: f}, nil
}

// Release removes the lock file and drops the lock. A file already removed
// (by a concurrent cleanup) is no error; a nil lock releases nothing.
func (l *RunLock) Release() error {
	if l == nil {
		return nil
	}
	err := os.Remove(l.path)
	if errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	return errors.Join(err, l.file.Close())
}
