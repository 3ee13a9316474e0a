package lab

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/nftpolicy/nftpolicy/internal/lab/netlab"
	"github.com/nftpolicy/nftpolicy/internal/scenario"
)

// step runs one step: apply, delete, wait for the agents, probe.
func (r *run) step(ctx context.Context, st *scenario.Step, rep *scenario.Report) {
	fail := func(err error) {
		rep.Errors = append(rep.Errors, fmt.Sprintf("%s: step %d (line %d): %v", r.sc.File, st.Number, st.Line, err))
	}
	if r.change(ctx, st, fail) {
		if r.cp != nil {
			if err := r.syncServices(ctx); err != nil {
				fail(err)
			}
		}
		if err := r.barrier(ctx); err != nil {
			fail(err)
			return
		}
	}
	if st.Wait > 0 {
		select {
		case <-ctx.Done():
			return
		case <-time.After(st.Wait):
		}
	}
	if st.Probe != nil {
		for _, fam := range r.sc.ProbeFamilies(st.Probe) {
			pr, err := r.probe(ctx, st, fam)
			if err != nil {
				fail(err)
			}
			rep.Probes = append(rep.Probes, pr)
		}
	}
}

// change runs a step's applies and deletes, and reports whether it has
// any.
func (r *run) change(ctx context.Context, st *scenario.Step, fail func(error)) bool {
	for _, obj := range st.Apply {
		if err := r.apply(ctx, obj); err != nil {
			fail(err)
		}
	}
	for _, ref := range st.Delete {
		if err := r.delete(ctx, ref); err != nil {
			fail(err)
		}
	}
	if st.DNSChange {
		r.names.Update(st.DNS) // the name server's: no agent waits for it
	}
	return len(st.Apply) > 0 || len(st.Delete) > 0
}

// endpoints lists what exists now, as patterns see it: pods (not
// hostNetwork ones, which are their node), nodes, externals and Service
// targets, as scenario.EndpointsOf orders them.
func (r *run) endpoints(step int) []scenario.Endpoint {
	var objs []runtime.Object
	for _, n := range r.sc.Nodes {
		objs = append(objs, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}})
	}
	for _, obj := range r.state {
		switch obj.(type) {
		case *corev1.Pod, *corev1.Service:
			objs = append(objs, obj)
		}
	}
	return append(scenario.EndpointsOf(objs, r.sc.Externals), scenario.DNSEndpoints(r.sc.Cluster, step)...)
}

const (
	maxParallelProbes = 64
	probeTries        = 3
)

func (r *run) probe(ctx context.Context, st *scenario.Step, fam scenario.Family) (scenario.ProbeReport, error) {
	return r.probeAmong(ctx, st, fam, r.endpoints(st.Number), func(e scenario.Endpoint) *corev1.Pod {
		pod, _ := r.state[scenario.ObjectRef{Kind: "Pod", Namespace: e.Namespace, Name: e.Name}].(*corev1.Pod)
		return pod
	}, scenario.Endpoint.String)
}

// probeAmong probes st's pairs among endpoints: podOf finds a pod
// endpoint's Pod (its named ports), labID names an endpoint in the lab.
func (r *run) probeAmong(ctx context.Context, st *scenario.Step, fam scenario.Family, endpoints []scenario.Endpoint,
	podOf func(scenario.Endpoint) *corev1.Pod, labID func(scenario.Endpoint) string) (scenario.ProbeReport, error) {
	pr := scenario.NewProbeReport(st, fam)
	results, err := st.Probe.Plan(endpoints)
	if err != nil {
		return pr, err
	}
	family := 4
	if fam == scenario.IPv6 {
		family = 6
	}
	sem := make(chan struct{}, maxParallelProbes)
	var wg sync.WaitGroup
	for i := range results {
		res := &results[i]
		if res.To.Kind == scenario.KindDNS {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				r.probeName(ctx, st.Probe, family, res)
			}()
			continue
		}
		if res.To.IsTarget() {
			r.probeTarget(ctx, st.Probe, fam, res, &wg, sem)
			continue
		}
		var dstPod *corev1.Pod
		if res.To.Kind == scenario.KindPod {
			dstPod = podOf(res.To)
		}
		port, ok := scenario.ResolvePort(dstPod, st.Probe.Port, st.Probe.Protocol)
		if !ok {
			res.Got = scenario.Outcome{Verdict: scenario.Denied, Detail: scenario.DetailNoPort}
			continue
		}
		res.Port = port
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			// A connection that is expected to pass but timed out is tried
			// again (as the upstream e2e prober does): a lost first SYN must
			// not fail a run. An unexpected pass is never retried away.
			for try := 0; try < probeTries; try++ {
				if res.From.Network == "" && res.To.Network == "" {
					res.Got = outcome(r.net.Probe(ctx, labID(res.From), labID(res.To), family, string(st.Probe.Protocol), uint16(port), r.opts.ProbeTimeout))
				} else {
					res.Got = r.probeOnce(ctx, res, family, string(st.Probe.Protocol), uint16(port))
				}
				if res.Want.Verdict != scenario.Allowed || res.Got.Detail != scenario.DetailTimeout {
					break
				}
			}
		}()
	}
	wg.Wait()
	pr.Results = results
	return pr, nil
}

func outcome(o netlab.Outcome) scenario.Outcome {
	switch o.Verdict {
	case netlab.Allowed:
		return scenario.Outcome{Verdict: scenario.Allowed}
	case netlab.Skipped:
		// SCTP where the kernel has no SCTP sockets and raw ones are not
		// allowed (no CAP_NET_RAW).
		return scenario.Outcome{Verdict: scenario.Skipped, Detail: "no SCTP or raw sockets"}
	case netlab.Denied:
		switch o.Reason {
		case netlab.Timeout:
			return scenario.Outcome{Verdict: scenario.Denied, Detail: scenario.DetailTimeout}
		case netlab.Reset:
			return scenario.Outcome{Verdict: scenario.Denied, Detail: scenario.DetailReset}
		}
		return scenario.Outcome{Verdict: scenario.Denied, Detail: scenario.DetailICMP}
	}
	// The lab could not run the probe: that is not a denial.
	return scenario.Outcome{Verdict: "error", Detail: fmt.Sprint(o.Err)}
}

// probeTarget probes a Service target, with the same retries as a pod:
// when every attempt was expected to connect and some timed out, the
// whole batch runs again (a mix that comes from the rules comes again).
func (r *run) probeTarget(ctx context.Context, p *scenario.Probe, fam scenario.Family, res *scenario.Result, wg *sync.WaitGroup, sem chan struct{}) {
	t, ok, err := r.resolveTarget(res.To, p, fam)
	switch {
	case err != nil:
		res.Got = scenario.Outcome{Verdict: scenario.Errored, Detail: err.Error()}
		return
	case !ok:
		res.Got = scenario.Outcome{Verdict: scenario.Denied, Detail: scenario.DetailNoPort}
		return
	}
	res.Port = int32(t.dst.Port())
	wg.Add(1)
	go func() {
		defer wg.Done()
		sem <- struct{}{}
		defer func() { <-sem }()
		for try := 0; try < probeTries; try++ {
			res.Got = r.probeService(ctx, res.From.String(), t, string(p.Protocol))
			if res.Want.Verdict != scenario.Allowed || res.Got.Verdict == scenario.Allowed {
				break
			}
		}
	}()
}
