package main

import (
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// harness matches the packages that run scenarios and labs: cmd/nftlab's,
// not the agent's.
var harness = regexp.MustCompile(`/internal/(lab|scenario|integration)(/|$)`)

// TestNoHarnessInTheAgent: the binary the DaemonSet runs on every node
// links none of the test harness.
func TestNoHarnessInTheAgent(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command to list the binary's packages with")
	}
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, "github.com/nftpolicy/nftpolicy/internal/manifest") {
		t.Fatalf("go list -deps does not list internal/manifest, which compile uses: the check proves nothing\n%s", out)
	}
	for _, d := range deps {
		if harness.MatchString(d) {
			t.Errorf("cmd/nftpolicy links %s", d)
		}
	}
}
