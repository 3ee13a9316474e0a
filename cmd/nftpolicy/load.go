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
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	policyclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"
	policyinformers "sigs.k8s.io/network-policy-api/pkg/client/informers/externalversions"

	"github.com/nftpolicy/nftpolicy/internal/agent"
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

// listObjects reads every kind the model knows from the API server the way
// the agent does, through the informers of its kinds table (the core kinds
// always, the admin kinds named in adminKinds), and returns them sorted by
// kind, namespace and name.
func listObjects(ctx context.Context, client kubernetes.Interface, pc policyclient.Interface, adminKinds map[string]schema.GroupVersionResource) ([]sourced, error) {
	ctx, cancel := context.WithCancel(ctx)
	// The agent's transform: objects as the model reads them (a newer
	// version's as the model's, model.Canonical).
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(agent.Transform))
	var policyFactory policyinformers.SharedInformerFactory
	if pc != nil {
		policyFactory = policyinformers.NewSharedInformerFactoryWithOptions(pc, 0, policyinformers.WithTransform(agent.Transform))
	}
	defer func() {
		// Shutdown waits for the informers, which stop when ctx ends.
		cancel()
		factory.Shutdown()
		if policyFactory != nil {
			policyFactory.Shutdown()
		}
	}()
	type lister struct {
		kind   string
		synced cache.InformerSynced
		list   cache.GenericLister
	}
	var listers []lister
	for _, k := range model.Kinds() {
		var inf cache.SharedIndexInformer
		var l cache.GenericLister
		switch {
		case k.Dynamic:
			continue // secondary networks: the agent's only (docs/multinetwork.md)
		case !k.Tier:
			gi, err := factory.ForResource(k.Resource)
			if err != nil {
				return nil, err
			}
			inf, l = gi.Informer(), gi.Lister()
		case policyFactory != nil:
			r, ok := agent.AdminResource(k, adminKinds)
			if !ok {
				continue
			}
			gi, err := policyFactory.ForResource(r)
			if err != nil {
				return nil, err
			}
			inf, l = gi.Informer(), gi.Lister()
		default:
			continue
		}
		listers = append(listers, lister{k.Name, inf.HasSynced, l})
	}
	factory.Start(ctx.Done())
	if policyFactory != nil {
		policyFactory.Start(ctx.Done())
	}
	var out []sourced
	for _, l := range listers {
		if !cache.WaitForCacheSync(ctx.Done(), l.synced) {
			return nil, fmt.Errorf("listing %ss: %w", l.kind, context.Cause(ctx))
		}
		objs, err := l.list.List(labels.Everything())
		if err != nil {
			return nil, fmt.Errorf("listing %ss: %w", l.kind, err)
		}
		sort.Slice(objs, func(i, j int) bool {
			a, b := objs[i].(metav1.Object), objs[j].(metav1.Object)
			return a.GetNamespace()+"/"+a.GetName() < b.GetNamespace()+"/"+b.GetName()
		})
		for _, o := range objs {
			out = append(out, sourced{"the cluster", o})
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
