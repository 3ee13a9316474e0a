package lab_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nftpolicy/nftpolicy/internal/integration"
	"github.com/nftpolicy/nftpolicy/internal/lab"
	"github.com/nftpolicy/nftpolicy/internal/scenario"
	"github.com/nftpolicy/nftpolicy/internal/testutil"
)

// TestLabAPIServer runs scenario files in the lab's --apiserver mode: the
// scenario's objects go to a real kube-apiserver (with deploy/ applied)
// and the in-process agents watch it with the DaemonSet's credentials.
func TestLabAPIServer(t *testing.T) {
	testutil.NeedKernel(t)
	env, err := integration.NewLabEnv(context.Background(), os.Stderr, "../../deploy")
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	srv, err := lab.ServerFor(env)
	if err != nil {
		t.Fatal(err)
	}
	// The runs share the server: each must leave it as it found it. And it
	// can fail: a wrong expectation is a mismatch there too.
	runFiles(t, lab.Options{Server: srv},
		"../../test/scenarios/examples/01-deny-all-ingress.yaml",
		"../../test/scenarios/examples/04-admin-tiers.yaml",
		"../../test/scenarios/examples/05-label-changes.yaml",
		"testdata/wrong-expectation.yaml",
	)
}

// runFiles runs each scenario file in a subtest with opts: a file whose
// name says "wrong" must fail exactly one expectation, any other none.
func runFiles(t *testing.T, opts lab.Options, files ...string) {
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
			sc, err := scenario.Load(f)
			if err != nil {
				t.Fatal(err)
			}
			rep := lab.Run(context.Background(), sc, opts).Report
			s := rep.Summary()
			wrong := strings.Contains(f, "wrong")
			if s.OK() == wrong || (wrong && s.Failed != 1) || len(rep.Errors) > 0 {
				var b bytes.Buffer
				scenario.WriteText(&b, []scenario.Report{rep})
				t.Errorf("%s: %s (want %s)\n%s", f, s, map[bool]string{true: "exactly 1 failed", false: "no failure"}[wrong], b.String())
			}
		})
	}
}
