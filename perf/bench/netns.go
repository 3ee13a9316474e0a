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
	"regexp"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/nftpolicy/nftpolicy/internal/netns"
)

// Every namespace the suite makes is named "npperf-<6 hex>-<what>"; the hex
// is the run's, so Down can tell a live run's namespaces from leftovers.
const lockDir = "/run/npperf"

var prefixRE = regexp.MustCompile(`^npperf-[0-9a-f]{6}-`)

// Janitor owns what a run creates outside its process: network namespaces,
// child processes, the data-path lab. Close undoes all of it.
type Janitor struct {
	prefix string
	lock   *netns.RunLock

	mu      sync.Mutex
	closers []func() error
	closed  bool
}

// NewJanitor picks a run prefix and locks it for the life of the process.
func NewJanitor() (*Janitor, error) {
	var b [3]byte
	rand.Read(b[:])
	prefix := "npperf-" + hex.EncodeToString(b[:]) + "-"
	lock, err := netns.TakeLock(lockDir, prefix)
	if err != nil {
		return nil, err
	}
	return &Janitor{prefix: prefix, lock: lock}, nil
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
	fd, err := unix.Open(netns.Path(name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
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
	errs = append(errs, deleteRun(j.prefix), j.lock.Release())
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

// deleteRun deletes the namespaces whose names start with prefix.
func deleteRun(prefix string) error {
	names, err := netns.List(prefix)
	if err != nil {
		return err
	}
	return netns.Delete(names)
}

// Down deletes the namespaces of runs that died without cleaning up: those
// whose lock no live process holds.
func Down() error {
	names, err := netns.List("npperf-")
	if err != nil {
		return err
	}
	prefixes := map[string]bool{}
	for _, n := range names {
		if p := prefixRE.FindString(n); p != "" {
			prefixes[p] = true
		}
	}
	var errs []error
	for p := range prefixes {
		lock, err := netns.TakeLock(lockDir, p)
		if err != nil {
			continue // live, or not ours to judge
		}
		errs = append(errs, deleteRun(p), lock.Release())
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
func (n *NetNS) Path() string { return netns.Path(n.Name) }

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

// Start starts cmd inside the namespace without iproute2 in between (see
// netns.Start).
func (n *NetNS) Start(cmd *exec.Cmd) error { return netns.Start(n.fd, cmd) }

// Socket creates a socket inside the namespace.
func (n *NetNS) Socket(domain, typ, proto int) (int, error) {
	return netns.Socket(n.fd, domain, typ, proto)
}
