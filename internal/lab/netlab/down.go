package netlab

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/nftpolicy/nftpolicy/internal/netns"
)

// lockDir holds one lock file per live run (netns.RunLock), so Down can
// tell a killed run's leftovers from a run in progress.
const lockDir = "/run/nplab"

// Down deletes every namespace named nplab-* that no live run owns: the
// leftovers of runs that were killed before they could Close. It returns the
// names it deleted.
func Down() (removed []string, err error) {
	names, err := netns.List("nplab-")
	if err != nil {
		return nil, err
	}
	byPrefix := map[string][]string{}
	for _, n := range names {
		p := "" // names of no run's shape have no lock; they go too
		if len(n) >= len("nplab-000000-") && prefixRE.MatchString(n[:len("nplab-000000-")]) {
			p = n[:len("nplab-000000-")]
		}
		byPrefix[p] = append(byPrefix[p], n)
	}
	// Lock files of runs that died with no namespace left.
	locks, _ := filepath.Glob(filepath.Join(lockDir, "nplab-*.lock"))
	for _, path := range locks {
		p := strings.TrimSuffix(filepath.Base(path), ".lock") + "-"
		if _, ok := byPrefix[p]; !ok && prefixRE.MatchString(p) {
			byPrefix[p] = nil
		}
	}

	var errs []error
	for p, names := range byPrefix {
		var lock *netns.RunLock
		if p != "" {
			lock, err = netns.TakeLock(lockDir, p)
			if errors.Is(err, netns.ErrLive) {
				continue // a live run
			}
			if err != nil {
				errs = append(errs, err)
				continue
			}
			// List again under the lock: another Down may have cleaned up
			// this run between our listing and our locking.
			if names, err = netns.List(p); err != nil {
				errs = append(errs, err)
			}
		}
		gone, err := removeNetns(names)
		removed = append(removed, gone...)
		errs = append(errs, err, lock.Release())
	}
	sort.Strings(removed)
	return removed, errors.Join(errs...)
}

// removeNetns deletes namespaces and returns those that are gone. A name
// that vanished meanwhile (a concurrent Down) is no error.
func removeNetns(names []string) (gone []string, err error) {
	err = netns.Delete(names)
	var still []string
	for _, n := range names {
		if _, serr := os.Stat(netns.Path(n)); errors.Is(serr, os.ErrNotExist) {
			gone = append(gone, n)
		} else {
			still = append(still, n)
		}
	}
	if len(still) == 0 {
		return gone, nil
	}
	return gone, fmt.Errorf("netlab: could not delete %v: %w", still, err)
}

// CleanupOnSignal closes l when the process gets SIGINT or SIGTERM, then
// exits with status 130 or 143 as a shell would. Call stop when l is closed
// or no longer needs watching. Only one lab per process should be watched:
// the first watcher to see the signal exits the process.
func CleanupOnSignal(l *Lab) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-ch:
			l.Close()
			code := 130
			if s == syscall.SIGTERM {
				code = 143
			}
			os.Exit(code)
		case <-done:
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			signal.Stop(ch)
			close(done)
		})
	}
}
