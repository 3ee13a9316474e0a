package main

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nftpolicy/nftpolicy/internal/testutil"
)

// TestMain lets the test binary stand in for nftlab itself: with
// NFTLAB_RUN_MAIN set it runs main on its arguments, so tests can run
// (and kill) the real command.
func TestMain(m *testing.M) {
	if os.Getenv("NFTLAB_RUN_MAIN") != "" {
		os.Exit(run(os.Args[1:]))
	}
	os.Exit(m.Run())
}

func nftlab(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "NFTLAB_RUN_MAIN=1")
	return cmd
}

var labNS = regexp.MustCompile(`nplab-[0-9a-f]+-`)

// TestKilledLabRunThenDown: `nftlab run` killed with SIGKILL cleans
// nothing up itself; `nftlab down` must then remove all it left.
func TestKilledLabRunThenDown(t *testing.T) {
	testutil.NeedKernel(t)
	cmd := nftlab("run", "../../test/scenarios/netpol")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The run names its prefix on stderr; other tests' labs may be up at
	// the same time, so the listing alone cannot tell which one is ours.
	prefix := ""
	lines := bufio.NewScanner(stderr)
	for prefix == "" && lines.Scan() {
		prefix = labNS.FindString(lines.Text())
	}
	go io.Copy(io.Discard, stderr)
	// Let it get going (agents, pods) before the kill.
	for deadline := time.Now().Add(30 * time.Second); prefix != "" && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if strings.Count(netnsList(t), prefix) >= 4 {
			break
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	if prefix == "" {
		t.Fatal("the lab run named no namespace prefix: the test proves nothing")
	}
	if !strings.Contains(netnsList(t), prefix) {
		t.Fatal("the killed run left nothing to clean: the test proves nothing")
	}
	if out, err := nftlab("down").CombinedOutput(); err != nil {
		t.Fatalf("lab down: %v\n%s", err, out)
	}
	if list := netnsList(t); strings.Contains(list, prefix) {
		t.Errorf("lab down left namespaces of %s:\n%s", prefix, list)
	}
}

func netnsList(t *testing.T) string {
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// TestLabRunJSON: --output json gives the report as data and nothing else
// on stdout, the summary line on stderr, and a mismatch exits 1.
func TestLabRunJSON(t *testing.T) {
	testutil.NeedKernel(t)
	cmd := nftlab("run", "--output", "json", "../../internal/lab/testdata/wrong-expectation.yaml")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if code := exitCode(err); code != 1 {
		t.Fatalf("exit %d, want 1 for a mismatch\n%s", code, out)
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if last := lines[len(lines)-1]; last != "1 passed, 1 failed, 0 skipped" {
		t.Errorf("last line of stderr %q, want the summary", last)
	}
	var reports []struct {
		Scenario string `json:"scenario"`
		Probes   []struct {
			Results []struct {
				From   string `json:"from"`
				To     string `json:"to"`
				Status string `json:"status"`
			} `json:"results"`
		} `json:"probes"`
	}
	if err := json.Unmarshal(out, &reports); err != nil {
		t.Fatalf("stdout is not one JSON document: %v\n%s", err, out)
	}
	if len(reports) != 1 || reports[0].Scenario != "wrong-expectation" || len(reports[0].Probes) != 1 {
		t.Fatalf("unexpected report: %+v", reports)
	}
	failed := 0
	for _, r := range reports[0].Probes[0].Results {
		if r.Status == "fail" {
			failed++
			if r.From != "x/b" || r.To != "x/a" {
				t.Errorf("failed pair %s -> %s, want x/b -> x/a", r.From, r.To)
			}
		}
	}
	if failed != 1 {
		t.Errorf("%d failed results, want 1", failed)
	}
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}
