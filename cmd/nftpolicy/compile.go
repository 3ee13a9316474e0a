package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/network-policy-api/apis/v1alpha1"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"

	"github.com/nftpolicy/nftpolicy/internal/compile"
	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/scenario"
)

type fileList []string

func (f *fileList) String() string     { return strings.Join(*f, ",") }
func (f *fileList) Set(s string) error { *f = append(*f, s); return nil }

// compileCmd prints, in nft syntax, the ruleset the agent would program on
// one node for the objects in the given files, touching no kernel. Scenario
// files contribute the state after their last step (or after --step N).
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
		objs, err := readObjects(path, *stepN)
		if err != nil {
			fmt.Fprintf(stderr, "nftpolicy compile: %v\n", err)
			failed = true
			continue
		}
		for _, obj := range objs {
			ref := scenario.RefOf(obj)
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

// readObjects reads a scenario file (its state after a step) or a plain
// manifest of one or more documents.
func readObjects(path string, stepN int) ([]runtime.Object, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if isScenario(data) {
		sc, err := scenario.Parse(path, data)
		if err != nil {
			return nil, err
		}
		return scenarioState(sc, stepN)
	}
	return decodeManifest(path, data)
}

func isScenario(data []byte) bool {
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "steps:") || strings.HasPrefix(line, "objects:") {
			return true
		}
	}
	return false
}

func scenarioState(sc *scenario.Scenario, stepN int) ([]runtime.Object, error) {
	st := scenario.NewState()
	for _, obj := range sc.Objects {
		if err := st.Apply(obj.DeepCopyObject()); err != nil {
			return nil, fmt.Errorf("%s: %w", sc.File, err)
		}
	}
	for _, step := range sc.Steps {
		if stepN > 0 && step.Number > stepN {
			break
		}
		for _, obj := range step.Apply {
			if err := st.Apply(obj.DeepCopyObject()); err != nil {
				return nil, fmt.Errorf("%s: step %d: %w", sc.File, step.Number, err)
			}
		}
		for _, ref := range step.Delete {
			if _, err := st.Delete(ref); err != nil {
				return nil, fmt.Errorf("%s: step %d: %w", sc.File, step.Number, err)
			}
		}
	}
	return st.Objects(), nil
}

var decoder = func() runtime.Decoder {
	s := runtime.NewScheme()
	utilruntime.Must(clientscheme.AddToScheme(s))
	utilruntime.Must(v1alpha1.Install(s))
	utilruntime.Must(v1alpha2.Install(s))
	return serializer.NewCodecFactory(s, serializer.EnableStrict).UniversalDeserializer()
}()

// decodeManifest decodes every document of a manifest, strictly, and
// applies the API server's defaults.
func decodeManifest(path string, data []byte) ([]runtime.Object, error) {
	r := utilyaml.NewYAMLReader(bufioReader(data))
	var out []runtime.Object
	for doc := 1; ; doc++ {
		raw, err := r.Read()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", path, doc, err)
		}
		if len(bytes.TrimSpace(raw)) == 0 || strings.TrimSpace(string(raw)) == "---" {
			continue
		}
		obj, gvk, err := decoder.Decode(raw, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", path, doc, err)
		}
		if _, ok := obj.(metav1Object); !ok {
			return nil, fmt.Errorf("%s: document %d: %s is not an object", path, doc, gvk)
		}
		scenario.SetDefaults(obj)
		out = append(out, obj)
	}
}

type metav1Object interface{ GetName() string }

func bufioReader(data []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(data)) }
