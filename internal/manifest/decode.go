package manifest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/network-policy-api/apis/v1alpha1"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"
	"sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftpolicy/nftpolicy/internal/model"
)

// ReadFile reads the objects of a file: a scenario file's state after step
// (0: after its last step) with the lab's addresses (Cluster.ObjectsAt), or
// a plain manifest (Decode).
func ReadFile(path string, step int) ([]runtime.Object, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if !IsScenario(data) {
		return Decode(path, data)
	}
	c, err := ParseCluster(path, data)
	if err != nil {
		return nil, err
	}
	return c.ObjectsAt(step)
}

// IsScenario tells a scenario file from a manifest by its top-level keys:
// a manifest has none of steps and objects.
func IsScenario(data []byte) bool {
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "steps:") || strings.HasPrefix(line, "objects:") {
			return true
		}
	}
	return false
}

// manifestDecoder knows every kind of client-go (a manifest may hold kinds
// the agent does not watch; the caller names and skips them) and the
// network-policy-api kinds. Strict, as kubectl apply is by default.
var manifestDecoder = func() runtime.Decoder {
	s := runtime.NewScheme()
	utilruntime.Must(clientscheme.AddToScheme(s))
	utilruntime.Must(v1alpha1.Install(s))
	utilruntime.Must(v1alpha2.Install(s))
	utilruntime.Must(v1beta1.Install(s))
	return serializer.NewCodecFactory(s, serializer.EnableStrict).UniversalDeserializer()
}()

// Decode decodes every document of a manifest (YAML or JSON), strictly,
// and applies the API server's defaults (SetDefaults). A List, as `kubectl
// get -o yaml` prints (kind: List, items of any kinds, or a typed list such
// as PodList), stands for its items.
func Decode(path string, data []byte) ([]runtime.Object, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
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
		objs, err := decodeDocument(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", path, doc, err)
		}
		out = append(out, objs...)
	}
}

// decodeDocument decodes one document: an object, or a List of them.
func decodeDocument(raw []byte) ([]runtime.Object, error) {
	obj, gvk, err := manifestDecoder.Decode(raw, nil, nil)
	if err != nil {
		return nil, err
	}
	if meta.IsListType(obj) {
		return listItems(obj)
	}
	if _, err := meta.Accessor(obj); err != nil {
		return nil, fmt.Errorf("%s is not an object", gvk)
	}
	obj = canonical(obj)
	SetDefaults(obj)
	return []runtime.Object{obj}, nil
}

// canonical is model.Canonical for decoded objects.
func canonical(obj runtime.Object) runtime.Object {
	return model.Canonical(obj).(runtime.Object)
}

// listItems decodes a List's items: a typed list holds them decoded, a
// kind: List holds them raw (and may nest Lists).
func listItems(list runtime.Object) ([]runtime.Object, error) {
	items, err := meta.ExtractList(list)
	if err != nil {
		return nil, err
	}
	var out []runtime.Object
	for i, item := range items {
		var objs []runtime.Object
		if u, ok := item.(*runtime.Unknown); ok {
			objs, err = decodeDocument(u.Raw)
		} else {
			objs, err = itemObject(item)
		}
		if err != nil {
			return nil, fmt.Errorf("item %d: %w", i, err)
		}
		out = append(out, objs...)
	}
	return out, nil
}

// itemObject is an item of a typed list, which carries no kind of its own.
func itemObject(item runtime.Object) ([]runtime.Object, error) {
	if _, err := meta.Accessor(item); err != nil {
		return nil, err
	}
	item = canonical(item)
	SetDefaults(item)
	return []runtime.Object{item}, nil
}
