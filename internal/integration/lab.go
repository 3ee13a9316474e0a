package integration

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// NewLabEnv is NewEnv for the lab's --apiserver mode: the servers with
// deployDir's manifests created and the agents' service-account
// credentials, but no agent binary (the lab runs its agents in process).
func NewLabEnv(ctx context.Context, log io.Writer, deployDir string) (*Env, error) {
	return NewLabEnvIn(ctx, log, deployDir, Where{})
}

// NewLabEnvIn is NewLabEnv with the servers placed by w.
func NewLabEnvIn(ctx context.Context, log io.Writer, deployDir string, w Where) (_ *Env, err error) {
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
	if e.Cluster, err = StartIn(ctx, bins, w); err != nil {
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

// FindDeployDir looks for deploy/ (the manifests: CRDs, RBAC) in the
// working directory and its parents; "" when there is none.
func FindDeployDir() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		d := filepath.Join(dir, "deploy")
		if _, err := os.Stat(filepath.Join(d, "10-rbac.yaml")); err == nil {
			return d
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}
