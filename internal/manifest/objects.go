package manifest

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
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
	"sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/nftpolicy/nftpolicy/internal/model"
)

// The kinds a scenario may hold, by kind name, with the apiVersions a
// file may give them (the one the model takes first): the model's kinds
// but for NetworkAttachmentDefinition (a scenario's networks make those),
// at the versions the model reads them (model.Kind.Versions:
// ClusterNetworkPolicy as v1alpha2 or v1beta1), and Services.
var kinds = func() map[string]kindInfo {
	out := map[string]kindInfo{"Service": {[]schema.GroupVersion{corev1.SchemeGroupVersion}, true}}
	for _, k := range model.Kinds() {
		if k.Name != model.KindNAD {
			out[k.Name] = kindInfo{k.Versions(), k.Namespaced}
		}
	}
	return out
}()

type kindInfo struct {
	gvs        []schema.GroupVersion
	namespaced bool
}

// codec decodes as the API server does with strict field validation
// (kubectl's default): unknown or duplicate fields are errors and field
// names are case-sensitive. It is built once and only read.
var codec = kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme, scheme, kjson.SerializerOptions{Strict: true})

// scheme knows the Go types of the API groups the format's kinds are in.
var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(corev1.AddToScheme(s))
	utilruntime.Must(networkingv1.AddToScheme(s))
	utilruntime.Must(v1alpha1.Install(s))
	utilruntime.Must(v1alpha2.Install(s))
	utilruntime.Must(v1beta1.Install(s))
	utilruntime.Must(model.AddToScheme(s))
	return s
}()

