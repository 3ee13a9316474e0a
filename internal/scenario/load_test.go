package scenario

import (
	"github.com/nftpolicy/nftpolicy/internal/manifest"

	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/network-policy-api/apis/v1alpha1"
)

func TestLoadExamples(t *testing.T) {
	// The format's first examples (testdata/examples, which the loader's
	// tests below pin line by line), and every scenario of the repository.
	dirs := []string{"testdata/examples"}
	filepath.WalkDir("../../test/scenarios", func(path string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, path)
		}
		return nil
	})
	for _, dir := range dirs {
		files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
		if len(files) == 0 {
			t.Fatalf("no examples in %s", dir)
		}
		for _, f := range files {
			t.Run(f, func(t *testing.T) {
				s, err := Load(f)
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				if s.Name == "" || len(s.Steps) == 0 {
					t.Errorf("loaded %+v, want a name and steps", s)
				}
			})
		}
		all, err := LoadAll(dir)
		if err != nil {
			t.Fatalf("LoadAll(%s): %v", dir, err)
		}
		if len(all) != len(files) {
			t.Errorf("LoadAll(%s) = %d scenarios, want %d", dir, len(all), len(files))
		}
	}
}

func TestLoadExampleContent(t *testing.T) {
	s, err := Load("testdata/examples/01-default-deny-ingress.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"node-1", "node-2"}, s.Nodes); diff != "" {
		t.Errorf("Nodes (-want +got):\n%s", diff)
	}
	var got []string
	for _, o := range s.Objects {
		got = append(got, manifest.RefOf(o).String())
	}
	want := []string{"Node node-1", "Node node-2", "Namespace x", "Namespace y", "Pod x/a", "Pod x/b", "Pod y/a", "Pod y/b"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Objects (-want +got):\n%s", diff)
	}
	// Pods without nodeName go round-robin over the nodes.
	var nodes []string
	for _, o := range s.Objects {
		if p, ok := o.(*corev1.Pod); ok {
			nodes = append(nodes, p.Spec.NodeName)
		}
	}
	if diff := cmp.Diff([]string{"node-1", "node-2", "node-1", "node-2"}, nodes); diff != "" {
		t.Errorf("pod nodes (-want +got):\n%s", diff)
	}

	if len(s.Steps) != 6 {
		t.Fatalf("%d steps, want 6", len(s.Steps))
	}
	st := s.Steps[2]
	if st.Number != 3 || st.Line != 35 || st.Probe == nil {
		t.Fatalf("step 3 = %+v", st)
	}
	p := st.Probe
	if p.Line != 35 || p.Port != intstr.FromInt32(80) || p.Protocol != corev1.ProtocolTCP || p.Denied != DeniedAny || p.Family != "" {
		t.Errorf("probe = %+v", p)
	}
	if diff := cmp.Diff([]Pattern{AllPods()}, p.From); diff != "" {
		t.Errorf("From (-want +got):\n%s", diff)
	}
	wantExpect := []ExpectLine{
		{From: AllPods(), To: AllPods(), Allowed: true, Line: 38},
		{From: AllPods(), To: Pattern{Kind: KindPod, Namespace: "x", Name: "*"}, Line: 39},
	}
	if diff := cmp.Diff(wantExpect, p.Expect); diff != "" {
		t.Errorf("Expect (-want +got):\n%s", diff)
	}
	if s.Steps[3].Probe.Protocol != corev1.ProtocolUDP {
		t.Errorf("step 4 protocol = %s, want UDP", s.Steps[3].Probe.Protocol)
	}
	np, ok := s.Steps[1].Apply[0].(*networkingv1.NetworkPolicy)
	if !ok || np.Namespace != "x" || np.Name != "deny-ingress" {
		t.Errorf("step 2 apply = %#v", s.Steps[1].Apply)
	}
	if diff := cmp.Diff([]ObjectRef{{Kind: "NetworkPolicy", Namespace: "x", Name: "deny-ingress"}}, s.Steps[4].Delete); diff != "" {
		t.Errorf("step 5 delete (-want +got):\n%s", diff)
	}
}

