package netlab

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/nftpolicy/nftpolicy/internal/testutil"
)

// TestMain checks that a whole test run leaves the host's own network
// namespace exactly as it found it.
func TestMain(m *testing.M) {
	flag.Parse() // for testing.Short: -short reads no host state either
	if os.Geteuid() != 0 || testing.Short() || os.Getenv(helperEnv) != "" {
		os.Exit(m.Run())
	}
	before := hostState()
	code := m.Run()
	if after := hostState(); after != before {
		fmt.Fprintf(os.Stderr, "host network state changed by the tests:\n--- before\n%s\n--- after\n%s\n", before, after)
		code = 1
	}
	os.Exit(code)
}

// expiresRE strips route lifetimes, which tick on their own.
var expiresRE = regexp.MustCompile(`expires \d+sec`)

func hostState() string {
	var b strings.Builder
	for _, args := range [][]string{
		{"ip", "link"}, {"ip", "route"}, {"ip", "-6", "route"}, {"ip", "rule"}, {"nft", "list", "ruleset"},
	} {
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		fmt.Fprintf(&b, "$ %s (%v)\n%s", strings.Join(args, " "), err, expiresRE.ReplaceAll(out, nil))
	}
	for _, p := range []string{
		"ipv4/ip_forward", "ipv6/conf/all/forwarding", "ipv4/icmp_ratemask", "ipv6/icmp/ratemask",
		"ipv4/conf/all/rp_filter", "ipv4/conf/default/rp_filter", "ipv6/conf/default/accept_dad",
	} {
		v, err := os.ReadFile("/proc/sys/net/" + p)
		fmt.Fprintf(&b, "%s = %q (%v)\n", p, v, err)
	}
	return b.String()
}

// newLab returns an empty lab that is closed, and checked to have left
// nothing behind, when the test ends.
func newLab(t *testing.T) *Lab {
	t.Helper()
	testutil.NeedKernel(t)
	l := New("")
	t.Cleanup(CleanupOnSignal(l)) // Ctrl-C during a test cleans up too
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if left := netnsWithPrefix(t, l.Prefix()); len(left) > 0 {
			t.Errorf("after Close, namespaces left: %v", left)
		}
	})
	return l
}

// netnsWithPrefix asks iproute2, not our own listing code.
func netnsWithPrefix(t *testing.T, prefix string) []string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], prefix) {
			names = append(names, f[0])
		}
	}
	return names
}

// inNS runs a command inside one of the lab's namespaces.
func inNS(t *testing.T, l *Lab, endpoint, stdin string, args ...string) string {
	t.Helper()
	path := l.NetNSPath(endpoint)
	if path == "" {
		t.Fatalf("no endpoint %s", endpoint)
	}
	name := path[strings.LastIndex(path, "/")+1:]
	cmd := exec.Command("ip", append([]string{"netns", "exec", name}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("in %s: %v: %v: %s", endpoint, args, err, out)
	}
	return string(out)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
