// Package netns runs code and starts processes inside Linux network
// namespaces, and owns the named ones a run creates: their names, a lock
// per run, and the deletion of a dead run's leftovers. The lab, the perf
// suite and the tests all enter namespaces through it.
package netns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// Dir is where `ip netns add` bind-mounts named namespaces.
const Dir = "/var/run/netns"

// Path is the bind mount of the named namespace.
func Path(name string) string { return filepath.Join(Dir, name) }

// Do runs fn on an OS thread switched into the namespace open as fd. It uses
// a fresh goroutine so that, should switching back fail, the goroutine ends
// still locked: the runtime then destroys the thread instead of reusing one
// stuck in another namespace.
func Do(fd int, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open own netns: %w", err)
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns: %w", err)
			return
		}
		ferr := fn()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			// Stay locked: the thread dies with this goroutine.
			errc <- errors.Join(ferr, fmt.Errorf("setns back: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// DoPath is Do for the namespace at path (a bind mount or /proc/PID/ns/net).
func DoPath(path string, fn func() error) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", path, err)
	}
	defer unix.Close(fd)
	if err := Do(fd, fn); err != nil {
		return fmt.Errorf("in netns %s: %w", path, err)
	}
	return nil
}

// Socket creates a socket in the namespace open as fd. Only socket(2) needs
// the namespace: the socket keeps it for life, so bind, connect and I/O
// happen on any thread. SOCK_CLOEXEC is added to typ.
func Socket(fd, domain, typ, proto int) (int, error) {
	sock := -1
	err := Do(fd, func() error {
		var err error
		sock, err = unix.Socket(domain, typ|unix.SOCK_CLOEXEC, proto)
		return err
	})
	return sock, err
}

// Start starts cmd inside the namespace open as fd without iproute2 in
// between (`ip netns exec` adds a mount namespace and a sysfs remount,
// milliseconds that an agent running in a node's namespace never pays): the
// child is forked from a thread switched into the namespace and inherits it.
func Start(fd int, cmd *exec.Cmd) error {
	return Do(fd, cmd.Start)
}

// List returns the names of the named namespaces that start with prefix.
func List(prefix string) ([]string, error) {
	entries, err := os.ReadDir(Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// Delete deletes the named namespaces in one ip process. -force keeps going
// past a failure so one bad name does not leave the rest behind.
func Delete(names []string) error {
	if len(names) == 0 {
		return nil
	}
	lines := make([]string, len(names))
	for i, n := range names {
		lines[i] = "netns del " + n
	}
	cmd := exec.Command("ip", "-force", "-batch", "-")
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ip -batch (%s): %v: %s", strings.Join(lines, "; "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