func TestLoadTypes(t *testing.T) {
	s, err := Load("testdata/examples/04-admin-tiers.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, o := range s.Steps[0].Apply {
		kinds = append(kinds, manifest.KindOf(o))
		if gvk := o.GetObjectKind().GroupVersionKind(); gvk.Kind != manifest.KindOf(o) {
			t.Errorf("%s has TypeMeta %v", manifest.RefOf(o), gvk)
		}
	}
	want := []string{"AdminNetworkPolicy", "AdminNetworkPolicy", "NetworkPolicy", "BaselineAdminNetworkPolicy"}
	if diff := cmp.Diff(want, kinds); diff != "" {
		t.Errorf("kinds (-want +got):\n%s", diff)
	}
	anp := s.Steps[0].Apply[1].(*v1alpha1.AdminNetworkPolicy)
	if anp.Spec.Priority != 5 || anp.Spec.Ingress[0].Action != v1alpha1.AdminNetworkPolicyRuleActionPass {
		t.Errorf("pass-y-b = %+v", anp.Spec)
	}

	s, err = Load("testdata/examples/03-ipblock-except-externals.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Externals) != 1 || s.Externals[0].Name != "ext" || s.Externals[0].IPs[0].String() != "203.0.113.10" {
		t.Errorf("Externals = %+v", s.Externals)
	}
}

