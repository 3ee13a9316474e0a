package netlab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// netnsDir is where `ip netns add` bind-mounts named namespaces.
const netnsDir = "/var/run/netns"

func netnsPath(name string) string { return filepath.Join(netnsDir, name) }

// inNetNS runs fn on an OS thread that has been switched into the network
// namespace at path. It uses a fresh goroutine so that, should switching
// back fail, the goroutine can end still locked: the runtime then destroys
// the thread instead of reusing one stuck in a lab namespace.
func inNetNS(path string, fn func() error) error {
	target, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", path, err)
	}
	defer unix.Close(target)

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
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", path, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			// Stay locked: the thread dies with this goroutine.
			errc <- errors.Join(ferr, fmt.Errorf("setns back from %s: %w", path, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// socketIn creates a non-blocking socket in the namespace at path. Only
// socket(2) needs the namespace: the socket keeps it for life, so bind,
// connect and I/O happen on any thread.
func socketIn(path string, domain, typ, proto int) (int, error) {
	fd := -1
	err := inNetNS(path, func() error {
		var err error
		fd, err = unix.Socket(domain, typ|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
		return err
	})
	return fd, err
}

// sysctl is one namespace-local setting, as a path under /proc/sys/net.
type sysctl struct{ key, value string }

// Settings for every lab namespace, written before its interfaces exist so
// the "default" values reach them.
var commonSysctls = []sysctl{
	// A new namespace inherits IPv4 conf from the host's (with the default
	// net.core.devconf_inherit_init_net=0), so a host with strict rp_filter
	// would pass it on. The lab's paths are symmetric anyway; this makes
	// the lab independent of the host.
	{"ipv4/conf/all/rp_filter", "0"},
	{"ipv4/conf/default/rp_filter", "0"},
	// ICMP errors (port unreachable, nft "reject") are rate-limited per
	// destination (burst 6, then 1/s) and globally. A matrix of rejected UDP
	// probes would turn later rejects into timeouts, so a "denied: drop"
	// expectation could pass by accident. Mask nothing: no limit.
	{"ipv4/icmp_ratemask", "0"},
	{"ipv6/icmp/ratemask", ""},
	// Link-local addresses would sit in DAD for about a second; the lab uses
	// nodad for its own addresses and static neighbours, but keep the
	// auto-generated ones usable at once too.
	{"ipv6/conf/all/accept_dad", "0"},
	{"ipv6/conf/default/accept_dad", "0"},
}

var nodeSysctls = []sysctl{
	{"ipv4/ip_forward", "1"},
	{"ipv6/conf/all/forwarding", "1"},
	{"ipv6/conf/default/forwarding", "1"},
}

// writeSysctls writes namespace-local sysctls in-process: /proc/sys/net
// shows the network namespace of the thread that opens it. IPv6 settings are
// skipped on a kernel without IPv6.
func writeSysctls(path string, settings ...[]sysctl) error {
	return inNetNS(path, func() error {
		for _, list := range settings {
			for _, s := range list {
				p := "/proc/sys/net/" + s.key
				err := os.WriteFile(p, []byte(s.value+"\n"), 0o644)
				if errors.Is(err, os.ErrNotExist) && strings.HasPrefix(s.key, "ipv6/") {
					continue
				}
				if err != nil {
					return fmt.Errorf("sysctl %s=%q in %s: %w", p, s.value, path, err)
				}
			}
		}
		return nil
	})
}

// listNetns returns the names of named namespaces that start with prefix.
func listNetns(prefix string) ([]string, error) {
	entries, err := os.ReadDir(netnsDir)
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

// deleteNetns deletes the named namespaces in one ip process. -force keeps
// going past a failure so one bad name does not leave the rest behind.
func deleteNetns(names []string) error {
	if len(names) == 0 {
		return nil
	}
	lines := make([]string, len(names))
	for i, n := range names {
		lines[i] = "netns del " + n
	}
	return run([]string{"ip", "-force", "-batch", "-"}, lines)
}
