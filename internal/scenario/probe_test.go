package scenario

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func patterns(t testing.TB, ss ...string) []Pattern {
	var out []Pattern
	for _, s := range ss {
		out = append(out, mustPattern(t, s))
	}
	return out
}

func expectLines(t testing.TB, ss ...string) []ExpectLine {
	var out []ExpectLine
	for i, s := range ss {
		e, err := ParseExpectLine(s)
		if err != nil {
			t.Fatal(err)
		}
		e.Line = 100 + i
		out = append(out, e)
	}
	return out
}

func pairStrings(pairs []Pair) []string {
	var out []string
	for _, p := range pairs {
		out = append(out, p.String())
	}
	return out
}

func TestPairs(t *testing.T) {
	available := []Endpoint{
		PodEndpoint("x", "a"), PodEndpoint("x", "b"), PodEndpoint("y", "a"),
		NodeEndpoint("node-1"), ExternalEndpoint("ext"),
	}
	tests := []struct {
		name     string
		from, to []string
		want     []string
		wantErr  string
	}{{
		name: "defaults: every pod to every pod, never itself, no nodes or externals",
		want: []string{
			"x/a -> x/b", "x/a -> y/a",
			"x/b -> x/a", "x/b -> y/a",
			"y/a -> x/a", "y/a -> x/b",
		},
	}, {
		name: "a literal on one side only does not probe itself",
		from: []string{"x/a"},
		want: []string{"x/a -> x/b", "x/a -> y/a"},
	}, {
		name: "a wildcard on the other side does not probe itself either",
		from: []string{"x/a"}, to: []string{"x/*"},
		want: []string{"x/a -> x/b"},
	}, {
		name: "literal in both probes itself",
		from: []string{"x/a"}, to: []string{"x/a", "x/b"},
		want: []string{"x/a -> x/a", "x/a -> x/b"},
	}, {
		name: "node literal in both",
		from: []string{"node/node-1"}, to: []string{"node/node-1"},
		want: []string{"node/node-1 -> node/node-1"},
	}, {
		name: "externals and nodes only through their patterns",
		from: []string{"external/*", "node/*"}, to: []string{"y/*"},
		want: []string{"node/node-1 -> y/a", "external/ext -> y/a"},
	}, {
		name: "overlapping patterns give each pair once",
		from: []string{"x/*", "*/*", "x/a"}, to: []string{"external/ext", "external/*"},
		want: []string{"x/a -> external/ext", "x/b -> external/ext", "y/a -> external/ext"},
	}, {
		name: "a wildcard matching nothing is no error",
		from: []string{"z/*"},
	}, {
		name: "a literal that does not exist is an error",
		from: []string{"x/a", "x/zz"}, to: []string{"node/node-2"},
		wantErr: "line 7: step 3: from x/zz: no such endpoint at this step\nline 7: step 3: to node/node-2: no such endpoint at this step",
	}, {
		name:    "a hostNetwork pod is not a pod endpoint",
		to:      []string{"x/host"},
		wantErr: "to x/host: no such endpoint",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &Probe{Line: 7, step: 3, From: patterns(t, tt.from...), To: patterns(t, tt.to...)}
			got, err := p.Pairs(available)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrNoEndpoint) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, pairStrings(got)); diff != "" {
				t.Errorf("pairs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestExpected(t *testing.T) {
	p := &Probe{Line: 20, file: "f.yaml", step: 2, Expect: expectLines(t,
		"*/* -> */*: allowed",
		"*/* -> x/*: denied",
		"x/b -> x/a: allowed",
		"external/* -> x/a: denied",
	)}
	tests := []struct {
		pair    Pair
		allowed bool
		line    int
	}{
		{Pair{PodEndpoint("y", "a"), PodEndpoint("y", "b")}, true, 100},
		{Pair{PodEndpoint("y", "a"), PodEndpoint("x", "a")}, false, 101},
		{Pair{PodEndpoint("x", "b"), PodEndpoint("x", "a")}, true, 102}, // last line wins
		{Pair{PodEndpoint("x", "a"), PodEndpoint("x", "b")}, false, 101},
		{Pair{ExternalEndpoint("e"), PodEndpoint("x", "a")}, false, 103},
	}
	for _, tt := range tests {
		allowed, line, err := p.Expected(tt.pair)
		if err != nil || allowed != tt.allowed || line != tt.line {
			t.Errorf("Expected(%s) = %v, %d, %v; want %v, %d", tt.pair, allowed, line, err, tt.allowed, tt.line)
		}
	}

	// */* covers pods only: an external to a pod outside x has no line.
	_, _, err := p.Expected(Pair{ExternalEndpoint("e"), PodEndpoint("y", "a")})
	const want = "f.yaml:20: step 2: no expect line matches external/e -> y/a"
	if err == nil || err.Error() != want || !errors.Is(err, ErrNoExpectation) {
		t.Errorf("err = %v, want %q", err, want)
	}
}

func TestParseExpectLine(t *testing.T) {
	good := map[string]string{
		"*/* -> */*: allowed":                  "*/* -> */*: allowed",
		"x/a->y/b:denied":                      "x/a -> y/b: denied",
		"  external/e  ->  node/n :  allowed ": "external/e -> node/n: allowed",
	}
	for in, want := range good {
		e, err := ParseExpectLine(in)
		if err != nil || e.String() != want {
			t.Errorf("ParseExpectLine(%q) = %v, %v; want %s", in, e, err, want)
		}
	}
	bad := map[string]string{
		"x/a -> y/b":                "want \"<pattern> -> <pattern>: allowed|denied\"",
		"x/a -> y/b: Allowed":       `"Allowed" is neither allowed nor denied`,
		"x/a -> y/b: ":              `"" is neither`,
		"x/a y/b: allowed":          "want \"<pattern>",
		"x/a -> y/b -> z/c: denied": "want \"<pattern>",
		"x/a -> y*/b: denied":       "* must stand for a whole namespace",
		"x -> y/b: denied":          "want NAMESPACE/POD",
	}
	for in, want := range bad {
		_, err := ParseExpectLine(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseExpectLine(%q) = %v, want %q", in, err, want)
		}
	}
}

func TestPlan(t *testing.T) {
	available := []Endpoint{PodEndpoint("x", "a"), PodEndpoint("x", "b")}
	p := &Probe{Denied: DeniedDrop, Expect: expectLines(t, "*/* -> */*: allowed", "x/a -> x/b: denied")}
	got, err := p.Plan(available)
	if err != nil {
		t.Fatal(err)
	}
	want := []Result{
		{From: PodEndpoint("x", "a"), To: PodEndpoint("x", "b"), Want: Outcome{Verdict: Denied, Detail: DetailTimeout}, Line: 101},
		{From: PodEndpoint("x", "b"), To: PodEndpoint("x", "a"), Want: Outcome{Verdict: Allowed}, Line: 100},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Plan (-want +got):\n%s", diff)
	}
	p.Denied = DeniedAny
	if got, _ := p.Plan(available); got[0].Want != (Outcome{Verdict: Denied}) {
		t.Errorf("Want with denied: any = %v", got[0].Want)
	}
	p.Expect = p.Expect[1:]
	if _, err := p.Plan(available); !errors.Is(err, ErrNoExpectation) {
		t.Errorf("Plan without a line for x/b -> x/a = %v", err)
	}
}

func TestResolvePort(t *testing.T) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "a"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{
			{Name: "c1", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}},
			{Name: "c2", Ports: []corev1.ContainerPort{{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP}}},
		}},
	}
	tests := []struct {
		pod   *corev1.Pod
		port  intstr.IntOrString
		proto corev1.Protocol
		want  int32
		ok    bool
	}{
		{pod, intstr.FromInt32(81), corev1.ProtocolTCP, 81, true},
		{pod, intstr.FromString("http"), corev1.ProtocolTCP, 8080, true},
		{pod, intstr.FromString("http"), corev1.ProtocolUDP, 0, false},
		{pod, intstr.FromString("dns"), corev1.ProtocolUDP, 53, true},
		{pod, intstr.FromString("dns"), corev1.ProtocolTCP, 0, false},
		{pod, intstr.FromString("nope"), corev1.ProtocolTCP, 0, false},
		{nil, intstr.FromInt32(80), corev1.ProtocolTCP, 80, true},
		{nil, intstr.FromString("http"), corev1.ProtocolTCP, 0, false},
	}
	for _, tt := range tests {
		got, ok := ResolvePort(tt.pod, tt.port, tt.proto)
		if got != tt.want || ok != tt.ok {
			t.Errorf("ResolvePort(%s/%s) = %d, %v; want %d, %v", tt.port.String(), tt.proto, got, ok, tt.want, tt.ok)
		}
	}
}

func TestProbeFamiliesAndPorts(t *testing.T) {
	s, err := Load("testdata/examples/06-dual-stack.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.ProbeFamilies(s.Steps[0].Probe); !cmp.Equal(got, []Family{IPv4}) {
		t.Errorf("ProbeFamilies(family: IPv4) = %v", got)
	}
	p := *s.Steps[0].Probe
	p.Family = ""
	if got := s.ProbeFamilies(&p); !cmp.Equal(got, []Family{IPv4, IPv6}) {
		t.Errorf("ProbeFamilies(no family) = %v", got)
	}

	s, err = Load("testdata/examples/02-egress-named-port.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := []PortProtocol{{80, corev1.ProtocolTCP}, {7070, corev1.ProtocolUDP}}
	if diff := cmp.Diff(want, s.ProbedPorts()); diff != "" {
		t.Errorf("ProbedPorts (-want +got):\n%s", diff)
	}
}
