package testutil

import (
	"os"
	"os/exec"
	"testing"
)

// kernelTools are the programs every kernel test runs: ip for namespaces,
// nft to load and read rulesets.
var kernelTools = []string{"ip", "nft"}

// NeedKernel is the one gate of every test that touches a kernel (creates
// a network namespace, programs nftables, sends packets). The rule:
//
//   - under -short it skips: `make unit` promises no root and no kernel,
//     also when it runs as root;
//   - when not root it skips: namespaces need CAP_SYS_ADMIN;
//   - as root without -short it fails if ip or nft is missing, because
//     there a skip would let `make test` pass without testing anything.
//
// Call it before anything that touches the kernel.
func NeedKernel(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("kernel test: skipped under -short, which never touches a kernel")
	}
	if os.Geteuid() != 0 {
		t.Skip("kernel test: needs root for network namespaces; run it as root (make test), or -short for the unit tests")
	}
	for _, tool := range kernelTools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("kernel test: needs %s (apt-get install iproute2 nftables): %v", tool, err)
		}
	}
}
