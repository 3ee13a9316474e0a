package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"syscall"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/nftpolicy/nftpolicy/internal/explain"
	"github.com/nftpolicy/nftpolicy/internal/model"
)

// previewDelete is the annotation that makes an object of the change a
// deletion: only its kind, namespace and name are read.
const previewDelete = "nftpolicy.io/preview"

// previewCmd lists the flows between pods whose verdict a change would
// flip. The first -f is the change; the other -f (or --kubeconfig) are the
// cluster it applies to. Exit status: 0 with a preview, 1 when a file or
// the cluster could not be read, 2 for a malformed command line.
func previewCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("preview", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf clusterFlags
	cf.register(fs, "the first -f: the change (a file or directory of objects to add, replace, or delete: annotate an object "+previewDelete+": delete); every other -f: the cluster")
	output := fs.String("output", "text", "text or json")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 || len(cf.files) == 0 || (len(cf.files) == 1) == (cf.kubeconfig == "") || (*output != "text" && *output != "json") {
		fmt.Fprintln(stderr, "usage: nftpolicy preview -f CHANGE (-f CLUSTER ... | --kubeconfig FILE) [--output text|json]")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	change, ok := readFiles("preview", cf.files[:1], 0, stderr)
	if !ok {
		return 1
	}
	base, ok := cf.objects(ctx, "preview", cf.files[1:], stderr)
	if !ok {
		return 1
	}
	afterObjs, refs, changes, err := applyChange(base, change)
	if err != nil {
		fmt.Fprintln(stderr, "nftpolicy preview:", err)
		return 1
	}
	before := newCluster(base, io.Discard) // its problems are the after's, less the change's
	after := newCluster(afterObjs, stderr)
	res := explain.Preview(before, after, refs, changes)
	if *output == "json" {
		if err := res.WriteJSON(stdout); err != nil {
			return 1
		}
		return 0
	}
	res.WriteText(stdout)
	return 0
}

// applyChange returns the cluster's objects with the change applied (an
// object of the change replaces the one of the same kind, namespace and
// name, or is added; one annotated for deletion removes it), the objects
// that differ, and a line for each object of the change.
func applyChange(base, change []sourced) ([]sourced, []explain.Ref, []string, error) {
	index := map[explain.Ref]int{}
	out := append([]sourced(nil), base...)
	for i, o := range out {
		if ref, ok := refOf(o.obj); ok {
			index[ref] = i
		}
	}
	var refs []explain.Ref
	var lines []string
	deleted := map[int]bool{}
	for _, c := range change {
		ref, ok := refOf(c.obj)
		if !ok {
			return nil, nil, nil, fmt.Errorf("%s: %T is not a kind the agent enforces", c.from, c.obj)
		}
		m, _ := meta.Accessor(c.obj)
		i, exists := index[ref]
		switch {
		case m.GetAnnotations()[previewDelete] == "delete" && exists && !deleted[i]:
			deleted[i] = true
			refs = append(refs, ref)
			lines = append(lines, ref.String()+": deleted")
		case m.GetAnnotations()[previewDelete] == "delete":
			lines = append(lines, ref.String()+": to delete, but not in the cluster")
		case m.GetAnnotations()[previewDelete] != "":
			return nil, nil, nil, fmt.Errorf("%s: %s: annotation %s: %q, want \"delete\"", c.from, ref, previewDelete, m.GetAnnotations()[previewDelete])
		case exists && !deleted[i] && equality.Semantic.DeepEqual(out[i].obj, c.obj):
			lines = append(lines, ref.String()+": unchanged")
		case exists && !deleted[i]:
			out[i] = c
			refs = append(refs, ref)
			lines = append(lines, ref.String()+": replaced")
		default:
			index[ref] = len(out)
			out = append(out, c)
			refs = append(refs, ref)
			lines = append(lines, ref.String()+": added")
		}
	}
	kept := out[:0]
	for i, o := range out {
		if !deleted[i] {
			kept = append(kept, o)
		}
	}
	return kept, refs, lines, nil
}

func refOf(obj runtime.Object) (explain.Ref, bool) {
	kind, ns, name, ok := model.RefOf(obj)
	return explain.Ref{Kind: kind, Namespace: ns, Name: name}, ok
}
