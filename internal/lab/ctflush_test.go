package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/nftpolicy/nftpolicy/internal/agent"
	"github.com/nftpolicy/nftpolicy/internal/conntrack"
	"github.com/nftpolicy/nftpolicy/internal/lab/netlab"
	"github.com/nftpolicy/nftpolicy/internal/netns"
	"github.com/nftpolicy/nftpolicy/internal/nft"
	tu "github.com/nftpolicy/nftpolicy/internal/testutil"
)

// TestDeniedConnectionsAreCut: a long-lived TCP connection and a UDP flow
// exchanging data every 100 ms between x/c1 (node n1) and x/s1 (node n2)
// stop within a second of a policy that denies s1 everything, while a
// long-lived TCP connection between x/c2 and x/s2 keeps flowing across the
// same change.
func TestDeniedConnectionsAreCut(t *testing.T) {
	f := startCutLab(t, true)
	f.denyS1(t)
	stopped := f.observeAfterDeny(t)
	for _, fl := range []*flow{f.deniedTCP, f.deniedUDP} {
		if got := stopped[fl]; got != 0 {
			t.Errorf("%s: %d replies more than a second after the deny, want none (agent stats %+v)", fl.name, got, f.agents["n2"].Stats())
		}
	}
	if got := stopped[f.allowedTCP]; got < 5 {
		t.Errorf("%s: %d replies in the 1.5 s after the first second, want it to keep flowing (≥ 5)", f.allowedTCP.name, got)
	}
	if s := f.agents["n2"].Stats(); s.FlowsCut != 2 {
		t.Errorf("n2 cut %d entries, want 2 (the TCP connection and the UDP flow of x/c1 and x/s1)", s.FlowsCut)
	}
	if s := f.agents["n1"].Stats(); s.FlowsCut != 0 {
		t.Errorf("n1 cut %d entries, want 0 (its pods' policies did not change)", s.FlowsCut)
	}
}

// TestWithoutCutDeniedConnectionsLiveOn is the same change with cutting
// off (--cut-denied-flows=false): `ct state established accept` keeps the
// denied connection alive, so the test above would fail without the cut.
func TestWithoutCutDeniedConnectionsLiveOn(t *testing.T) {
	f := startCutLab(t, false)
	f.denyS1(t)
	after := f.observeAfterDeny(t)
	for _, fl := range []*flow{f.deniedTCP, f.deniedUDP, f.allowedTCP} {
		if got := after[fl]; got < 5 {
			t.Errorf("%s: %d replies in the 1.5 s after the first second, want it to keep flowing without the cut (≥ 5)", fl.name, got)
		}
	}
	// A new connection is denied all the same: the policy is in force.
	if o := f.net.Probe(context.Background(), "x/c1", "x/s1", 4, "TCP", 80, time.Second); o.Verdict != netlab.Denied {
		t.Errorf("new connection x/c1 -> x/s1: %v, want denied", o)
	}
}

type cutLab struct {
	net        *netlab.Lab
	client     *fake.Clientset
	agents     map[string]*agent.Agent
	objects    map[string]runtime.Object
	rv         int
	deniedTCP  *flow
	deniedUDP  *flow
	allowedTCP *flow
}

var cutPods = []struct{ name, node, ip string }{
	{"c1", "n1", "10.244.1.10"},
	{"c2", "n1", "10.244.1.11"},
	{"s1", "n2", "10.244.2.10"},
	{"s2", "n2", "10.244.2.11"},
}

