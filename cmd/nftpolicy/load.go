package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/pager"
	policyclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	"github.com/nftpolicy/nftpolicy/internal/manifest"
	"github.com/nftpolicy/nftpolicy/internal/model"
)

// The reading of clusters that compile, explain and preview share: files
// (manifests, Lists, scenario files at a step) or a live cluster's API.

type fileList []string

func (f *fileList) String() string     { return strings.Join(*f, ",") }
func (f *fileList) Set(s string) error { *f = append(*f, s); return nil }

// sourced is an object and where it came from, for warnings.
type sourced struct {
	from string
	obj  runtime.Object
}

// readFiles reads the objects of files and directories (scenario files at
// step; 0: after the last). Each unreadable file is reported on stderr;
// ok is false if any was.
func readFiles(cmd string, files []string, step int, stderr io.Writer) ([]sourced, bool) {
	paths, err := expand(files)
	if err != nil {
		fmt.Fprintf(stderr, "nftpolicy %s: %v\n", cmd, err)
		return nil, false
	}
	var out []sourced
	ok := true
	for _, path := range paths {
		objs, err := manifest.ReadFile(path, step)
		if err != nil {
			fmt.Fprintf(stderr, "nftpolicy %s: %v\n", cmd, err)
			ok = false
			continue
		}
		for _, obj := range objs {
			out = append(out, sourced{path, obj})
		}
	}
	return out, ok
}

// newCluster builds the model of objs, naming on stderr the objects of
// kinds the agent does not enforce (never dropped silently) and every
// policy's problems.
func newCluster(objs []sourced, stderr io.Writer) *model.Cluster {
	c := model.NewCluster()
	for _, o := range objs {
		if err := c.Set(o.obj); err != nil {
			ref := manifest.RefOf(o.obj)
			fmt.Fprintf(stderr, "warning: %s: %s %s: not enforced by this version; skipped\n", o.from, ref.Kind, ref.Name)
		}
	}
	warnProblems(c, stderr)
	return c
}

func warnProblems(c *model.Cluster, stderr io.Writer) {
	for _, p := range c.SortedPolicies() {
		for _, msg := range p.Problems {
			fmt.Fprintf(stderr, "warning: NetworkPolicy %s: %s\n", p.Key(), msg)
		}
	}
	for _, t := range []model.Tier{model.TierAdmin, model.TierBaseline} {
		for _, p := range c.SortedTier(t) {
			for _, msg := range p.Problems {
				fmt.Fprintf(stderr, "warning: %s: %s\n", p.Key(), msg)
			}
		}
	}
}

// liveObjects lists what the agent watches from a live cluster: namespaces,
// pods, nodes, NetworkPolicies, and the network-policy-api kinds the API
// server serves (as the agent discovers them). Lists are paged.
func liveObjects(ctx context.Context, kubeconfig string) ([]sourced, error) {
	cfg, err := restConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.UserAgent = "nftpolicy-explain"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	kinds, err := installedAdminKinds(ctx, client.Discovery())
	if err != nil {
		return nil, err
	}
	var pc policyclient.Interface
	if len(kinds) > 0 {
		if pc, err = policyclient.NewForConfig(cfg); err != nil {
			return nil, err
		}
	}
	return listObjects(ctx, client, pc, kinds)
}

// listObjects lists the core kinds and the given admin kinds.
func listObjects(ctx context.Context, client kubernetes.Interface, pc policyclient.Interface, adminKinds []string) ([]sourced, error) {
	type lister struct {
		kind string
		list func(context.Context, metav1.ListOptions) (runtime.Object, error)
	}
	core, np := client.CoreV1(), client.NetworkingV1()
	listers := []lister{
		{"Namespace", func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return core.Namespaces().List(ctx, o)
		}},
		{"Node", func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return core.Nodes().List(ctx, o)
		}},
		{"Pod", func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return core.Pods("").List(ctx, o)
		}},
		{"NetworkPolicy", func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return np.NetworkPolicies("").List(ctx, o)
		}},
	}
	for _, k := range adminKinds {
		var l func(context.Context, metav1.ListOptions) (runtime.Object, error)
		switch k {
		case model.KindANP:
			l = func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				return pc.PolicyV1alpha1().AdminNetworkPolicies().List(ctx, o)
			}
		case model.KindBANP:
			l = func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				return pc.PolicyV1alpha1().BaselineAdminNetworkPolicies().List(ctx, o)
			}
		case model.KindCNP:
			l = func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				return pc.PolicyV1alpha2().ClusterNetworkPolicies().List(ctx, o)
			}
		default:
			continue
		}
		listers = append(listers, lister{k, l})
	}
	var out []sourced
	for _, l := range listers {
		err := pager.New(l.list).EachListItem(ctx, metav1.ListOptions{}, func(obj runtime.Object) error {
			out = append(out, sourced{"the cluster", obj})
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("listing %ss: %w", l.kind, err)
		}
	}
	return out, nil
}

// expand turns directories into the YAML and JSON files in them, sorted.
func expand(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		st, err := os.Stat(a)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			out = append(out, a)
			continue
		}
		entries, err := os.ReadDir(a)
		if err != nil {
			return nil, err
		}
		var names []string
		for _, e := range entries {
			if ext := filepath.Ext(e.Name()); !e.IsDir() && (ext == ".yaml" || ext == ".yml" || ext == ".json") {
				names = append(names, filepath.Join(a, e.Name()))
			}
		}
		sort.Strings(names)
		out = append(out, names...)
	}
	return out, nil
}
