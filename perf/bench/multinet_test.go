package bench

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nftpolicy/nftpolicy/internal/compile"
	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/perf/gen"
)

// BenchmarkNetworkCompile times what the agent does for one secondary
// network on a full sync or a network new to the node
// (internal/agent/multinet.go): project the model onto the network and
// compile the projection from scratch for one node. Then, as on every other
// change, one projected event: a pod of the network relabelled, fed to that
// engine (p50 of 200). The cluster is a generated one whose every tenth
// pod is also on the network (VMs), with each NetworkPolicy also a
// MultiNetworkPolicy for it: a network as large as a tenth of the cluster,
// with as many policies as the primary one.
//
//	go test -run '^$' -bench NetworkCompile ./perf/bench -benchtime 5x
func BenchmarkNetworkCompile(b *testing.B) {
	for _, size := range gen.Sizes()[:3] {
		b.Run(size.Name, func(b *testing.B) {
			m, err := gen.Generate(size, 1).Model()
			if err != nil {
				b.Fatal(err)
			}
			const net = "default/vlan10"
			base := netip.MustParseAddr("100.64.0.0")
			attached := 0
			for i, p := range m.SortedPods() {
				if i%10 != 0 {
					continue
				}
				base = base.Next()
				p.Networks = []model.Attachment{{Network: net, IPs: []netip.Addr{base}}}
				attached++
			}
			m.MultiPolicies = map[string]*model.MultiPolicy{}
			for key, p := range m.Policies {
				m.MultiPolicies[key] = &model.MultiPolicy{Policy: p, Networks: []string{net}}
			}
			node := gen.NodeName(0)
			var rules int
			var took []time.Duration
			b.ResetTimer()
			for range b.N {
				t := time.Now()
				rs := compile.NewEngineWith(model.Project(m, net), node, model.Options{Bridge: "br-vlan10", OpenUnknown: true}).Ruleset()
				took = append(took, time.Since(t))
				rules = 0
				for _, c := range rs.Chains {
					rules += len(c.Rules)
				}
			}
			b.StopTimer()
			e := compile.NewEngineWith(model.Project(m, net), node, model.Options{Bridge: "br-vlan10", OpenUnknown: true})
			e.TakeTouched()
			var events []time.Duration
			for i, p := range m.SortedPods() {
				if len(p.Networks) == 0 || len(events) == 200 {
					continue
				}
				pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name, Labels: map[string]string{"relabelled": fmt.Sprint(i)}},
					Spec:   v1.PodSpec{NodeName: p.Node},
					Status: v1.PodStatus{Phase: v1.PodRunning, PodIPs: []v1.PodIP{{IP: p.Networks[0].IPs[0].String()}}}}
				t := time.Now()
				if err := e.Set(pod); err != nil {
					b.Fatal(err)
				}
				e.TakeTouched()
				events = append(events, time.Since(t))
			}
			slices.Sort(events)
			b.ReportMetric(float64(events[len(events)/2].Microseconds()), "µs-p50-relabel")
			var sum time.Duration
			for _, d := range took {
				sum += d
			}
			b.ReportMetric(float64(sum.Microseconds())/float64(len(took))/1000, "ms/compile")
			b.ReportMetric(float64(attached), "pods-on-network")
			b.ReportMetric(float64(rules), "rules")
			b.Logf("%s: %d pods on the network, %d MultiNetworkPolicies: %s per compile", size.Name, attached, len(m.MultiPolicies), fmt.Sprint(sum/time.Duration(len(took))))
		})
	}
}
