package testutil

import (
	"crypto/rand"
	"encoding/hex"
	"os/exec"
	"strings"
	"testing"
)

// NetNS creates a throwaway network namespace for a test and deletes it when
// the test ends, pass or fail. It is gated by NeedKernel. Everything a test
// does to the kernel happens in there, never in the host's namespace.
func NetNS(t testing.TB) string {
	t.Helper()
	NeedKernel(t)
	b := make([]byte, 4)
	rand.Read(b)
	name := "npt-" + hex.EncodeToString(b)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	return name
}

// NftIn runs nft with args inside the namespace, stdin as its input.
func NftIn(t testing.TB, netns, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", netns, "nft"}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}
