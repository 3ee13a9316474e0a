package lab

import (
	"bytes"
	"context"
	"io/fs"
	"maps"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/nftpolicy/nftpolicy/internal/scenario"
	"github.com/nftpolicy/nftpolicy/internal/testutil"
)

// testRun loads a scenario file into a run whose lab is torn down when the
// test ends; its agents run under ctx and join agents.
func testRun(t *testing.T, path string, opts Options) (*run, context.Context, *sync.WaitGroup) {
	t.Helper()
	sc, err := scenario.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	r := newRun(sc, opts)
	ctx, cancel := context.WithCancel(context.Background())
	agents := &sync.WaitGroup{}
	t.Cleanup(func() {
		cancel()
		agents.Wait()
		if err := r.net.Close(); err != nil {
			t.Error(err)
		}
	})
	return r, ctx, agents
}

func runFile(t *testing.T, path string) scenario.Report {
	t.Helper()
	return runResult(t, path).Report
}

// runResult runs a scenario file with the default options.
func runResult(t *testing.T, path string) Result {
	t.Helper()
	sc, err := scenario.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return Run(context.Background(), sc, Options{})
}

func check(t *testing.T, rep scenario.Report) {
	t.Helper()
	if !rep.Summary().OK() {
		var b bytes.Buffer
		scenario.WriteText(&b, []scenario.Report{rep})
		t.Errorf("%s: %s\n%s", rep.File, rep.Summary(), b.String())
	}
}

// TestScenarios runs every scenario of the repository in the lab but the
// Service scenarios (TestServiceScenarios runs those, in parallel). Nothing
// may be skipped: the lab runs as root, and SCTP, which this kernel has no
// sockets for, goes over raw sockets (netlab's sctp.go).
func TestScenarios(t *testing.T) {
	testutil.NeedKernel(t)
	t.Parallel()
	files := scenarioFiles(t, "../../test/scenarios")
	var reports []scenario.Report
	for _, f := range files {
		if filepath.Base(filepath.Dir(f)) == "services" {
			continue
		}
		name, _ := filepath.Rel("../../test/scenarios", f)
		t.Run(strings.TrimSuffix(name, ".yaml"), func(t *testing.T) {
			rep := runFile(t, f)
			check(t, rep)
			if s := rep.Summary(); s.Skipped > 0 {
				t.Errorf("%s: %s: no pair may be skipped", rep.File, s)
			}
			reports = append(reports, rep)
		})
	}
	t.Logf("%d scenarios: %s", len(reports), scenario.Summarize(reports...))
}

// scenarioFiles lists the *.yaml files under root at any depth, and fails
// unless each of the repository's scenario directories holds some: a moved
// directory must not silently leave its scenarios unrun.
func scenarioFiles(t *testing.T, root string) []string {
	t.Helper()
	var files []string
	perDir := map[string]int{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) != ".yaml" {
			return err
		}
		files = append(files, path)
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		perDir[rel]++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{".", "examples", "netpol", "anp", "cnp", "services", "fqdn", "multinetwork", "multicluster"} {
		if perDir[dir] == 0 {
			t.Errorf("no scenario files in %s", filepath.Join(root, dir))
		}
	}
	return files
}

// TestWrongExpectationFails proves the runner can fail: a file whose
// expectation is wrong must give a mismatch, shown in the matrix.
func TestWrongExpectationFails(t *testing.T) {
	testutil.NeedKernel(t)
	rep := runFile(t, "testdata/wrong-expectation.yaml")
	s := rep.Summary()
	if s.OK() || s.Failed != 1 {
		t.Fatalf("summary %s, want exactly one failure (x/b -> x/a)", s)
	}
	var b bytes.Buffer
	scenario.WriteText(&b, []scenario.Report{rep})
	if !strings.Contains(b.String(), "x/b -> x/a: want allowed") {
		t.Errorf("the mismatch is not listed:\n%s", b.String())
	}
}

// TestScenarioAgentsCutDeniedFlows: the lab's agents run with the
// conntrack cut on, as the agent does by default. Without it the entry the
// first probe left would outlive the Deny, and a later probe that happened
// to draw the same source port would pass (an earlier CI failure).
func TestScenarioAgentsCutDeniedFlows(t *testing.T) {
	testutil.NeedKernel(t)
	res := runResult(t, "testdata/cut-denied-udp.yaml")
	check(t, res.Report)
	if want := map[string]int{"n1": 0, "n2": 1}; !maps.Equal(res.FlowsCut, want) {
		t.Errorf("entries cut per node: %v, want %v (n2: the UDP flow x/c -> x/s)", res.FlowsCut, want)
	}
}

// TestNoNamespacesLeft: after a run, none of its namespaces stays.
func TestNoNamespacesLeft(t *testing.T) {
	testutil.NeedKernel(t)
	res := runResult(t, "testdata/wrong-expectation.yaml")
	if res.Prefix == "" {
		t.Fatal("no prefix reported")
	}
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), res.Prefix) {
		t.Errorf("namespaces of run %s left behind:\n%s", res.Prefix, out)
	}
}

// testFixture is a fixture for one test: gated by NeedKernel, closed when
// the test ends, with a must that fails the test on an error.
func testFixture(t *testing.T) (*Fixture, func(error)) {
	t.Helper()
	testutil.NeedKernel(t)
	f := NewFixture()
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Error(err)
		}
	})
	return f, func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestDomainNamesNeedLearning: the fqdn scenarios pass because the agents
// learn the answers the kernel copies them, not by accident: with learning
// off, every connection a learned name allows is denied.
func TestDomainNamesNeedLearning(t *testing.T) {
	testutil.NeedKernel(t)
	t.Parallel()
	sc, err := scenario.Load("../../test/scenarios/fqdn/01-exact-name.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rep := Run(context.Background(), sc, Options{NoDNSLearning: true}).Report
	s := rep.Summary()
	var b bytes.Buffer
	scenario.WriteText(&b, []scenario.Report{rep})
	if s.Failed != 1 || !strings.Contains(b.String(), "web/client -> dns/www.example.com: want allowed") {
		t.Fatalf("summary %s, want exactly the learned name failing:\n%s", s, b.String())
	}
}

// TestWrongExpectationFailsOnANetwork: the same on a secondary network,
// where the denial comes from the network's own table judging bridged
// traffic.
func TestWrongExpectationFailsOnANetwork(t *testing.T) {
	testutil.NeedKernel(t)
	rep := runFile(t, "testdata/wrong-expectation-multinetwork.yaml")
	s := rep.Summary()
	if s.OK() || s.Failed != 1 || s.Passed != 1 {
		t.Fatalf("summary %s, want one pass (x/a -> x/b) and one failure (x/b -> x/a)", s)
	}
	var b bytes.Buffer
	scenario.WriteText(&b, []scenario.Report{rep})
	if !strings.Contains(b.String(), "x/b@vlan10 -> x/a@vlan10: want allowed") {
		t.Errorf("the mismatch is not listed:\n%s", b.String())
	}
}
