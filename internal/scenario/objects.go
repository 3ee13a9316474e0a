package scenario

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/network-policy-api/apis/v1alpha1"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"
)

// The kinds a scenario may hold, by kind name. A kind has exactly one
// apiVersion here: the one the agent watches.
var kinds = map[string]struct {
	gv         schema.GroupVersion
	namespaced bool
}{
	"Namespace":                  {corev1.SchemeGroupVersion, false},
	"Pod":                        {corev1.SchemeGroupVersion, true},
	"Node":                       {corev1.SchemeGroupVersion, false},
	"NetworkPolicy":              {networkingv1.SchemeGroupVersion, true},
	"AdminNetworkPolicy":         {schema.GroupVersion(v1alpha1.GroupVersion), false},
	"BaselineAdminNetworkPolicy": {schema.GroupVersion(v1alpha1.GroupVersion), false},
	"ClusterNetworkPolicy":       {schema.GroupVersion(v1alpha2.GroupVersion), false},
}

// codec decodes as the API server does with strict field validation
// (kubectl's default): unknown or duplicate fields are errors and field
// names are case-sensitive. It is built once and only read.
var codec = func() runtime.Decoder {
	s := runtime.NewScheme()
	utilruntime.Must(corev1.AddToScheme(s))
	utilruntime.Must(networkingv1.AddToScheme(s))
	utilruntime.Must(v1alpha1.Install(s))
	utilruntime.Must(v1alpha2.Install(s))
	return kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, s, s, kjson.SerializerOptions{Strict: true})
}()

// KindOf returns the kind of one of the scenario object types.
func KindOf(obj runtime.Object) string {
	switch obj.(type) {
	case *corev1.Namespace:
		return "Namespace"
	case *corev1.Pod:
		return "Pod"
	case *corev1.Node:
		return "Node"
	case *networkingv1.NetworkPolicy:
		return "NetworkPolicy"
	case *v1alpha1.AdminNetworkPolicy:
		return "AdminNetworkPolicy"
	case *v1alpha1.BaselineAdminNetworkPolicy:
		return "BaselineAdminNetworkPolicy"
	case *v1alpha2.ClusterNetworkPolicy:
		return "ClusterNetworkPolicy"
	}
	return obj.GetObjectKind().GroupVersionKind().Kind
}

// RefOf returns the reference a delete step would use for obj.
func RefOf(obj runtime.Object) ObjectRef {
	ref := ObjectRef{Kind: KindOf(obj)}
	if m, err := meta.Accessor(obj); err == nil {
		ref.Namespace, ref.Name = m.GetNamespace(), m.GetName()
	}
	return ref
}

// Namespaced reports whether a kind the format knows lives in a namespace.
func Namespaced(kind string) bool { return kinds[kind].namespaced }

// decodeObject turns one entry of objects or apply into a typed,
// defaulted object. Problems are recorded on l; nil means there were some.
func (l *loader) decodeObject(v *value) runtime.Object {
	if v.kind != yaml.MappingNode {
		l.errorf(v.line, "an object must be a mapping")
		return nil
	}
	apiVersion, avLine, _ := l.optString(v, "apiVersion")
	kind, kindLine, _ := l.optString(v, "kind")
	switch {
	case kind == "":
		l.errorf(v.line, "object has no kind")
		return nil
	case apiVersion == "":
		l.errorf(v.line, "%s has no apiVersion", kind)
		return nil
	}
	info, ok := kinds[kind]
	if !ok {
		l.errorf(kindLine, "unknown kind %q", kind)
		return nil
	}
	if apiVersion != info.gv.String() {
		l.errorf(avLine, "unknown apiVersion %q for %s (want %s)", apiVersion, kind, info.gv)
		return nil
	}
	what := describe(kind, v)
	data, err := json.Marshal(v.toAny())
	if err != nil {
		l.errorf(v.line, "%s: %v", what, err)
		return nil
	}
	obj, _, err := codec.Decode(data, nil, nil)
	if err != nil {
		if serr, ok := runtime.AsStrictDecodingError(err); ok {
			for _, e := range serr.Errors() {
				l.errorf(v.lookup(strictErrorPath(e.Error())), "%s: %v", what, e)
			}
			return nil
		}
		l.errorf(v.lookupLoose(typeErrorPath(err.Error())), "%s: %v", what, err)
		return nil
	}
	obj.GetObjectKind().SetGroupVersionKind(info.gv.WithKind(kind))
	if !l.checkMeta(obj, info.namespaced, v) {
		return nil
	}
	SetDefaults(obj)
	return obj
}

// describe names an object for messages before it is decoded.
func describe(kind string, v *value) string {
	md, _, _ := v.get("metadata")
	name, _, _ := md.get("name")
	ns, _, _ := md.get("namespace")
	s := kind
	if ns != nil && ns.kind == yaml.ScalarNode && ns.text != "" {
		s += " " + ns.text + "/"
	} else {
		s += " "
	}
	if name != nil && name.kind == yaml.ScalarNode {
		s += name.text
	}
	return strings.TrimSpace(s)
}

