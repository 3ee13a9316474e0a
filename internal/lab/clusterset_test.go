package lab

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/nftpolicy/nftpolicy/internal/scenario"
	"github.com/nftpolicy/nftpolicy/internal/testutil"
)

// TestClusterSetWrongExpectationFails: a file with clusters whose
// expectation is wrong gives exactly its one mismatch, named with its
// cluster.
func TestClusterSetWrongExpectationFails(t *testing.T) {
	testutil.NeedKernel(t)
	rep := runFile(t, "testdata/multicluster-wrong-expectation.yaml")
	if s := rep.Summary(); s.OK() || s.Failed != 1 || s.Passed != 1 {
		t.Fatalf("summary %s, want 1 passed and 1 failed (cluster-two's gamma)", s)
	}
	var b bytes.Buffer
	scenario.WriteText(&b, []scenario.Report{rep})
	if !strings.Contains(b.String(), "cluster-two:gamma/client -> cluster-one:alpha/server: want allowed") {
		t.Errorf("the mismatch is not listed:\n%s", b.String())
	}
}

// TestClusterSetSamenessBreaksTheDefault: all-namespaces-not-remote.yaml
// run with namespace sameness on (what a wrong default would do) fails on
// exactly cluster-two's pairs of its two probes that expect a denial.
func TestClusterSetSamenessBreaksTheDefault(t *testing.T) {
	testutil.NeedKernel(t)
	sc, err := scenario.Load("../../test/scenarios/multicluster/all-namespaces-not-remote.yaml")
	if err != nil {
		t.Fatal(err)
	}
	sc.NamespaceSameness = true
	rep := Run(context.Background(), sc, Options{}).Report
	if s := rep.Summary(); s.Failed != 2 {
		var b bytes.Buffer
		scenario.WriteText(&b, []scenario.Report{rep})
		t.Fatalf("summary %s, want 2 failed (cluster-two:app/client on ports 80 and 81)\n%s", s, b.String())
	}
}
