package conntrack

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	ct "github.com/ti-mo/conntrack"
	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nftpolicy/nftpolicy/internal/compile"
	"github.com/nftpolicy/nftpolicy/internal/model"
	tu "github.com/nftpolicy/nftpolicy/internal/testutil"
)

var (
	client   = netip.MustParseAddr("10.244.1.10")
	server   = netip.MustParseAddr("10.244.1.20")
	db       = netip.MustParseAddr("10.244.1.30")
	other    = netip.MustParseAddr("10.244.2.10") // on n2
	node1    = netip.MustParseAddr("192.168.1.1")
	outside  = netip.MustParseAddr("203.0.113.5")
	outside2 = netip.MustParseAddr("198.51.100.7")
)

func k8sNode(name, addr string) *v1.Node {
	return &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Status:     v1.NodeStatus{Addresses: []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: addr}}},
	}
}

// testNode compiles n1 of a small cluster: the server accepts only the
// client, on TCP port 80, and may send nothing but to its own node (which
// NetworkPolicy always allows).
func testNode(t *testing.T) Node {
	t.Helper()
	c := model.NewCluster()
	for _, o := range []any{
		k8sNode("n1", node1.String()), k8sNode("n2", "192.168.1.2"),
		tu.Namespace("x", nil),
		tu.Pod("x", "client", "n1", map[string]string{"app": "client"}, []string{client.String()}),
		tu.Pod("x", "server", "n1", map[string]string{"app": "server"}, []string{server.String()}),
		tu.Pod("x", "db", "n1", map[string]string{"app": "db"}, []string{db.String()}),
		tu.Pod("x", "other", "n2", map[string]string{"app": "other"}, []string{other.String()}),
		tu.Policy("x", "server", map[string]string{"app": "server"},
			tu.Types(networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress),
			tu.Ingress([]networkingv1.NetworkPolicyPeer{tu.PodPeer(map[string]string{"app": "client"})}, tu.Port(v1.ProtocolTCP, 80, 0))),
	} {
		if err := c.Set(o); err != nil {
			t.Fatal(err)
		}
	}
	return NewNode(compile.Node(c, "n1"), map[netip.Addr]bool{node1: true}, map[netip.Addr]bool{client: true, server: true, db: true})
}

func tcp(src, dst netip.Addr, port uint16) Entry {
	return Entry{Proto: protoTCP, Src: src, Dst: dst, Port: port}
}

func TestDenies(t *testing.T) {
	n := testNode(t)
	for _, tc := range []struct {
		name string
		e    Entry
		want bool
	}{
		{"allowed by the server's ingress rule", tcp(client, server, 80), false},
		{"another port of the same peers", tcp(client, server, 81), true},
		{"another protocol on the allowed port", Entry{Proto: protoUDP, Src: client, Dst: server, Port: 80}, true},
		{"SCTP is judged too", Entry{Proto: protoSCTP, Src: client, Dst: server, Port: 80}, true},
		{"a pod of another node to the server", tcp(other, server, 80), true},
		{"an outside host to the server", tcp(outside, server, 80), true},
		{"the server's egress to another node's pod", tcp(server, other, 80), true},
		{"the server's egress to its own node (input hook)", tcp(server, node1, 10250), false},
		{"the node to the server (output hook)", tcp(node1, server, 80), false},
		{"a pod no policy isolates", tcp(client, db, 5432), false},
		{"the db's egress, not isolated", tcp(db, other, 80), false},
		{"ICMP is never cut", Entry{Proto: 1, Src: other, Dst: server}, false},
		{"no local pod: not traced", tcp(outside, outside2, 80), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := n.Denies(tc.e)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("Denies(%v) = %v, want %v", tc.e, got, tc.want)
			}
		})
	}
}

func strs(es []Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.String())
	}
	return out
}

func TestSelectPicksTheDeniedEntriesOnly(t *testing.T) {
	n := testNode(t)
	entries := []Entry{
		tcp(client, server, 80),
		tcp(client, server, 81),
		tcp(other, server, 80),
		tcp(client, db, 5432),
		{Proto: protoUDP, Src: client, Dst: server, Port: 53},
		tcp(outside, outside2, 443),
	}
	gone, err := Select(entries, n.Denies)
	if err != nil {
		t.Fatal(err)
	}
	want := []Entry{tcp(client, server, 81), tcp(other, server, 80), {Proto: protoUDP, Src: client, Dst: server, Port: 53}}
	if d := cmp.Diff(strs(want), strs(gone)); d != "" {
		t.Errorf("selected (-want +got):\n%s", d)
	}
}

func TestSelectKeepsWhatItCannotJudge(t *testing.T) {
	bad := errors.New("cannot judge")
	entries := []Entry{tcp(client, server, 1), tcp(client, server, 2), tcp(client, server, 3)}
	got, err := Select(entries, func(e Entry) (bool, error) {
		if e.Port == 2 {
			return true, bad
		}
		return e.Port == 3, nil
	})
	if !errors.Is(err, bad) {
		t.Errorf("err = %v, want one wrapping %v", err, bad)
	}
	if d := cmp.Diff([]string{tcp(client, server, 3).String()}, strs(got)); d != "" {
		t.Errorf("selected (-want +got):\n%s", d)
	}
}

// TestEntryOfReadsThePostDNATDestination: a connection to a Service address
// is judged by the endpoint it was DNATed to, as the filter hooks saw it.
func TestEntryOfReadsThePostDNATDestination(t *testing.T) {
	vip := netip.MustParseAddr("10.96.0.10")
	f := ct.NewFlow(protoTCP, 0, client, vip, 40000, 80, 120, 0)
	f.TupleReply.IP.SourceAddress = server
	f.TupleReply.Proto.SourcePort = 8080
	e := entryOfKey(flowKey{orig: f.TupleOrig, reply: f.TupleReply})
	if e.Src != client || e.Dst != server || e.Port != 8080 || e.Proto != protoTCP {
		t.Errorf("entryOfKey = %v, want 6 %s -> %s:8080", e, client, server)
	}
}