func TestLoadErrors(t *testing.T) {
	// Each bad file with the error it must give: file, line, step and what.
	tests := []struct {
		file string
		want []string
	}{
		{"alias-cycle.yaml", []string{"alias-cycle.yaml:3: alias *o refers to itself"}},
		{"bad-apiversion.yaml", []string{`bad-apiversion.yaml:4: unknown apiVersion "extensions/v1beta1" for NetworkPolicy (want networking.k8s.io/v1)`}},
		{"bad-denied.yaml", []string{`bad-denied.yaml:7: step 1: denied "reject" is not any or drop`}},
		{"bad-expect-arrow.yaml", []string{`bad-expect-arrow.yaml:11: step 1: expect "x/a => x/b: denied": want "<pattern> -> <pattern>: allowed|denied"`}},
		{"bad-family.yaml", []string{`bad-family.yaml:2: ipFamilies: "IPv5" is not IPv4 or IPv6`}},
		{"bad-pattern.yaml", []string{`bad-pattern.yaml:7: step 1: from: bad endpoint pattern "x/a*": * must stand for a whole pod name`}},
		{"bad-port.yaml", []string{
			"bad-port.yaml:6: step 1: port 70000: must be between 1 and 65535",
			`bad-port.yaml:9: step 2: port "80": must contain at least one letter`,
		}},
		{"bad-protocol.yaml", []string{`bad-protocol.yaml:7: step 1: protocol "ICMP" is not TCP, UDP or SCTP`}},
		{"bad-verdict.yaml", []string{`bad-verdict.yaml:8: step 1: expect "*/* -> */*: maybe": "maybe" is neither allowed nor denied`}},
		{"banp-name.yaml", []string{`banp-name.yaml:5: a BaselineAdminNetworkPolicy must be named "default", not "mine"`}},
		{"delete-cluster-ns.yaml", []string{"delete-cluster-ns.yaml:6: step 1: delete Namespace x: a Namespace has no namespace"}},
		{"delete-missing.yaml", []string{"delete-missing.yaml:13: step 3: delete: NetworkPolicy x/p does not exist"}},
		{"duplicate-key.yaml", []string{`duplicate-key.yaml:7: duplicate key "name" (first at line 6)`}},
		{"empty-step.yaml", []string{"empty-step.yaml:3: step 1: a step needs apply, delete, dns, wait or probe"}},
		{"external-ip.yaml", []string{"external-ip.yaml:3: external ext: 2001:db8::10 is IPv6, not in ipFamilies [IPv4]"}},
		{"merge-key.yaml", []string{"merge-key.yaml:4: merge keys (<<) exist only in YAML 1.1"}},
		{"missing-endpoint.yaml", []string{"missing-endpoint.yaml:12: step 2: to x/b: no such endpoint at this step"}},
		{"missing-expectation.yaml", []string{
			"missing-expectation.yaml:11: step 2: no expect line matches y/a -> x/a",
		}},
		{"missing-namespace.yaml", []string{`missing-namespace.yaml:7: step 1: NetworkPolicy z/p: namespace "z" does not exist`}},
		{"multi-doc.yaml", []string{"multi-doc.yaml:2: the file holds more than one YAML document"}},
		{"no-name.yaml", []string{"no-name.yaml:1: name is required"}},
		{"no-pairs.yaml", []string{"no-pairs.yaml:6: step 1: probe tests no pair"}},
		{"pod-ip-family.yaml", []string{"pod-ip-family.yaml:11: Pod x/a: 10.244.1.10 is IPv4, not in ipFamilies [IPv6]"}},
		{"pod-node-change.yaml", []string{"pod-node-change.yaml:8: step 1: Pod x/a: spec.nodeName cannot change from node-1 to node-2"}},
		{"probe-family.yaml", []string{`probe-family.yaml:7: step 1: family "IPv6" is not one of ipFamilies [IPv4]`}},
		{"reserved-namespace.yaml", []string{`reserved-namespace.yaml:3: no namespace may be named "external"`}},
		{"reserved-pod-namespace.yaml", []string{`reserved-pod-namespace.yaml:5: no namespace may be named "node"`}},
		{"svc-from.yaml", []string{"svc-from.yaml:8: step 1: from: svc/default/a is a Service target: Services are probed (to), they never send"}},
		{"svc-missing.yaml", []string{"svc-missing.yaml:7: step 1: to svc/default/a: no such endpoint at this step"}},
		{"svc-no-selector.yaml", []string{"svc-no-selector.yaml:6: Service default/a has no selector"}},
		{"svc-type.yaml", []string{`svc-type.yaml:7: Service default/a: type "LoadBalancer": the lab runs ClusterIP and NodePort Services`}},
		{"syntax-error.yaml", []string{"syntax-error.yaml:3: did not find expected ',' or '}'"}},
		{"unknown-field.yaml", []string{`unknown-field.yaml:10: Pod x/a: unknown field "spec.containers[0].portz"`}},
		{"unknown-key.yaml", []string{`unknown-key.yaml:3: unknown key "step" in a scenario`}},
		{"unknown-kind.yaml", []string{`unknown-kind.yaml:7: step 1: unknown kind "Foo"`}},
		{"unknown-node.yaml", []string{`unknown-node.yaml:4: Pod x/a: node "node-9" does not exist`}},
		{"wrong-type.yaml", []string{"wrong-type.yaml:7: Namespace x: json: cannot unmarshal number into Go struct field ObjectMeta.metadata.labels of type string"}},
		{"yaml11-bool.yaml", []string{`yaml11-bool.yaml:6: "y" reads as true in YAML 1.1 but as "y" in YAML 1.2; quote it`}},
	}
	files, _ := filepath.Glob("testdata/bad/*.yaml")
	if len(files) != len(tests) {
		t.Errorf("%d files in testdata/bad, %d tests: give every bad file a test", len(files), len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			dir := t.TempDir()
			data, err := os.ReadFile(filepath.Join("testdata/bad", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			// Load from a bare file name, so that messages start with it.
			path := filepath.Join(dir, tt.file)
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			err = parseFails(t, tt.file, data, tt.want)
			var e *Error
			if !errors.As(err, &e) || e.File != tt.file || e.Line == 0 {
				t.Errorf("error is not an *Error with file and line: %#v", err)
			}
			if _, err := Load(path); err == nil {
				t.Error("Load succeeded, want an error")
			}
		})
	}
}

func TestErrorsIs(t *testing.T) {
	data, err := os.ReadFile("testdata/bad/missing-expectation.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Parse("m.yaml", data)
	if !errors.Is(err, ErrNoExpectation) {
		t.Errorf("errors.Is(%v, ErrNoExpectation) = false", err)
	}
}

func TestLoadAll(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ok := "name: %s\nobjects:\n  - {apiVersion: v1, kind: Namespace, metadata: {name: x}}\n"
	write("b.yaml", strings.Replace(ok, "%s", "b", 1))
	write("a.yml", strings.Replace(ok, "%s", "a", 1))
	write("c.yaml", strings.Replace(ok, "%s", "a", 1)) // a's name again
	write("d.yaml", "name: [broken\n")
	write("notes.txt", "not a scenario")

	got, err := LoadAll(dir)
	var names []string
	for _, s := range got {
		names = append(names, s.Name+"@"+filepath.Base(s.File))
	}
	if diff := cmp.Diff([]string{"a@a.yml", "b@b.yaml"}, names); diff != "" {
		t.Errorf("scenarios (-want +got):\n%s", diff)
	}
	if err == nil || !strings.Contains(err.Error(), `c.yaml: name "a" is taken by`) || !strings.Contains(err.Error(), "d.yaml:2: did not find expected ',' or ']'") {
		t.Errorf("err = %v, want the duplicate name and the broken file", err)
	}

	// A file given twice, once through its directory, loads once.
	got, err = LoadAll(filepath.Join(dir, "b.yaml"), filepath.Join(dir, "b.yaml"))
	if err != nil || len(got) != 1 {
		t.Errorf("LoadAll(b, b) = %d scenarios, %v", len(got), err)
	}
	if _, err := LoadAll(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("LoadAll(missing) succeeded")
	}
}

// TestYAMLReadings loads files that only differ in how they spell values:
// the ones valid under both YAML 1.1 and 1.2 load; the others are refused.
func TestYAMLReadings(t *testing.T) {
	base := "name: %s\nobjects:\n  - {apiVersion: v1, kind: Namespace, metadata: {name: x, labels: {a: %s}}}\n"
	tests := []struct {
		name, label string
		ok          bool
	}{
		{"quoted-y", `"y"`, true},
		{"quoted-yes", `'yes'`, true},
		{"plain", `blue`, true},
		{"tagged-str", `!!str off`, true},
		{"y", `y`, false},
		{"yes", `yes`, false},
		{"on", `On`, false},
		{"off", `OFF`, false},
		{"no", `no`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := strings.Replace(strings.Replace(base, "%s", `"`+tt.name+`"`, 1), "%s", tt.label, 1)
			_, err := Parse("t.yaml", []byte(data))
			if (err == nil) != tt.ok {
				t.Errorf("Parse(%q) error = %v, want ok=%v", data, err, tt.ok)
			}
		})
	}

	// Scalars both versions read alike, and anchors.
	good := `name: "anchors"
nodes: [node-1, "node-2"]
objects:
  - &ns {apiVersion: v1, kind: Namespace, metadata: {name: x}}
  - apiVersion: v1
    kind: Pod
    metadata: {name: a, namespace: x, labels: {pod: a}}
    spec: &spec {containers: [{name: c, ports: [{name: http, containerPort: 0x50}]}]}
  - {apiVersion: v1, kind: Pod, metadata: {name: b, namespace: x}, spec: *spec}
steps:
  - probe:
      port: http
      expect:
        - x/a -> x/b: allowed
        - "x/b -> x/a": denied
`
	s, err := Parse("anchors.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	pod := s.Objects[len(s.Objects)-1].(*corev1.Pod)
	if got := pod.Spec.Containers[0].Ports[0].ContainerPort; got != 80 {
		t.Errorf("containerPort = %d, want 80", got)
	}
	want := []ExpectLine{
		{From: Pattern{Kind: KindPod, Namespace: "x", Name: "a"}, To: Pattern{Kind: KindPod, Namespace: "x", Name: "b"}, Allowed: true, Line: 14},
		{From: Pattern{Kind: KindPod, Namespace: "x", Name: "b"}, To: Pattern{Kind: KindPod, Namespace: "x", Name: "a"}, Allowed: false, Line: 15},
	}
	if diff := cmp.Diff(want, s.Steps[0].Probe.Expect); diff != "" {
		t.Errorf("unquoted expect lines (-want +got):\n%s", diff)
	}
}

func TestEmptyFile(t *testing.T) {
	for _, data := range []string{"", "\n", "# only a comment\n", "---\n", "[]\n"} {
		_, err := Parse("e.yaml", []byte(data))
		var e *Error
		if !errors.As(err, &e) || e.File != "e.yaml" || e.Line == 0 {
			t.Errorf("Parse(%q) = %v, want an error with file and line", data, err)
		}
	}
}

// parseFails parses data as file and checks that it fails with one error
// per line, each starting with its want; it returns the error.
func parseFails(t *testing.T, file string, data []byte, want []string) error {
	t.Helper()
	_, err := Parse(file, data)
	if err == nil {
		t.Fatal("Parse succeeded, want an error")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) {
		t.Errorf("got %d errors, want %d:\n%v", len(lines), len(want), err)
	}
	for i, w := range want {
		if i < len(lines) && !strings.HasPrefix(lines[i], w) {
			t.Errorf("error %d:\n got %s\nwant %s...", i, lines[i], w)
		}
	}
	return err
}
