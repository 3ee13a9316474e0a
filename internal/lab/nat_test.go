package lab

import (
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nftpolicy/nftpolicy/internal/lab/netlab"
	"github.com/nftpolicy/nftpolicy/internal/scenario"
	"github.com/nftpolicy/nftpolicy/internal/testutil"
)

// kubeProxyNAT is what kube-proxy in nftables (or iptables) mode does for a
// Service: DNAT to the endpoint in prerouting, and masquerading of hairpin
// and node-bound traffic in postrouting. The policy must see the endpoint's
// address and the client's own.
const kubeProxyNAT = `table ip kube-proxy-test {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr 10.96.0.10 tcp dport 80 dnat to 10.244.1.20:80
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip daddr 10.244.1.20 masquerade
	}
}
`

// TestServiceNAT: with kube-proxy style DNAT and SNAT in every node, the
// client reaches the server through the Service address (its egress and the
// server's ingress both judge the endpoint and the client, not the Service
// address or the masqueraded one), and the pod the server does not accept
// is still refused through the Service address.
func TestServiceNAT(t *testing.T) {
	testutil.NeedKernel(t)
	r, ctx, agents := testRun(t, "testdata/service-nat.yaml", Options{})
	if err := r.setup(ctx, agents); err != nil {
		t.Fatal(err)
	}
	if err := r.barrier(ctx); err != nil {
		t.Fatal(err)
	}
	for _, n := range r.sc.Nodes {
		cmd := exec.Command("ip", "netns", "exec", filepath.Base(r.net.NodeNetNSPath(n)), "nft", "-f", "-")
		cmd.Stdin = strings.NewReader(kubeProxyNAT)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", n, err, out)
		}
	}
	vip := netip.MustParseAddr("10.96.0.10")
	probe := func(from string) netlab.Outcome {
		var o netlab.Outcome
		for try := 0; try < probeTries; try++ {
			if o = r.net.ProbeAddr(ctx, from, vip, "TCP", 80, time.Second); o.Verdict != netlab.Denied {
				break
			}
		}
		return o
	}
	if o := probe("x/client"); o.Verdict != netlab.Allowed {
		t.Errorf("x/client -> Service -> x/server: %v, want allowed", o)
	}
	if o := probe("x/other"); o.Verdict != netlab.Denied {
		t.Errorf("x/other -> Service -> x/server: %v, want denied", o)
	}
	// Without the server's policy the same path is open: the denial above
	// was the policy's, not a broken Service path.
	if err := r.delete(ctx, scenario.ObjectRef{Kind: "NetworkPolicy", Namespace: "x", Name: "server-from-client"}); err != nil {
		t.Fatal(err)
	}
	if err := r.barrier(ctx); err != nil {
		t.Fatal(err)
	}
	if o := probe("x/other"); o.Verdict != netlab.Allowed {
		t.Errorf("x/other -> Service -> x/server without its policy: %v, want allowed", o)
	}
}
