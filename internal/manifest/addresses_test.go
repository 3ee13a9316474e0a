package manifest

import (
	"io/fs"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// addressesOf returns each pod's and node's addresses, "ns/name" or
// "node/name" -> podIPs or InternalIPs.
func addressesOf(t *testing.T, c *Cluster, step int) map[string][]string {
	t.Helper()
	objs, err := c.ObjectsAt(step)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, o := range objs {
		switch o := o.(type) {
		case *corev1.Pod:
			for _, ip := range o.Status.PodIPs {
				got[o.Namespace+"/"+o.Name] = append(got[o.Namespace+"/"+o.Name], ip.IP)
			}
			if o.Status.PodIP != got[o.Namespace+"/"+o.Name][0] {
				t.Errorf("%s: podIP %s is not podIPs[0]", o.Name, o.Status.PodIP)
			}
		case *corev1.Node:
			for _, a := range o.Status.Addresses {
				got["node/"+o.Name] = append(got["node/"+o.Name], a.Address)
			}
		}
	}
	return got
}

func TestObjectsAtGivesTheLabsAddresses(t *testing.T) {
	c, err := LoadCluster("testdata/addresses.yaml")
	if err != nil {
		t.Fatal(err)
	}
	nodes := map[string][]string{
		"node/node-1": {"172.18.0.10", "fd00:ffff::10"},
		"node/node-2": {"172.18.0.11", "fd00:ffff::11"},
	}
	tests := []struct {
		step int
		want map[string][]string
	}{
		{1, map[string][]string{"x/a": {"10.244.1.102"}, "x/b": {"10.244.1.103"}, "x/fixed": {"10.244.1.7"}, "x/c": {"10.244.2.102"}}},
		// b is gone; d, added after it, gets the next host number.
		{0, map[string][]string{"x/a": {"10.244.1.102"}, "x/fixed": {"10.244.1.7"}, "x/c": {"10.244.2.102"}, "x/d": {"10.244.1.104"}}},
	}
	for _, tt := range tests {
		for k, v := range nodes {
			tt.want[k] = v
		}
		if diff := cmp.Diff(tt.want, addressesOf(t, c, tt.step)); diff != "" {
			t.Errorf("after step %d (-want +got):\n%s", tt.step, diff)
		}
	}
}

func TestObjectsAtDualStackAndHostNetwork(t *testing.T) {
	c, err := ParseCluster("ds.yaml", []byte(`name: ds
ipFamilies: [IPv6, IPv4]
nodes: [n1]
objects:
  - apiVersion: v1
    kind: Node
    metadata: {name: n2}
    status: {addresses: [{type: InternalIP, address: 172.18.0.10}]}
  - {apiVersion: v1, kind: Namespace, metadata: {name: x}}
  - {apiVersion: v1, kind: Pod, metadata: {name: p, namespace: x}, spec: {containers: [{name: c}]}}
  - {apiVersion: v1, kind: Pod, metadata: {name: q, namespace: x}, spec: {containers: [{name: c}]}}
  - {apiVersion: v1, kind: Pod, metadata: {name: h, namespace: x}, spec: {nodeName: n2, hostNetwork: true, containers: [{name: c}]}}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		// n2 fixes 172.18.0.10: n1, given addresses first, skips it.
		"node/n1": {"172.18.0.11", "fd00:ffff::10"},
		"node/n2": {"172.18.0.10"},
		// Placed round-robin: p on n1, q on n2; families in ipFamilies order.
		"x/p": {"fd00:10:244:1::65", "10.244.1.102"},
		"x/q": {"fd00:10:244:2::65", "10.244.2.102"},
		"x/h": {"172.18.0.10"},
	}
	if diff := cmp.Diff(want, addressesOf(t, c, 0)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestScenarioPodsLieInTheirNodesPodCIDRs: the class of pods not yet known
// denies an address of a node's pod CIDRs that no pod of the node has, so
// the lab must place every pod, given an address by the file or not, in
// its own node's pod CIDRs and in no other node's, as IPAM does. Checked
// after every step of every scenario file of the repository.
func TestScenarioPodsLieInTheirNodesPodCIDRs(t *testing.T) {
	var files []string
	err := filepath.WalkDir("../../test/scenarios", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".yaml") {
			files = append(files, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 100 {
		t.Fatalf("found %d scenario files; want the repository's (> 100)", len(files))
	}
	pods := 0
	for _, f := range files {
		c, err := LoadCluster(f)
		if err != nil {
			continue // files that must not load are the loader tests' business
		}
		for step := 0; step <= len(c.Steps); step++ {
			// A file with clusters: every cluster's pods against every
			// cluster's nodes (one flat network), node names qualified.
			var objs []runtime.Object
			for _, m := range append([]*Cluster{c}, c.Members...) {
				mobjs, err := m.ObjectsAt(step)
				if err != nil {
					continue
				}
				for _, o := range mobjs {
					o = o.DeepCopyObject()
					if n, ok := o.(*corev1.Node); ok && m != c {
						n.Name = m.Name + "/" + n.Name
					}
					if p, ok := o.(*corev1.Pod); ok && m != c {
						p.Spec.NodeName = m.Name + "/" + p.Spec.NodeName
					}
					objs = append(objs, o)
				}
			}
			cidrs := map[string][]netip.Prefix{}
			for _, o := range objs {
				if n, ok := o.(*corev1.Node); ok {
					for _, s := range n.Spec.PodCIDRs {
						cidrs[n.Name] = append(cidrs[n.Name], netip.MustParsePrefix(s))
					}
				}
			}
			for _, o := range objs {
				p, ok := o.(*corev1.Pod)
				if !ok || p.Spec.HostNetwork {
					continue
				}
				pods++
				for _, ip := range PodIPs(p) {
					for node, ps := range cidrs {
						in := slices.ContainsFunc(ps, func(pr netip.Prefix) bool { return pr.Contains(ip) })
						if in != (node == p.Spec.NodeName) {
							t.Errorf("%s step %d: pod %s/%s on %s has %s; in %s's pod CIDRs %v: %v", f, step, p.Namespace, p.Name, p.Spec.NodeName, ip, node, ps, in)
						}
					}
				}
			}
		}
	}
	t.Logf("%d files, %d pod placements checked", len(files), pods)
}
