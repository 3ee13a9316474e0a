package lab

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nftpolicy/nftpolicy/internal/scenario"
	"github.com/nftpolicy/nftpolicy/internal/testutil"
)

// TestServiceScenarios runs test/scenarios/services: each scenario with
// its own kube-apiserver and etcd in the lab and the real kube-proxy in
// nftables mode in every node. It runs beside TestScenarios (its own
// control planes make it the slower of the two).
func TestServiceScenarios(t *testing.T) {
	testutil.NeedKernel(t)
	t.Parallel()
	files, err := filepath.Glob("../../test/scenarios/services/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 15 {
		t.Fatalf("%d Service scenarios, want at least 15", len(files))
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
			sc, err := scenario.Load(f)
			if err != nil {
				t.Fatal(err)
			}
			if !HasServices(sc) {
				t.Fatalf("%s has no Service", f)
			}
			start := time.Now()
			check(t, Run(context.Background(), sc, Options{DeployDir: "../../deploy"}).Report)
			t.Logf("%s in %v", f, time.Since(start).Round(time.Millisecond))
		})
	}
}

// TestServiceMismatches proves a Service probe can fail both ways: a mix
// of connected and refused attempts is reported as mixed and counts as a
// mismatch, and a wrong expectation fails.
func TestServiceMismatches(t *testing.T) {
	testutil.NeedKernel(t)
	t.Parallel()
	sc, err := scenario.Load("testdata/service-mismatch.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rep := Run(context.Background(), sc, Options{DeployDir: "../../deploy"}).Report
	var b bytes.Buffer
	scenario.WriteText(&b, []scenario.Report{rep})
	if len(rep.Errors) > 0 || len(rep.Probes) != 2 {
		t.Fatalf("errors %v, %d probes, want none and 2:\n%s", rep.Errors, len(rep.Probes), b.String())
	}
	mixed := rep.Probes[0].Results[0]
	if mixed.Got.Verdict != scenario.Mixed || mixed.Status() != scenario.Fail {
		t.Errorf("x/client -> svc/x/web through a locked and an open endpoint: got %s (%s), want mixed, failed", mixed.Got, mixed.Status())
	}
	wrong := rep.Probes[1].Results[0]
	if wrong.Got.Verdict != scenario.Allowed || wrong.Status() != scenario.Fail {
		t.Errorf("x/client -> svc/x/open expected denied: got %s (%s), want allowed, failed", wrong.Got, wrong.Status())
	}
	if s := rep.Summary(); s.Failed != 2 || s.Passed != 0 {
		t.Errorf("summary %s, want 2 failed", s)
	}
	if !strings.Contains(b.String(), "M!") || !strings.Contains(b.String(), "M mixed") {
		t.Errorf("the matrix does not show the mix:\n%s", b.String())
	}
}

// nftPriorities maps nft's symbolic priorities to numbers (nft(8),
// "PRIORITY").
var nftPriorities = map[string]int{"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50, "srcnat": 100}

var baseChainRE = regexp.MustCompile(`(?m)^table (\S+) (\S+) \{|^\s*chain (\S+) \{\s*\n\s*type (\w+) hook (\w+) (?:device \S+ )?priority ([^;]+);`)

// baseChain is one base chain of `nft list ruleset`.
type baseChain struct {
	table, chain, typ, hook string
	priority                int
}

func parseBaseChains(t *testing.T, ruleset string) []baseChain {
	t.Helper()
	var out []baseChain
	table := ""
	for _, m := range baseChainRE.FindAllStringSubmatch(ruleset, -1) {
		if m[1] != "" {
			table = m[1] + " " + m[2]
			continue
		}
		fields := strings.Fields(m[6])
		prio, ok := nftPriorities[fields[0]]
		if !ok {
			n, err := strconv.Atoi(fields[0])
			if err != nil {
				t.Fatalf("priority %q", m[6])
			}
			prio = n
		}
		if len(fields) == 3 {
			n, err := strconv.Atoi(fields[2])
			if err != nil {
				t.Fatalf("priority %q", m[6])
			}
			if fields[1] == "-" {
				n = -n
			}
			prio += n
		}
		out = append(out, baseChain{table, m[3], m[4], m[5], prio})
	}
	return out
}

// TestKubeProxyOrdering reads the real kube-proxy's ruleset in a lab node
// beside the agent's, and checks the ordering contract of docs/ruleset.md:
// kube-proxy's DNAT (prerouting and output) runs before every chain of
// ours on those paths, and its masquerade (postrouting) after all of them.
func TestKubeProxyOrdering(t *testing.T) {
	testutil.NeedKernel(t)
	t.Parallel()
	r, ctx, agents := testRun(t, "../../test/scenarios/services/05-nodeport-cluster.yaml", Options{DeployDir: "../../deploy"})
	if err := r.start(ctx, agents); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ip", "netns", "exec", filepath.Base(r.net.NodeNetNSPath("node-1")), "nft", "list", "ruleset").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list ruleset: %v\n%s", err, out)
	}
	chains := parseBaseChains(t, string(out))
	find := func(table, chain string) baseChain {
		for _, c := range chains {
			if c.table == table && c.chain == chain {
				return c
			}
		}
		t.Fatalf("no base chain %s %s in:\n%s", table, chain, out)
		return baseChain{}
	}
	for _, fam := range []string{"ip", "ip6"} {
		kp := "kube-proxy"
		dnat := find(fam+" "+kp, "nat-prerouting")
		outDNAT := find(fam+" "+kp, "nat-output")
		snat := find(fam+" "+kp, "nat-postrouting")
		if dnat.typ != "nat" || dnat.hook != "prerouting" || outDNAT.hook != "output" || snat.hook != "postrouting" {
			t.Errorf("%s kube-proxy's nat chains: %+v %+v %+v", fam, dnat, outDNAT, snat)
		}
		var ours int
		for _, c := range chains {
			if c.table != "inet nftpolicy" {
				continue
			}
			ours++
			switch c.hook {
			case "forward", "input":
				// After prerouting, whatever the priority: DNAT is done.
			case "output":
				if c.priority <= outDNAT.priority {
					t.Errorf("our %s (output, %d) runs before kube-proxy's output DNAT (%d)", c.chain, c.priority, outDNAT.priority)
				}
			case "prerouting":
				if c.priority <= dnat.priority {
					t.Errorf("our %s (prerouting, %d) runs before kube-proxy's DNAT (%d)", c.chain, c.priority, dnat.priority)
				}
			case "postrouting":
				if c.priority >= snat.priority {
					t.Errorf("our %s (postrouting, %d) runs after kube-proxy's masquerade (%d)", c.chain, c.priority, snat.priority)
				}
			default:
				t.Errorf("our %s hooks %s, which the contract does not cover", c.chain, c.hook)
			}
		}
		if ours == 0 {
			t.Fatalf("no base chain of ours in:\n%s", out)
		}
		if dnat.priority != -100 || outDNAT.priority != -100 || snat.priority != 100 {
			t.Errorf("%s kube-proxy's NAT priorities %d/%d/%d, docs/ruleset.md says dstnat (-100) and srcnat (100)", fam, dnat.priority, outDNAT.priority, snat.priority)
		}
		// kube-proxy's filter-forward (reject for Services without
		// endpoints, invalid conntrack drop) runs before our forward
		// chains: docs/ruleset.md says so.
		if fwd := find(fam+" "+kp, "filter-forward"); fwd.priority >= find("inet nftpolicy", "forward-egress").priority {
			t.Errorf("kube-proxy's filter-forward (%d) no longer runs before our forward-egress", fwd.priority)
		}
	}
}
