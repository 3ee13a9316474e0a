// Package preview_test times `nftpolicy preview` (explain.Preview) on the
// suite's M cluster: 10,000 pods in 100 namespaces on 100 nodes, 1,000
// NetworkPolicies. Run it with
//
//	go test -run - -bench . -benchtime 3x ./perf/preview
package preview_test

import (
	"testing"

	"github.com/nftpolicy/nftpolicy/internal/explain"
	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/perf/gen"
)

// BenchmarkPreviewM: one change of each kind the suite's events make (a pod
// added, deleted, relabelled; a namespace relabelled; a policy added,
// updated, deleted), previewed against the whole cluster. The metrics are
// the flows judged and the flips found; building the two models (what
// reading the files costs) is outside the timer.
func BenchmarkPreviewM(b *testing.B) {
	c := gen.Generate(gen.M, 1)
	events := c.Events(gen.NodeUnderTest, 1)
	for _, e := range events {
		b.Run(string(e.Kind), func(b *testing.B) {
			before, err := c.Model()
			if err != nil {
				b.Fatal(err)
			}
			after, err := c.Model()
			if err != nil {
				b.Fatal(err)
			}
			kind, ns, name := e.ModelKey()
			if e.Op == gen.Delete {
				err = after.Delete(kind, ns, name)
			} else {
				err = after.Set(e.Object)
			}
			if err != nil {
				b.Fatal(err)
			}
			var res *explain.PreviewResult
			b.ResetTimer()
			for range b.N {
				res = explain.Preview(before, after, []explain.Ref{{Kind: kind, Namespace: ns, Name: name}}, nil)
			}
			b.ReportMetric(float64(res.Evaluated), "flows-judged")
			b.ReportMetric(float64(res.Flows), "flips")
		})
	}
	_ = model.Egress
}
