package bench

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nftpolicy/nftpolicy/internal/compile"
	"github.com/nftpolicy/nftpolicy/internal/diff"
	"github.com/nftpolicy/nftpolicy/perf/gen"
)

// BenchmarkEngineEvent times compile.Engine alone (no diff, no netlink) on
// one node of each size, per kind of event: the agent's compute per event
// without the agent around it. It reports the p50 and p99 of each kind,
// and the elements the event's transaction adds or deletes (the partial
// diff against a shadow of the kernel, outside the timing), p50 and max:
// issue 13 wants a pod relabel's at L within 1.5× of S's.
//
//	go test -run '^$' -bench EngineEvent/L ./perf/bench -benchtime 1x -cpuprofile cpu.out
func BenchmarkEngineEvent(b *testing.B) {
	for _, size := range gen.Sizes() {
		b.Run(size.Name, func(b *testing.B) {
			c := gen.Generate(size, 1)
			node := gen.NodeName(0)
			m, err := c.Model()
			if err != nil {
				b.Fatal(err)
			}
			e := compile.NewEngine(m, node)
			e.TakeTouched()
			shadow := e.Ruleset().Clone()
			events := c.Events(node, 20)
			times := map[gen.EventKind][]time.Duration{}
			elems := map[gen.EventKind][]int{}
			b.ResetTimer()
			for range b.N {
				for _, ev := range events {
					t := time.Now()
					if ev.Op == gen.Delete {
						kind, ns, name := ev.ModelKey()
						err = e.Delete(kind, ns, name)
					} else {
						err = e.Set(ev.Object)
					}
					touched := e.TakeTouched()
					times[ev.Kind] = append(times[ev.Kind], time.Since(t))
					if err != nil {
						b.Fatal(err)
					}
					b.StopTimer()
					tx := diff.Partial(shadow, e.Ruleset(), touched)
					shadow.ApplyOps(tx)
					elems[ev.Kind] = append(elems[ev.Kind], diff.Count(tx).Elements)
					b.StartTimer()
				}
			}
			b.StopTimer()
			for kind, ts := range times {
				slices.Sort(ts)
				b.ReportMetric(float64(ts[len(ts)/2].Microseconds()), fmt.Sprintf("µs-p50-%s", kind))
				b.ReportMetric(float64(ts[len(ts)*99/100].Microseconds()), fmt.Sprintf("µs-p99-%s", kind))
			}
			for kind, ns := range elems {
				slices.Sort(ns)
				b.ReportMetric(float64(ns[len(ns)/2]), fmt.Sprintf("elems-p50-%s", kind))
				b.ReportMetric(float64(ns[len(ns)-1]), fmt.Sprintf("elems-max-%s", kind))
			}
		})
	}
}
