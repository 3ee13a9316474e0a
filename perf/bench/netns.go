// Package bench is the performance suite: it programs real kernels in
// throwaway network namespaces, times nftpolicy's agent against the
// strategies of its peers on the same clusters, and reports the results.
package bench

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Every namespace the suite makes is named "npperf-<6 hex>-<what>"; the hex
// is the run's, so Down can tell a live run's namespaces from leftovers.
const (
	netnsDir = "/var/run/netns"
	lockDir  = "/run/npperf"
)

var prefixRE = regexp.MustCompile(`^npperf-[0-9a-f]{6}-`)

// Janitor owns what a run creates outside its process: network namespaces,
// child processes, the data-path lab. Close undoes all of it.
type Janitor struct {
	prefix string
	lock   *os.File

	mu      sync.Mutex
	closers []func() error
	closed  bool
}

// NewJanitor picks a run prefix and locks it for the life of the process.
func NewJanitor() (*Janitor, error) {
	var b [3]byte
	rand.Read(b[:])
	prefix := "npperf-" + hex.EncodeToString(b[:]) + "-"
	lock, err := takeLock(prefix)
	if err != nil {
		return nil, err
	}
	return &Janitor{prefix: prefix, lock: lock}, nil
}

func lockPath(prefix string) string {
	return filepath.Join(lockDir, strings.TrimSuffix(prefix, "-")+".lock")
}

// takeLock flocks the run's lock file; the kernel drops the lock when the
// process dies, however it dies.
func takeLock(prefix string) (*os.File, error) {
	if err := os.MkdirAll(lockDir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(lockPath(prefix), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("run %s is live: %w", prefix, err)
	}
	return f, nil
}

// Defer registers fn to run at Close, before the namespaces go (latest
// first).
func (j *Janitor) Defer(fn func() error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.closers = append(j.closers, fn)
}

// NetNS creates the namespace "<prefix><what>" and keeps it open.
func (j *Janitor) NetNS(what string) (*NetNS, error) {
	j.mu.Lock()
	closed := j.closed
	j.mu.Unlock()
	if closed {
		return nil, errors.New("bench: janitor closed")
	}
	name := j.prefix + what
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ip netns add %s: %v: %s", name, err, out)
	}
	fd, err := unix.Open(filepath.Join(netnsDir, name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	ns := &NetNS{Name: name, fd: fd}
	j.Defer(func() error { return unix.Close(fd) })
	return ns, nil
}

// Close runs the deferred closers, deletes every namespace of the run and
// releases the lock. It is safe to call more than once.
func (j *Janitor) Close() error {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return nil
	}
	j.closed = true
	closers := j.closers
	j.mu.Unlock()
	var errs []error
	for i := len(closers) - 1; i >= 0; i-- {
		errs = append(errs, closers[i]())
	}
	// Sweep by prefix: a namespace whose creation failed half-way goes too.
	errs = append(errs, deleteNetns(j.prefix))
	errs = append(errs, os.Remove(lockPath(j.prefix)), j.lock.Close())
	return errors.Join(errs...)
}

// CloseOnSignal closes j on SIGINT or SIGTERM and exits as a shell would.
func (j *Janitor) CloseOnSignal() (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-ch:
			fmt.Fprintf(os.Stderr, "nftperf: %v: removing the run's namespaces\n", s)
			if err := j.Close(); err != nil {
				fmt.Fprintln(os.Stderr, "nftperf:", err)
			}
			os.Exit(128 + int(s.(syscall.Signal)))
		case <-done:
		}
	}()
	return func() { signal.Stop(ch); close(done) }
}

// deleteNetns deletes the namespaces whose names start with prefix.
func deleteNetns(prefix string) error {
	entries, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var lines []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			lines = append(lines, "netns del "+e.Name())
		}
	}
	if len(lines) == 0 {
		return nil
	}
	cmd := exec.Command("ip", "-force", "-batch", "-")
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("deleting %s*: %v: %s", prefix, err, out)
	}
	return nil
}

// Down deletes the namespaces of runs that died without cleaning up: those
// whose lock no live process holds.
func Down() error {
	entries, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	prefixes := map[string]bool{}
	for _, e := range entries {
		if p := prefixRE.FindString(e.Name()); p != "" {
			prefixes[p] = true
		}
	}
	var errs []error
	for p := range prefixes {
		lock, err := takeLock(p)
		if err != nil {
			continue // live, or not ours to judge
		}
		errs = append(errs, deleteNetns(p), os.Remove(lockPath(p)), lock.Close())
	}
	return errors.Join(errs...)
}

// NetNS is one throwaway namespace.
type NetNS struct {
	Name string
	fd   int
}

// FD is an open descriptor of the namespace, for nft.NewNetlink.
func (n *NetNS) FD() int { return n.fd }

// Path is the namespace's bind mount.
func (n *NetNS) Path() string { return filepath.Join(netnsDir, n.Name) }

// Exec runs a command inside the namespace with stdin and returns its
// combined output.
func (n *NetNS) Exec(stdin []byte, args ...string) ([]byte, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.Name}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s in %s: %w: %s", strings.Join(args, " "), n.Name, err, bytes.TrimSpace(out))
	}
	return out, nil
}

// Start starts cmd inside the namespace without iproute2 in between (`ip
// netns exec` adds a mount namespace and a sysfs remount, milliseconds that
// an agent running in the node's namespace never pays): the child is forked
// from an OS thread switched into the namespace, and inherits it.
func (n *NetNS) Start(cmd *exec.Cmd) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(n.fd, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		serr := cmd.Start()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			// Stay locked: the runtime destroys the thread with the goroutine.
			errc <- errors.Join(serr, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- serr
	}()
	return <-errc
}

// Socket creates a socket inside the namespace.
func (n *NetNS) Socket(domain, typ, proto int) (int, error) {
	return socketIn(n.fd, domain, typ, proto)
}

// socketIn creates a socket on a thread switched into the namespace open as
// nsfd; the socket keeps that namespace for life.
func socketIn(nsfd, domain, typ, proto int) (int, error) {
	type result struct {
		fd  int
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{-1, err}
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(nsfd, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- result{-1, err}
			return
		}
		fd, serr := unix.Socket(domain, typ|unix.SOCK_CLOEXEC, proto)
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			if fd >= 0 {
				unix.Close(fd)
			}
			ch <- result{-1, errors.Join(serr, err)}
			return
		}
		runtime.UnlockOSThread()
		ch <- result{fd, serr}
	}()
	r := <-ch
	return r.fd, r.err
}