// startCutLab builds two nodes and four pods, starts an agent per node
// (cutting denied connections when cut), and starts the three flows.
func startCutLab(t *testing.T, cut bool) *cutLab {
	tu.NeedKernel(t)
	f := &cutLab{net: netlab.New(""), client: fake.NewClientset(), agents: map[string]*agent.Agent{}, objects: map[string]runtime.Object{}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		if err := f.net.Close(); err != nil {
			t.Error(err)
		}
	})
	f.create(t, tu.Namespace("x", nil))
	for _, n := range []string{"n1", "n2"} {
		if err := f.net.AddNode(n, nil); err != nil {
			t.Fatal(err)
		}
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}
		for _, a := range f.net.Addrs("node/" + n) {
			node.Status.Addresses = append(node.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a.String()})
		}
		f.create(t, node)
	}
	for _, p := range cutPods {
		if err := f.net.AddPod("x/"+p.name, p.node, []netip.Addr{netip.MustParseAddr(p.ip)}); err != nil {
			t.Fatal(err)
		}
		f.create(t, tu.Pod("x", p.name, p.node, map[string]string{"app": p.name}, []string{p.ip}))
	}
	if err := f.net.Listen("x/s1", "TCP", 80); err != nil { // for the probe of a new connection
		t.Fatal(err)
	}
	for _, n := range []string{"n1", "n2"} {
		fd, err := os.Open(f.net.NodeNetNSPath(n))
		if err != nil {
			t.Fatal(err)
		}
		cfg := agent.Config{NodeName: n, Kernel: nft.NewNetlink(int(fd.Fd())), ResyncInterval: time.Hour}
		if cut {
			cfg.Conntrack = conntrack.NewNetlink(int(fd.Fd()))
		}
		a := agent.New(cfg, f.client)
		f.agents[n] = a
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer fd.Close()
			if err := a.Run(ctx); err != nil && ctx.Err() == nil {
				t.Errorf("agent on %s: %v", n, err)
			}
		}()
	}
	f.barrier(t)
	f.deniedTCP = f.startFlow(t, ctx, &wg, "tcp x/c1 -> x/s1", "x/c1", "x/s1", "tcp", 9000)
	f.deniedUDP = f.startFlow(t, ctx, &wg, "udp x/c1 -> x/s1", "x/c1", "x/s1", "udp", 9001)
	f.allowedTCP = f.startFlow(t, ctx, &wg, "tcp x/c2 -> x/s2", "x/c2", "x/s2", "tcp", 9000)
	deadline := time.Now().Add(5 * time.Second)
	for _, fl := range []*flow{f.deniedTCP, f.deniedUDP, f.allowedTCP} {
		for fl.replies.Load() < 3 {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d replies before any policy, want it flowing", fl.name, fl.replies.Load())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return f
}

func (f *cutLab) create(t *testing.T, obj runtime.Object) {
	t.Helper()
	f.rv++
	obj.(metav1.Object).SetResourceVersion(strconv.Itoa(f.rv))
	ctx := context.Background()
	var err error
	switch o := obj.(type) {
	case *corev1.Namespace:
		_, err = f.client.CoreV1().Namespaces().Create(ctx, o, metav1.CreateOptions{})
	case *corev1.Node:
		_, err = f.client.CoreV1().Nodes().Create(ctx, o, metav1.CreateOptions{})
	case *corev1.Pod:
		_, err = f.client.CoreV1().Pods(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
	case *networkingv1.NetworkPolicy:
		_, err = f.client.NetworkingV1().NetworkPolicies(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
	default:
		err = fmt.Errorf("kind %T", obj)
	}
	if err != nil {
		t.Fatal(err)
	}
	f.objects[agent.ObjectKey(obj)] = obj
}

// barrier waits until every agent has applied exactly f's objects.
func (f *cutLab) barrier(t *testing.T) {
	t.Helper()
	want := map[string]string{}
	for k, o := range f.objects {
		want[k] = o.(metav1.Object).GetResourceVersion()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for n, a := range f.agents {
		if err := a.WaitApplied(ctx, want); err != nil {
			t.Fatalf("%s: %v", n, err)
		}
	}
}

// denyS1 isolates x/s1 in both directions with no rule: nothing may reach
// it or leave it. (Both directions: with only ingress denied, a packet of
// s1's, say a TCP retransmission, could start a new entry in the other
// direction and carry the connection on; see docs/windows.md.)
func (f *cutLab) denyS1(t *testing.T) {
	f.create(t, tu.Policy("x", "deny-s1", map[string]string{"app": "s1"},
		tu.Types(networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress)))
	f.barrier(t)
}

// observeAfterDeny waits a second after the deny was applied, then counts
// each flow's replies over the next 1.5 s.
func (f *cutLab) observeAfterDeny(t *testing.T) map[*flow]int64 {
	time.Sleep(time.Second)
	flows := []*flow{f.deniedTCP, f.deniedUDP, f.allowedTCP}
	before := map[*flow]int64{}
	for _, fl := range flows {
		before[fl] = fl.replies.Load()
	}
	time.Sleep(1500 * time.Millisecond)
	out := map[*flow]int64{}
	for _, fl := range flows {
		out[fl] = fl.replies.Load() - before[fl]
	}
	return out
}

// flow is one long-lived exchange: the client writes every 100 ms, the
// server echoes, and replies counts what came back. The client never
// reconnects: a flow that goes on is the same connection.
type flow struct {
	name    string
	replies atomic.Int64
}

func (f *cutLab) startFlow(t *testing.T, ctx context.Context, wg *sync.WaitGroup, name, from, to, proto string, port uint16) *flow {
	t.Helper()
	dst := netip.AddrPortFrom(f.net.Addrs(to)[0], port)
	var srv, cli interface{ Close() error }
	err := netns.DoPath(f.net.NetNSPath(to), func() (err error) {
		if proto == "tcp" {
			srv, err = net.Listen("tcp", dst.String())
		} else {
			srv, err = net.ListenPacket("udp", dst.String())
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	err = netns.DoPath(f.net.NetNSPath(from), func() (err error) {
		cli, err = net.DialTimeout(proto, dst.String(), 2*time.Second)
		return err
	})
	if err != nil {
		_ = srv.Close()
		t.Fatal(err)
	}
	fl := &flow{name: name}
	conn := cli.(net.Conn)
	go func() { <-ctx.Done(); _ = srv.Close(); _ = conn.Close() }()
	wg.Add(3)
	go func() { defer wg.Done(); echo(ctx, srv) }()
	go func() { // writer
		defer wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
				_, _ = conn.Write([]byte("ping"))
			}
		}
	}()
	go func() { // reader
		defer wg.Done()
		buf := make([]byte, 64)
		for {
			n, err := conn.Read(buf)
			if n > 0 {
				fl.replies.Add(1)
			}
			if err != nil && (ctx.Err() != nil || !errors.Is(err, unix.ECONNREFUSED)) {
				return
			}
		}
	}()
	return fl
}

// echo serves a TCP listener (one connection) or a UDP socket, sending
// back whatever arrives, until ctx is done.
func echo(ctx context.Context, srv any) {
	switch s := srv.(type) {
	case net.Listener:
		c, err := s.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		// The connection may be cut: its peer's FIN never arrives.
		go func() { <-ctx.Done(); _ = c.Close() }()
		buf := make([]byte, 64)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
		}
	case net.PacketConn:
		buf := make([]byte, 64)
		for {
			n, addr, err := s.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = s.WriteTo(buf[:n], addr)
		}
	}
}