// KindOf returns the kind of obj: from its Go type for the types the
// format's API groups define, else from its TypeMeta.
func KindOf(obj runtime.Object) string {
	if gvks, _, err := scheme.ObjectKinds(obj); err == nil && len(gvks) > 0 {
		return gvks[0].Kind
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
func (l *loader) decodeObject(v *Value) runtime.Object {
	if v.Kind != yaml.MappingNode {
		l.Errorf(v.Line, "an object must be a mapping")
		return nil
	}
	apiVersion, avLine, _ := l.OptString(v, "apiVersion")
	kind, kindLine, _ := l.OptString(v, "kind")
	switch {
	case kind == "":
		l.Errorf(v.Line, "object has no kind")
		return nil
	case apiVersion == "":
		l.Errorf(v.Line, "%s has no apiVersion", kind)
		return nil
	}
	info, ok := kinds[kind]
	if !ok {
		l.Errorf(kindLine, "unknown kind %q", kind)
		return nil
	}
	i := slices.IndexFunc(info.gvs, func(gv schema.GroupVersion) bool { return gv.String() == apiVersion })
	if i < 0 {
		var want []string
		for _, gv := range info.gvs {
			want = append(want, gv.String())
		}
		l.Errorf(avLine, "unknown apiVersion %q for %s (want %s)", apiVersion, kind, strings.Join(want, " or "))
		return nil
	}
	what := describe(kind, v)
	data, err := json.Marshal(v.toAny())
	if err != nil {
		l.Errorf(v.Line, "%s: %v", what, err)
		return nil
	}
	obj, _, err := codec.Decode(data, nil, nil)
	if err != nil {
		if serr, ok := runtime.AsStrictDecodingError(err); ok {
			for _, e := range serr.Errors() {
				l.Errorf(v.Lookup(strictErrorPath(e.Error())), "%s: %v", what, e)
			}
			return nil
		}
		l.Errorf(v.lookupLoose(typeErrorPath(err.Error())), "%s: %v", what, err)
		return nil
	}
	obj = canonical(obj)
	obj.GetObjectKind().SetGroupVersionKind(info.gvs[0].WithKind(kind))
	if !l.checkMeta(obj, info.namespaced, v) {
		return nil
	}
	SetDefaults(obj)
	if svc, ok := obj.(*corev1.Service); ok && !l.checkService(svc, v) {
		return nil
	}
	return obj
}

// checkService keeps a Service to what the lab's service proxy setup
// covers (docs/scenarios.md, Services): ClusterIP or NodePort, a
// selector, TCP or UDP ports with names when there are several.
func (l *loader) checkService(svc *corev1.Service, v *Value) bool {
	spec, specLine, _ := v.Get("spec")
	line := orLine(specLine, v.Line)
	at := func(path ...any) int { return orLine(spec.Lookup(path), line) }
	has := func(field string) bool {
		_, _, ok := spec.Get(field)
		return spec != nil && ok
	}
	what := RefOf(svc).String()
	ok := true
	switch svc.Spec.Type {
	case corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort:
	default:
		l.Errorf(at("type"), "%s: type %q: the lab runs ClusterIP and NodePort Services", what, svc.Spec.Type)
		ok = false
	}
	if svc.Spec.Type != corev1.ServiceTypeNodePort && has("externalTrafficPolicy") {
		l.Errorf(at("externalTrafficPolicy"), "%s: externalTrafficPolicy is for NodePort Services", what)
		ok = false
	}
	if len(svc.Spec.Selector) == 0 {
		l.Errorf(line, "%s has no selector: the lab keeps EndpointSlices for Services with a selector only", what)
		ok = false
	}
	if len(svc.Spec.Ports) == 0 {
		l.Errorf(line, "%s has no ports", what)
		ok = false
	}
	names := map[string]bool{}
	for i, p := range svc.Spec.Ports {
		switch {
		case p.Protocol != corev1.ProtocolTCP && p.Protocol != corev1.ProtocolUDP:
			l.Errorf(at("ports", i, "protocol"), "%s: port protocol %q: the lab probes Services over TCP and UDP", what, p.Protocol)
			ok = false
		case len(svc.Spec.Ports) > 1 && p.Name == "":
			l.Errorf(at("ports", i), "%s: a Service with several ports must name each", what)
			ok = false
		case names[p.Name]:
			l.Errorf(at("ports", i, "name"), "%s: port name %q given twice", what, p.Name)
			ok = false
		case validation.IsValidPortNum(int(p.Port)) != nil:
			l.Errorf(at("ports", i, "port"), "%s: port %d is not a port number", what, p.Port)
			ok = false
		}
		names[p.Name] = true
	}
	for _, f := range []string{"externalIPs", "loadBalancerIP", "externalName", "sessionAffinity", "internalTrafficPolicy"} {
		if has(f) {
			l.Errorf(at(f), "%s: spec.%s is not part of the lab's Services", what, f)
			ok = false
		}
	}
	return ok
}

// describe names an object for messages before it is decoded.
func describe(kind string, v *Value) string {
	md, _, _ := v.Get("metadata")
	name, _, _ := md.Get("name")
	ns, _, _ := md.Get("namespace")
	s := kind
	if ns != nil && ns.Kind == yaml.ScalarNode && ns.Text != "" {
		s += " " + ns.Text + "/"
	} else {
		s += " "
	}
	if name != nil && name.Kind == yaml.ScalarNode {
		s += name.Text
	}
	return strings.TrimSpace(s)
}

// checkMeta validates and normalises metadata as the API server would:
// names must be valid, namespaced kinds default to "default" and
// cluster-scoped kinds drop a namespace.
func (l *loader) checkMeta(obj runtime.Object, namespaced bool, v *Value) bool {
	m, err := meta.Accessor(obj)
	if err != nil {
		l.Errorf(v.Line, "%v", err)
		return false
	}
	kind := KindOf(obj)
	md, mdLine, _ := v.Get("metadata")
	line := v.Line
	if mdLine > 0 {
		line = mdLine
	}
	ok := true
	if m.GetName() == "" {
		l.Errorf(line, "%s has no metadata.name", kind)
		return false
	}
	nameLine := orLine(md.Lookup([]any{"name"}), line)
	nameCheck := validation.IsDNS1123Subdomain
	if kind == "Namespace" {
		nameCheck = validation.IsDNS1123Label
	}
	if errs := nameCheck(m.GetName()); len(errs) > 0 {
		l.Errorf(nameLine, "%s name %q: %s", kind, m.GetName(), strings.Join(errs, "; "))
		ok = false
	}
	if kind == "Namespace" && reservedNamespace(m.GetName()) {
		l.Errorf(nameLine, "no namespace may be named %q: patterns use it for %ss", m.GetName(), m.GetName())
		ok = false
	}
	if kind == "BaselineAdminNetworkPolicy" && m.GetName() != "default" {
		l.Errorf(nameLine, "a BaselineAdminNetworkPolicy must be named \"default\", not %q", m.GetName())
		ok = false
	}
	if namespaced {
		if m.GetNamespace() == "" {
			m.SetNamespace(corev1.NamespaceDefault)
		}
		nsLine := orLine(md.Lookup([]any{"namespace"}), line)
		if errs := validation.IsDNS1123Label(m.GetNamespace()); len(errs) > 0 {
			l.Errorf(nsLine, "%s namespace %q: %s", kind, m.GetNamespace(), strings.Join(errs, "; "))
			ok = false
		} else if reservedNamespace(m.GetNamespace()) {
			l.Errorf(nsLine, "no namespace may be named %q: patterns use it for %ss", m.GetNamespace(), m.GetNamespace())
			ok = false
		}
	} else {
		m.SetNamespace("")
	}
	if errs := metav1validation.ValidateLabels(m.GetLabels(), field.NewPath("metadata", "labels")); len(errs) > 0 {
		l.Errorf(orLine(md.Lookup([]any{"labels"}), line), "%s: %v", RefOf(obj), errs.ToAggregate())
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
func (v *Value) lookupLoose(path []string) int {
	if line, ok := v.findLoose(path); ok {
		return line
	}
	return v.Line
}

func (v *Value) findLoose(path []string) (int, bool) {
	if v == nil {
		return 0, false
	}
	if len(path) == 0 {
		return v.Line, true
	}
	switch v.Kind {
	case yaml.SequenceNode:
		for _, item := range v.Items {
			if line, ok := item.findLoose(path); ok {
				return line, true
			}
		}
	case yaml.MappingNode:
		next, keyLine, ok := v.Get(path[0])
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

// ValidExternalName keeps external names to what a pattern and an
// expect line can carry unambiguously, and a network namespace name can hold.
func ValidExternalName(s string) []string {
	if s == "" || len(s) > 63 {
		return []string{"must be 1 to 63 characters"}
	}
	for i, r := range s {
		alnum := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
		if !alnum && (i == 0 || r != '-' && r != '_' && r != '.') {
			return []string{"must be letters, digits, '-', '_' and '.', starting with a letter or digit"}
		}
	}
	return nil
}
