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
	for _, f := range []string{
		"../../test/scenarios/examples/01-deny-all-ingress.yaml",
		"../../test/scenarios/examples/04-admin-tiers.yaml",
		"../../test/scenarios/examples/05-label-changes.yaml",
	} {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
			sc, err := scenario.Load(f)
			if err != nil {
				t.Fatal(err)
			}
			// The runs share the server: each must leave it as it found it.
			rep := lab.Run(context.Background(), sc, lab.Options{Server: srv}).Report
			if !rep.Summary().OK() {
				var b bytes.Buffer
				scenario.WriteText(&b, []scenario.Report{rep})
				t.Errorf("%s: %s\n%s", f, rep.Summary(), b.String())
			}
		})
	}
	// And it can fail: a wrong expectation is a mismatch there too.
	t.Run("wrong-expectation", func(t *testing.T) {
		sc, err := scenario.Load("testdata/wrong-expectation.yaml")
		if err != nil {
			t.Fatal(err)
		}
		rep := lab.Run(context.Background(), sc, lab.Options{Server: srv}).Report
		if s := rep.Summary(); s.OK() || s.Failed != 1 {
			t.Errorf("summary %s, want exactly one failure", s)
		}
	})
}
