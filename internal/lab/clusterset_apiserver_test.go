package lab_test

import (
	"context"
	"os"
	"testing"

	"github.com/nftpolicy/nftpolicy/internal/integration"
	"github.com/nftpolicy/nftpolicy/internal/lab"
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
	runFiles(t, lab.Options{Servers: servers},
		"../../test/scenarios/multicluster/allow-remote-namespace.yaml",
		"../../test/scenarios/multicluster/remote-cluster-back.yaml",
		"testdata/multicluster-wrong-expectation.yaml",
	)
}
