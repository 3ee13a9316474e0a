package lab

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nftpolicy/nftpolicy/internal/scenario"
)

func needRoot(t *testing.T) {
	if testing.Short() {
		t.Skip("lab tests program real kernels")
	}
	if os.Geteuid() != 0 {
		t.Skip("the lab needs root")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the lab needs %s", tool)
		}
	}
}

func runFile(t *testing.T, path string) scenario.Report {
	t.Helper()
	sc, err := scenario.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	res := Run(context.Background(), sc, Options{})
	return res.Report
}

func check(t *testing.T, rep scenario.Report) {
	t.Helper()
	if !rep.Summary().OK() {
		var b bytes.Buffer
		scenario.WriteText(&b, []scenario.Report{rep})
		t.Errorf("%s: %s\n%s", rep.File, rep.Summary(), b.String())
	}
}

// TestScenarios runs every scenario of the repository and the shared
// examples in the lab.
func TestScenarios(t *testing.T) {
	needRoot(t)
	var files []string
	for _, glob := range []string{"../../test/scenarios/*/*.yaml", "../../test/scenarios/*.yaml", "../../../shared/scenarios/examples/*.yaml"} {
		m, _ := filepath.Glob(glob)
		files = append(files, m...)
	}
	if len(files) < 40 {
		t.Fatalf("found %d scenario files, want at least 40", len(files))
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
			check(t, runFile(t, f))
		})
	}
}

// TestWrongExpectationFails proves the runner can fail: a file whose
// expectation is wrong must give a mismatch, shown in the matrix.
func TestWrongExpectationFails(t *testing.T) {
	needRoot(t)
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

// TestNoNamespacesLeft: after a run, none of its namespaces stays.
func TestNoNamespacesLeft(t *testing.T) {
	needRoot(t)
	sc, err := scenario.Load("testdata/wrong-expectation.yaml")
	if err != nil {
		t.Fatal(err)
	}
	res := Run(context.Background(), sc, Options{})
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
