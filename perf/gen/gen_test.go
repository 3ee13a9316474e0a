package gen

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/nftpolicy/nftpolicy/internal/compile"
	"github.com/nftpolicy/nftpolicy/internal/diff"
)

func TestSizes(t *testing.T) {
	sizes := []Size{S, M, L}
	if testing.Short() {
		sizes = sizes[:2]
	}
	for _, s := range sizes {
		t.Run(s.Name, func(t *testing.T) {
			c := Generate(s, 1)
			if got := len(c.Pods); got != s.Pods {
				t.Errorf("pods: got %d, want %d", got, s.Pods)
			}
			if got := len(c.Policies); got != s.Policies {
				t.Errorf("policies: got %d, want %d", got, s.Policies)
			}
			if got, want := len(c.Namespaces), s.Pods/PodsPerNamespace; got != want {
				t.Errorf("namespaces: got %d, want %d", got, want)
			}
			if got, want := len(c.Nodes), s.Pods/PodsPerNode; got != want {
				t.Errorf("nodes: got %d, want %d", got, want)
			}
			names, ips := map[string]bool{}, map[string]bool{}
			for _, p := range c.Pods {
				if names[p.Namespace+"/"+p.Name] || ips[p.Status.PodIP] {
					t.Fatalf("pod %s/%s or its address %s is not unique", p.Namespace, p.Name, p.Status.PodIP)
				}
				names[p.Namespace+"/"+p.Name], ips[p.Status.PodIP] = true, true
			}
			deny := map[string]bool{}
			for _, np := range c.Policies {
				if names[np.Namespace+"/"+np.Name] {
					t.Fatalf("policy %s/%s is not unique", np.Namespace, np.Name)
				}
				names[np.Namespace+"/"+np.Name] = true
				if np.Name == "default-deny" {
					deny[np.Namespace] = true
				}
			}
			for _, ns := range c.Namespaces {
				if !deny[ns.Name] {
					t.Errorf("namespace %s has no default-deny", ns.Name)
				}
			}
			if _, err := c.Model(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestDeterministic(t *testing.T) {
	a, b := Generate(S, 7), Generate(S, 7)
	if d := cmp.Diff(a.Objects(), b.Objects()); d != "" {
		t.Fatalf("same seed, different clusters (-a +b):\n%s", d)
	}
	if d := cmp.Diff(a.Events(NodeUnderTest, 3), b.Events(NodeUnderTest, 3)); d != "" {
		t.Fatalf("same seed, different events (-a +b):\n%s", d)
	}
	if cmp.Equal(a.Objects(), Generate(S, 8).Objects()) {
		t.Fatal("different seeds gave the same cluster")
	}
}

// TestFeatures checks that the policy features the issue names all occur.
func TestFeatures(t *testing.T) {
	c := Generate(S, 1)
	var except, nsSel, namedPort, portRange, egress int
	for _, np := range c.Policies {
		for _, tp := range np.Spec.PolicyTypes {
			if tp == "Egress" {
				egress++
			}
		}
		for _, r := range np.Spec.Ingress {
			for _, p := range r.From {
				if p.IPBlock != nil && len(p.IPBlock.Except) > 0 {
					except++
				}
				if p.NamespaceSelector != nil {
					nsSel++
				}
			}
			for _, p := range r.Ports {
				if p.Port != nil && p.Port.Type == intstr.String {
					namedPort++
				}
				if p.EndPort != nil {
					portRange++
				}
			}
		}
	}
	for what, n := range map[string]int{"ipBlock excepts": except, "namespace selectors": nsSel,
		"named ports": namedPort, "port ranges": portRange, "egress policies": egress} {
		if n == 0 {
			t.Errorf("no %s in the S cluster", what)
		}
	}
}

// TestEventsChangeTheNode checks that every event changes what the node
// under test enforces, so the suite never times an empty sync.
func TestEventsChangeTheNode(t *testing.T) {
	c := Generate(S, 1)
	mc, err := c.Model()
	if err != nil {
		t.Fatal(err)
	}
	events := c.Events(NodeUnderTest, 3)
	if got, want := len(events), 3*len(EventKinds()); got != want {
		t.Fatalf("got %d events, want %d", got, want)
	}
	before := compile.Node(mc, NodeUnderTest)
	for i, e := range events {
		if e.Op == Delete {
			kind, ns, name := e.ModelKey()
			err = mc.Delete(kind, ns, name)
		} else {
			err = mc.Set(e.Object)
		}
		if err != nil {
			t.Fatal(err)
		}
		after := compile.Node(mc, NodeUnderTest)
		if diff.Diff(before, after).Empty() {
			t.Errorf("event %d (%s) changes nothing on %s", i, e.Kind, NodeUnderTest)
		}
		before = after
	}
}

// TestNodeUnderTest: the constant is the first node's name, as the
// generator writes it.
func TestNodeUnderTest(t *testing.T) {
	if got := NodeName(0); got != NodeUnderTest {
		t.Errorf("NodeName(0) = %q, NodeUnderTest = %q", got, NodeUnderTest)
	}
}