// checkMeta validates and normalises metadata as the API server would:
// names must be valid, namespaced kinds default to "default" and
// cluster-scoped kinds drop a namespace.
func (l *loader) checkMeta(obj runtime.Object, namespaced bool, v *value) bool {
	m, err := meta.Accessor(obj)
	if err != nil {
		l.errorf(v.line, "%v", err)
		return false
	}
	kind := KindOf(obj)
	md, mdLine, _ := v.get("metadata")
	line := v.line
	if mdLine > 0 {
		line = mdLine
	}
	ok := true
	if m.GetName() == "" {
		l.errorf(line, "%s has no metadata.name", kind)
		return false
	}
	nameLine := orLine(md.lookup([]any{"name"}), line)
	nameCheck := validation.IsDNS1123Subdomain
	if kind == "Namespace" {
		nameCheck = validation.IsDNS1123Label
	}
	if errs := nameCheck(m.GetName()); len(errs) > 0 {
		l.errorf(nameLine, "%s name %q: %s", kind, m.GetName(), strings.Join(errs, "; "))
		ok = false
	}
	if kind == "Namespace" && reservedNamespace(m.GetName()) {
		l.errorf(nameLine, "no namespace may be named %q: patterns use it for %ss", m.GetName(), m.GetName())
		ok = false
	}
	if kind == "BaselineAdminNetworkPolicy" && m.GetName() != "default" {
		l.errorf(nameLine, "a BaselineAdminNetworkPolicy must be named \"default\", not %q", m.GetName())
		ok = false
	}
	if namespaced {
		if m.GetNamespace() == "" {
			m.SetNamespace(corev1.NamespaceDefault)
		}
		nsLine := orLine(md.lookup([]any{"namespace"}), line)
		if errs := validation.IsDNS1123Label(m.GetNamespace()); len(errs) > 0 {
			l.errorf(nsLine, "%s namespace %q: %s", kind, m.GetNamespace(), strings.Join(errs, "; "))
			ok = false
		} else if reservedNamespace(m.GetNamespace()) {
			l.errorf(nsLine, "no namespace may be named %q: patterns use it for %ss", m.GetNamespace(), m.GetNamespace())
			ok = false
		}
	} else {
		m.SetNamespace("")
	}
	if errs := metav1validation.ValidateLabels(m.GetLabels(), field.NewPath("metadata", "labels")); len(errs) > 0 {
		l.errorf(orLine(md.lookup([]any{"labels"}), line), "%s: %v", RefOf(obj), errs.ToAggregate())
		ok = false
	}
	return ok
}

// orLine returns line, or fallback when line is unknown.
func orLine(line, fallback int) int {
	if line > 0 {
		return line
	}
	return fallback
}

func reservedNamespace(name string) bool { return name == "external" || name == "node" }

// strictErrorPath reads the field path out of `unknown field "a.b[0].c"`.
func strictErrorPath(msg string) []any {
	_, rest, ok := strings.Cut(msg, `"`)
	if !ok {
		return nil
	}
	p, _, ok := strings.Cut(rest, `"`)
	if !ok {
		return nil
	}
	var path []any
	for _, part := range strings.Split(p, ".") {
		name, idx, _ := strings.Cut(part, "[")
		if name != "" {
			path = append(path, name)
		}
		for idx != "" {
			num, after, _ := strings.Cut(idx, "]")
			if n, err := strconv.Atoi(num); err == nil {
				path = append(path, n)
			}
			_, idx, _ = strings.Cut(after, "[")
		}
	}
	return path
}

var typeErrorRE = regexp.MustCompile(`Go struct field \w+\.(\S+) of type`)

// typeErrorPath reads the field path out of a JSON type error; it has no
// list indices, so lookupLoose searches lists.
func typeErrorPath(msg string) []string {
	m := typeErrorRE.FindStringSubmatch(msg)
	if m == nil {
		return nil
	}
	return strings.Split(m[1], ".")
}

// lookupLoose is lookup for paths without list indices: it descends into
// the first list item that has the rest of the path.
func (v *value) lookupLoose(path []string) int {
	if line, ok := v.findLoose(path); ok {
		return line
	}
	return v.line
}

func (v *value) findLoose(path []string) (int, bool) {
	if v == nil {
		return 0, false
	}
	if len(path) == 0 {
		return v.line, true
	}
	switch v.kind {
	case yaml.SequenceNode:
		for _, item := range v.items {
			if line, ok := item.findLoose(path); ok {
				return line, true
			}
		}
	case yaml.MappingNode:
		next, keyLine, ok := v.get(path[0])
		if !ok {
			return 0, false
		}
		if len(path) == 1 {
			return keyLine, true
		}
		return next.findLoose(path[1:])
	}
	return 0, false
}

func (r ObjectRef) validate() error {
	info, ok := kinds[r.Kind]
	switch {
	case !ok:
		return fmt.Errorf("unknown kind %q", r.Kind)
	case r.Name == "":
		return fmt.Errorf("delete %s: no name", r.Kind)
	case !info.namespaced && r.Namespace != "":
		return fmt.Errorf("delete %s %s: a %s has no namespace", r.Kind, r.Name, r.Kind)
	}
	return nil
}
