package agent

import (
	"os"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nftpolicy/nftpolicy/internal/diff"
	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/netns"
	tu "github.com/nftpolicy/nftpolicy/internal/testutil"
)

// TestIPVSFoundAtStart: detection that finds IPVS before the first sync
// gives the first table its output chains, in that one transaction.
func TestIPVSFoundAtStart(t *testing.T) {
	h := start(t, func(cfg *Config) { cfg.IPVSDetect = func() bool { return true } }, basic()...)
	h.wait()
	h.holds(model.Options{IPVS: true})
	if got := h.kernel.Transactions; got != 1 {
		t.Errorf("kernel transactions = %d, want 1", got)
	}
}

// TestIPVSFoundLater: without IPVS the table has no output chains; when
// detection finds it later, one transaction adds them (two chains and
// their 16 rules), and detection stops asking.
func TestIPVSFoundLater(t *testing.T) {
	var ipvs atomic.Bool
	var asked atomic.Int32
	h := start(t, func(cfg *Config) {
		cfg.IPVSCheckInterval = 5 * time.Millisecond
		cfg.IPVSDetect = func() bool { asked.Add(1); return ipvs.Load() }
	}, basic()...)
	h.wait()
	h.holds(model.Options{})
	before, syncs := h.kernel.Transactions, h.agent.Stats().Transactions
	ipvs.Store(true)
	deadline := time.Now().Add(10 * time.Second)
	for h.agent.Stats().Transactions == syncs {
		if time.Now().After(deadline) {
			t.Fatal("no transaction after IPVS appeared")
		}
		time.Sleep(5 * time.Millisecond)
	}
	h.holds(model.Options{IPVS: true})
	if got := h.kernel.Transactions - before; got != 1 {
		t.Errorf("%d transactions after IPVS appeared, want 1", got)
	}
	if got := h.agent.Stats().LastOps; got != (diff.Counts{Ops: 2 + 2*8}) {
		t.Errorf("the transaction counted %+v, want 18 operations", got)
	}
	n := asked.Load()
	time.Sleep(50 * time.Millisecond)
	if asked.Load() != n {
		t.Error("detection still asks after finding IPVS")
	}
}

// TestDetectIPVS looks into a namespace of its own: nothing of IPVS there
// (this kernel has no ip_vs module; where it has, the test says so and
// ends), then an interface named kube-ipvs0 (kube-proxy makes a dummy
// one; a veth here, as this kernel has no dummy module).
func TestDetectIPVS(t *testing.T) {
	ns := tu.NetNS(t)
	f, err := os.Open(netns.Path(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := os.Stat("/proc/net/ip_vs"); err == nil {
		t.Skip("the ip_vs module is loaded: every namespace has IPVS")
	}
	if DetectIPVS(int(f.Fd())) {
		t.Fatal("IPVS found in a new namespace")
	}
	if out, err := exec.Command("ip", "-n", ns, "link", "add", "kube-ipvs0", "type", "veth", "peer", "name", "ipvs-peer").CombinedOutput(); err != nil {
		t.Fatalf("ip link add: %v: %s", err, out)
	}
	if !DetectIPVS(int(f.Fd())) {
		t.Fatal("kube-ipvs0 not found")
	}
}
