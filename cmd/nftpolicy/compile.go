package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/nftpolicy/nftpolicy/internal/compile"
	"github.com/nftpolicy/nftpolicy/internal/manifest"
	"github.com/nftpolicy/nftpolicy/internal/model"
)

type fileList []string

func (f *fileList) String() string     { return strings.Join(*f, ",") }
func (f *fileList) Set(s string) error { *f = append(*f, s); return nil }

// compileCmd prints, in nft syntax, the ruleset the agent would program on
// one node for the objects in the given files, touching no kernel. Files
// are manifests (several documents, or Lists as kubectl get -o yaml prints
// them) or scenario files, which contribute the state after their last step
// (or after --step N) with the addresses the lab gives their nodes and pods.
func compileCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("compile", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var files fileList
	fs.Var(&files, "f", "a manifest or scenario file, or a directory of them (repeatable)")
	node := fs.String("node", "", "the node to compile for")
	stepN := fs.Int("step", 0, "for scenario files: the state after this step (default: after the last)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if len(files) == 0 || *node == "" {
		fmt.Fprintln(stderr, "nftpolicy compile: -f FILE|DIR and --node NAME are required")
		return 2
	}
	paths, err := expand(files)
	if err != nil {
		fmt.Fprintln(stderr, "nftpolicy compile:", err)
		return 1
	}
	c := model.NewCluster()
	failed := false
	for _, path := range paths {
		objs, err := manifest.ReadFile(path, *stepN)
		if err != nil {
			fmt.Fprintf(stderr, "nftpolicy compile: %v\n", err)
			failed = true
			continue
		}
		for _, obj := range objs {
			ref := manifest.RefOf(obj)
			if err := c.Set(obj); err != nil {
				// Kinds the agent does not enforce yet are named, never dropped silently.
				fmt.Fprintf(stderr, "warning: %s: %s %s: not enforced by this version; skipped\n", path, ref.Kind, ref.Name)
			}
		}
	}
	if failed {
		return 1
	}
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
	if _, ok := c.Nodes[*node]; !ok {
		fmt.Fprintf(stderr, "warning: no Node %q among the objects; compiling for the pods that name it\n", *node)
	}
	fmt.Fprint(stdout, compile.Node(c, *node).Text())
	return 0
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
