package integration

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"k8s.io/client-go/kubernetes"
	policyclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	"github.com/nftpolicy/nftpolicy/internal/lab"
)

// NewLabEnv is NewEnv for the lab's --apiserver mode: the servers with
// deployDir's manifests created and the agents' service-account
// credentials, but no agent binary (the lab runs its agents in process).
func NewLabEnv(ctx context.Context, log io.Writer, deployDir string) (_ *Env, err error) {
	files, _ := filepath.Glob(filepath.Join(deployDir, "*.yaml"))
	sort.Strings(files)
	if len(files) == 0 {
		return nil, fmt.Errorf("no manifests in %s", deployDir)
	}
	bins, err := Build(ctx, log)
	if err != nil {
		return nil, err
	}
	e := &Env{}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	if e.Dir, err = os.MkdirTemp("", "nftpolicy-env-"); err != nil {
		return nil, err
	}
	start := time.Now()
	if e.Cluster, err = Start(ctx, bins); err != nil {
		return nil, err
	}
	if err := e.Cluster.Apply(ctx, files...); err != nil {
		return nil, err
	}
	e.AgentKubeconfig = filepath.Join(e.Dir, "agent.kubeconfig")
	if e.AgentREST, err = e.Cluster.ServiceAccountKubeconfig(ctx, "kube-system", "nftpolicy", e.AgentKubeconfig); err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "API server %s up with %s applied in %v\n", e.Cluster.URL, deployDir, time.Since(start).Round(time.Millisecond))
	return e, nil
}

// LabServer is what lab.Options.Server needs: the admin's clients to
// write the scenario, and the DaemonSet's service account (deploy/'s
// RBAC) for the agents.
func (e *Env) LabServer() (*lab.Server, error) {
	writer, err := policyclient.NewForConfig(e.Cluster.AdminREST)
	if err != nil {
		return nil, err
	}
	agentREST := *e.AgentREST
	agentREST.QPS, agentREST.Burst = 100, 200
	kube, err := kubernetes.NewForConfig(&agentREST)
	if err != nil {
		return nil, err
	}
	pol, err := policyclient.NewForConfig(&agentREST)
	if err != nil {
		return nil, err
	}
	return &lab.Server{
		Writer: lab.Clients{Kube: e.Cluster.Admin, Policy: writer},
		Agent:  lab.Clients{Kube: kube, Policy: pol},
	}, nil
}
