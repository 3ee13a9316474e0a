package integration

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nftpolicy/nftpolicy/internal/lab/netlab"
)

// TestRemoteCluster: the agent binary with --cluster-id and
// --remote-kubeconfig, reading a second real API server (cluster-two) with
// deploy/30-clusterset-reader.yaml's account, admits cluster-two's pod that
// its policy names by cluster and namespace and not a local one; while
// cluster-two's API server is down nftpolicy_remote_cluster_up says so and
// not one probe changes (its last known pod stays admitted); when it is
// back the metric says that too.
func TestRemoteCluster(t *testing.T) {
	w := newWorld(t, 1, time.Minute)
	ctx := context.Background()
	two, err := NewLabEnv(ctx, os.Stderr, "../../deploy")
	if err != nil {
		t.Fatal(err)
	}
	defer two.Close()
	reader := filepath.Join(two.Dir, "reader.kubeconfig")
	if _, err := two.Cluster.ServiceAccountKubeconfig(ctx, "kube-system", "nftpolicy-clusterset-reader", reader); err != nil {
		t.Fatal(err)
	}
	// cluster-two's pod: in its API server (namespace beta, on its node
	// n1) and in the lab, on a lab node of its own on the flat network.
	if err := w.lab.AddNode("two-n1", nil); err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr(fmt.Sprintf("10.%d.9.10", w.net))
	if err := w.lab.AddPod(w.ns+"/remote", "two-n1", []netip.Addr{ip}); err != nil {
		t.Fatal(err)
	}
	if _, err := two.Cluster.Admin.CoreV1().Namespaces().Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "beta"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := CreatePod(ctx, two.Cluster.Admin, &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "beta", Name: "client"},
		Spec:       v1.PodSpec{NodeName: "n1", Containers: []v1.Container{{Name: "c"}}},
		Status:     v1.PodStatus{PodIP: ip.String(), PodIPs: []v1.PodIP{{IP: ip.String()}}},
	}); err != nil {
		t.Fatal(err)
	}
	n := w.nodes[0]
	w.rolePods(n, "server", "client")
	if _, err := w.c.Admin.NetworkingV1().NetworkPolicies(w.ns).Create(ctx, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "from-two-beta"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "server"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"cluster.clusterset.k8s.io": "cluster-two", "kubernetes.io/metadata.name": "beta"}},
			}}}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	a := w.startAgentWith(n, "--cluster-id=cluster-one", "--remote-kubeconfig=cluster-two="+reader, "--remote-check-interval=1s")
	want := map[flow]netlab.Verdict{{"remote", "server"}: allowed, {"client", "server"}: denied}
	w.expect(10*time.Second, want)
	up := `nftpolicy_remote_cluster_up{cluster="cluster-two"}`
	waitMetric := func(v float64, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for scrape(t, a)[up] != v {
			if time.Now().After(deadline) {
				t.Fatalf("%s did not become %v within %v%s", up, v, within, w.agentLogs())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitMetric(1, 10*time.Second)
	w.probeAcross(want, func() {
		restarted := make(chan error, 1)
		go func() { restarted <- two.Cluster.RestartAPIServer(ctx, 8*time.Second) }()
		waitMetric(0, 7*time.Second) // checked every second
		if err := <-restarted; err != nil {
			t.Error(err)
		}
		waitMetric(1, 30*time.Second)
	})
	logs, err := os.ReadFile(a.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"Remote cluster unreachable; enforcing its last known pods, namespaces and nodes", "Remote cluster reachable again"} {
		if c := strings.Count(string(logs), line); c != 1 {
			t.Errorf("the agent logged %q %d times, want once", line, c)
		}
	}
}
