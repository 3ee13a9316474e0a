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

// TestClusterSetAPIServers runs files with clusters against one real
// kube-apiserver (and etcd) per cluster, with deploy/ applied in each: the
// agents watch their own cluster with the DaemonSet's account and the
// other cluster with deploy/30-clusterset-reader.yaml's, and a disconnect
// cuts that reader's connections to the real server.
func TestClusterSetAPIServers(t *testing.T) {
	testutil.NeedKernel(t)
	servers := map[string]*lab.Server{}
	for _, name := range []string{"cluster-one", "cluster-two"} {
		env, err := integration.NewLabEnv(context.Background(), os.Stderr, "../../deploy")
		if err != nil {
			t.Fatal(err)
		}
		defer env.Close()
		if servers[name], err = lab.ServerFor(env); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{
		"../../test/scenarios/multicluster/allow-remote-namespace.yaml",
		"../../test/scenarios/multicluster/remote-cluster-back.yaml",
		"testdata/multicluster-wrong-expectation.yaml",
	} {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
			sc, err := scenario.Load(f)
			if err != nil {
				t.Fatal(err)
			}
			rep := lab.Run(context.Background(), sc, lab.Options{Servers: servers}).Report
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
