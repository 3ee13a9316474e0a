package scenario

import (
	"errors"
	"strings"
	"testing"
)

func mustPattern(t testing.TB, s string) Pattern {
	t.Helper()
	p, err := ParsePattern(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParsePattern(t *testing.T) {
	good := []struct {
		in   string
		want Pattern
	}{
		{"*/*", Pattern{Kind: KindPod, Namespace: "*", Name: "*"}},
		{"x/*", Pattern{Kind: KindPod, Namespace: "x", Name: "*"}},
		{"*/a", Pattern{Kind: KindPod, Namespace: "*", Name: "a"}},
		{"x/a", Pattern{Kind: KindPod, Namespace: "x", Name: "a"}},
		{"x/web-0.svc", Pattern{Kind: KindPod, Namespace: "x", Name: "web-0.svc"}},
		{"external/ext", Pattern{Kind: KindExternal, Namespace: "", Name: "ext"}},
		{"external/*", Pattern{Kind: KindExternal, Namespace: "", Name: "*"}},
		{"node/node-1", Pattern{Kind: KindNode, Namespace: "", Name: "node-1"}},
		{"node/*", Pattern{Kind: KindNode, Namespace: "", Name: "*"}},
		{"svc/x/web", Pattern{Kind: KindService, Namespace: "x", Name: "web"}},
		{"svc/*/*", Pattern{Kind: KindService, Namespace: "*", Name: "*"}},
		{"nodeport/node-1/x/web", Pattern{Kind: KindNodePort, Node: "node-1", Namespace: "x", Name: "web"}},
		{"nodeport/*/x/*", Pattern{Kind: KindNodePort, Node: "*", Namespace: "x", Name: "*"}},
	}
	for _, tt := range good {
		got, err := ParsePattern(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParsePattern(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
		if got.String() != tt.in {
			t.Errorf("ParsePattern(%q).String() = %q", tt.in, got.String())
		}
	}
	bad := []struct{ in, want string }{
		{"", "want NAMESPACE/POD"},
		{"x", "want NAMESPACE/POD"},
		{"x/a/b", "want NAMESPACE/POD"},
		{"x/a*", "* must stand for a whole pod name"},
		{"*x/a", "* must stand for a whole namespace"},
		{"external/e*", "* must stand for a whole external name"},
		{"node/**", "* must stand for a whole node name"},
		{"X/a", "namespace \"X\""},
		{"svc/x", "want NAMESPACE/POD"},
		{"svc/x/a/b", "want NAMESPACE/POD"},
		{"nodeport/n/x", "want NAMESPACE/POD"},
		{"svc/x/web.a", "service name"},
		{"nodeport/n*/x/a", "* must stand for a whole node name"},
		{"x/", "pod name \"\""},
		{"/a", "namespace \"\""},
		{"x /a", "namespace \"x \""},
		{"external/", "external name \"\""},
		{"node/", "node name \"\""},
		{"external/a:b", "external name \"a:b\""},
	}
	for _, tt := range bad {
		_, err := ParsePattern(tt.in)
		if !errors.Is(err, ErrPattern) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParsePattern(%q) = %v, want an ErrPattern with %q", tt.in, err, tt.want)
		}
	}
}

func TestPatternMatches(t *testing.T) {
	pod, otherNS, otherPod := PodEndpoint("x", "a"), PodEndpoint("y", "a"), PodEndpoint("x", "b")
	ext, ext2 := ExternalEndpoint("ext"), ExternalEndpoint("ext2")
	node := NodeEndpoint("node-1")
	all := []Endpoint{pod, otherNS, otherPod, ext, ext2, node}
	tests := []struct {
		pattern string
		match   []Endpoint
	}{
		// Pod patterns match pods only: never externals or nodes (and
		// hostNetwork pods are node endpoints, so never them either).
		{"*/*", []Endpoint{pod, otherNS, otherPod}},
		{"x/*", []Endpoint{pod, otherPod}},
		{"*/a", []Endpoint{pod, otherNS}},
		{"x/a", []Endpoint{pod}},
		{"z/*", nil},
		{"external/*", []Endpoint{ext, ext2}},
		{"external/ext", []Endpoint{ext}},
		{"node/*", []Endpoint{node}},
		{"node/node-1", []Endpoint{node}},
		{"node/node-2", nil},
	}
	for _, tt := range tests {
		p := mustPattern(t, tt.pattern)
		for _, e := range all {
			want := false
			for _, m := range tt.match {
				want = want || m == e
			}
			if got := p.Matches(e); got != want {
				t.Errorf("%s matches %s = %v, want %v", tt.pattern, e, got, want)
			}
		}
	}
}

func TestPatternLiteral(t *testing.T) {
	for s, want := range map[string]bool{
		"x/a": true, "external/e": true, "node/n": true,
		"*/*": false, "x/*": false, "*/a": false, "external/*": false, "node/*": false,
	} {
		p := mustPattern(t, s)
		if p.Literal() != want {
			t.Errorf("%s.Literal() = %v, want %v", s, p.Literal(), want)
		}
		ep, ok := p.Endpoint()
		if ok != want || (ok && ep.String() != s) {
			t.Errorf("%s.Endpoint() = %v, %v", s, ep, ok)
		}
	}
}

func TestEndpointText(t *testing.T) {
	for _, e := range []Endpoint{PodEndpoint("x", "a"), ExternalEndpoint("ext"), NodeEndpoint("node-1")} {
		b, _ := e.MarshalText()
		var back Endpoint
		if err := back.UnmarshalText(b); err != nil || back != e {
			t.Errorf("round trip of %s = %v, %v", e, back, err)
		}
	}
	var e Endpoint
	if err := e.UnmarshalText([]byte("x/*")); err == nil {
		t.Error("UnmarshalText(x/*) succeeded")
	}
}
