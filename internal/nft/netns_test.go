package nft

import (
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nftpolicy/nftpolicy/internal/netns"
	"github.com/nftpolicy/nftpolicy/internal/testutil"
)

// testNetns is a throwaway network namespace. Tests that touch a kernel run
// only inside one, never in the host's namespace.
type testNetns struct {
	name string
	file *os.File // kept open: the Kernel uses its descriptor on every call
}

// newNetns creates a namespace that is deleted when the test ends; it is
// gated by testutil.NeedKernel.
func newNetns(t *testing.T) *testNetns {
	t.Helper()
	name := testutil.NetNS(t)
	f, err := os.Open(netns.Path(name))
	if err != nil {
		t.Fatalf("open namespace: %v", err)
	}
	t.Cleanup(func() { f.Close() }) // runs before testutil's delete
	return &testNetns{name: name, file: f}
}

// routeToLoopback routes every destination to lo, so a test can send
// packets through the output hook without other devices.
func (ns *testNetns) routeToLoopback(t *testing.T) {
	t.Helper()
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"route", "add", "default", "dev", "lo"},
		{"-6", "route", "add", "default", "dev", "lo"},
	} {
		if out, err := exec.Command("ip", append([]string{"-n", ns.name}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
}

// sendUDP sends one datagram to dst from inside the namespace. A packet the
// output hook drops fails with EPERM.
func (ns *testNetns) sendUDP(t *testing.T, dst netip.Addr) error {
	return ns.sendUDPTo(t, netip.AddrPortFrom(dst, 9))
}

// sendUDPTo is sendUDP to a given port.
func (ns *testNetns) sendUDPTo(t *testing.T, dst netip.AddrPort) error {
	t.Helper()
	return netns.Do(int(ns.file.Fd()), func() error { return sendto(dst) })
}

func sendto(dst netip.AddrPort) error {
	var sa unix.Sockaddr
	family := unix.AF_INET
	if dst.Addr().Is4() {
		sa = &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}
	} else {
		sa, family = &unix.SockaddrInet6{Port: int(dst.Port()), Addr: dst.Addr().As16()}, unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Sendto(fd, []byte("probe"), 0, sa)
}

// kernel is a Netlink for the namespace.
func (ns *testNetns) kernel() *Netlink { return NewNetlink(int(ns.file.Fd())) }

// nft runs nft in the namespace and returns its output.
func (ns *testNetns) nft(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, err := ns.tryNft(stdin, args...)
	if err != nil {
		t.Fatalf("nft %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (ns *testNetns) tryNft(stdin string, args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.name, "nft"}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// listTable is `nft list table inet nftpolicy`, normalised: counters zeroed
// and whitespace collapsed, one statement per line.
func (ns *testNetns) listTable(t *testing.T) string {
	t.Helper()
	return normaliseNft(ns.nft(t, "", "list", "table", "inet", TableName))
}

var (
	counterRE = regexp.MustCompile(`counter packets \d+ bytes \d+`)
	spaceRE   = regexp.MustCompile(`\s+`)
)

func normaliseNft(s string) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		l = counterRE.ReplaceAllString(l, "counter")
		l = strings.TrimSpace(spaceRE.ReplaceAllString(l, " "))
		if l != "" {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

// chainRules extracts each chain's rule lines from normalised nft output.
func chainRules(listing string) map[string][]string {
	out := map[string][]string{}
	chain := ""
	for _, l := range strings.Split(listing, "\n") {
		switch {
		case strings.HasPrefix(l, "chain ") && strings.HasSuffix(l, "{"):
			chain = strings.TrimSuffix(strings.TrimPrefix(l, "chain "), " {")
			out[chain] = []string{}
		case l == "}":
			chain = ""
		case chain != "" && !strings.HasPrefix(l, "type filter hook"):
			out[chain] = append(out[chain], l)
		}
	}
	return out
}
