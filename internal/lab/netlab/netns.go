package netlab

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nftpolicy/nftpolicy/internal/netns"
)

// socketIn creates a non-blocking socket in the namespace at path; the
// socket keeps that namespace for life.
func socketIn(path string, domain, typ, proto int) (int, error) {
	fd := -1
	err := netns.DoPath(path, func() error {
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
	return netns.DoPath(path, func() error {
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
