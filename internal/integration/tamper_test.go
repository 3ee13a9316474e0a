package integration

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nftpolicy/nftpolicy/internal/diff"
	"github.com/nftpolicy/nftpolicy/internal/lab/netlab"
	"github.com/nftpolicy/nftpolicy/internal/nft"
)

// startAgentWith is startAgent with extra flags.
func (w *world) startAgentWith(node string, extra ...string) *AgentProcess {
	w.t.Helper()
	a, err := StartAgent(AgentSpec{Binary: shared.env.AgentBinary, Kubeconfig: w.kubeconfig, Node: node, NetNS: w.lab.NodeNetNSPath(node),
		ResyncPeriod: w.resync, MinSyncPeriod: time.Second, LogDir: shared.env.Dir, Extra: extra})
	if err != nil {
		w.t.Fatal(err)
	}
	w.agents[node] = a
	if err := a.WaitReady(context.Background(), time.Minute); err != nil {
		w.t.Fatal(err)
	}
	return a
}

// tamperWorld is one node with a server only the client may reach, its
// agent started with extra flags and a 1 h resync, and a reader of the
// node's table.
func tamperWorld(t *testing.T, extra ...string) (*world, string, *nft.Netlink) {
	w := newWorld(t, 1, time.Hour)
	n := w.nodes[0]
	w.rolePods(n, "server", "client", "other")
	w.startAgentWith(n, extra...)
	w.enforce(tamperWant)
	f, err := os.Open(w.lab.NodeNetNSPath(n))
	if err != nil {
		t.Fatal(err)
	}
	k := nft.NewNetlink(int(f.Fd()))
	t.Cleanup(func() { k.Close(); f.Close() })
	return w, n, k
}

var tamperWant = map[flow]netlab.Verdict{{"client", "server"}: allowed, {"other", "server"}: denied}

// restoredWithin polls the node's table until it equals want again.
func restoredWithin(t *testing.T, k *nft.Netlink, want *nft.Ruleset, limit time.Duration) (time.Duration, bool) {
	t.Helper()
	start := time.Now()
	for time.Since(start) < limit {
		got, err := k.Dump(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if got != nil && diff.Diff(got, want).Empty() {
			return time.Since(start), true
		}
		time.Sleep(2 * time.Millisecond)
	}
	return limit, false
}

// TestTamperingRepairedAtOnce: with a 1 h resync and a 1 s coalescing
// period, deleting the table, a base chain or the server's dispatch
// element with nft in the node's namespace is undone well under a second
// after nft returns, by the agent binary watching nftables events.
func TestTamperingRepairedAtOnce(t *testing.T) {
	w, n, k := tamperWorld(t)
	want, err := k.Dump(context.Background())
	if err != nil || want == nil {
		t.Fatalf("reading the table: %v (table %v)", err, want != nil)
	}
	server := w.lab.Addrs(w.ns + "/server")[0]
	for _, args := range [][]string{
		{"delete", "table", "inet", nft.TableName},
		{"delete", "chain", "inet", nft.TableName, "forward-ingress"},
		{"delete", "element", "inet", nft.TableName, "ingress-pods-v4", "{", server.String(), "}"},
	} {
		if out, err := w.nft(n, args...); err != nil {
			t.Fatalf("nft %s: %v: %s", strings.Join(args, " "), err, out)
		}
		took, ok := restoredWithin(t, k, want, 2*time.Second)
		if !ok {
			t.Fatalf("nft %s: not repaired within 2 s%s", strings.Join(args, " "), w.agentLogs())
		}
		t.Logf("nft %s: repaired %v after nft returned", strings.Join(args, " "), took)
		if took > 100*time.Millisecond {
			t.Errorf("nft %s: repaired after %v, want within 100 ms", strings.Join(args, " "), took)
		}
		w.expect(2*time.Second, tamperWant)
	}
	if got := scrape(t, w.agents[n])["nftpolicy_drift_repairs_total"]; got != 3 {
		t.Errorf("nftpolicy_drift_repairs_total = %v, want 3", got)
	}
}

// TestTamperingWaitsWithoutRepair: with --repair-tampering=false the same
// deletion leaves the server open until the resync, so the test above
// fails without the watch.
func TestTamperingWaitsWithoutRepair(t *testing.T) {
	w, n, k := tamperWorld(t, "--repair-tampering=false")
	want, err := k.Dump(context.Background())
	if err != nil || want == nil {
		t.Fatalf("reading the table: %v (table %v)", err, want != nil)
	}
	if out, err := w.nft(n, "delete", "table", "inet", nft.TableName); err != nil {
		t.Fatalf("nft delete table: %v: %s", err, out)
	}
	if took, ok := restoredWithin(t, k, want, time.Second); ok {
		t.Errorf("repaired after %v with --repair-tampering=false, want it left until the resync", took)
	}
	if got := w.probe(context.Background(), flow{"other", "server"}); got != allowed {
		t.Errorf("other -> server with the table deleted: %s, want allowed (the window the watch closes)", got)
	}
}
