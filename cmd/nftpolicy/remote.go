package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/nftpolicy/nftpolicy/internal/agent"
)

// remoteKubeconfig is one remote cluster: its id and its kubeconfig file.
type remoteKubeconfig struct{ name, path string }

// remoteKubeconfigs reads --remote-kubeconfig NAME=PATH flags and the
// files of --remote-kubeconfig-dir (each file's name is its cluster's id,
// as the keys of a Secret mounted there; names starting with a dot, such
// as the mount's own ..data, are not clusters). Names must be label values
// (they are the values of the cluster label), unique, and not localID.
func remoteKubeconfigs(flags []string, dir, localID string) ([]remoteKubeconfig, error) {
	var out []remoteKubeconfig
	for _, f := range flags {
		name, path, ok := strings.Cut(f, "=")
		if !ok || path == "" {
			return nil, fmt.Errorf("--remote-kubeconfig %q: want NAME=PATH", f)
		}
		out = append(out, remoteKubeconfig{name, path})
	}
	if dir != "" {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("--remote-kubeconfig-dir: %w", err)
		}
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".") {
				continue
			}
			path := filepath.Join(dir, e.Name())
			if st, err := os.Stat(path); err != nil || !st.Mode().IsRegular() {
				continue // a Secret's keys are symlinks to files: Stat follows them
			}
			out = append(out, remoteKubeconfig{e.Name(), path})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	for i, r := range out {
		if errs := validation.IsDNS1123Label(r.name); len(errs) > 0 {
			return nil, fmt.Errorf("remote cluster %q: %s", r.name, strings.Join(errs, "; "))
		}
		if r.name == localID {
			return nil, fmt.Errorf("remote cluster %q: that is this cluster's id (--cluster-id)", r.name)
		}
		if i > 0 && out[i-1].name == r.name {
			return nil, fmt.Errorf("remote cluster %q given twice", r.name)
		}
	}
	return out, nil
}

// remoteClients builds a read-only client per remote cluster.
func remoteClients(remotes []remoteKubeconfig, userAgent string) ([]agent.Remote, error) {
	var out []agent.Remote
	for _, r := range remotes {
		cfg, err := clientcmd.BuildConfigFromFlags("", r.path)
		if err != nil {
			return nil, fmt.Errorf("remote cluster %s: %w", r.name, err)
		}
		cfg.UserAgent = userAgent
		c, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return nil, fmt.Errorf("remote cluster %s: %w", r.name, err)
		}
		out = append(out, agent.Remote{Name: r.name, Client: c})
	}
	return out, nil
}
