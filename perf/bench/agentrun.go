package bench

import (
	"context"
	"fmt"
	"time"

	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/nftpolicy/nftpolicy/internal/agent"
	"github.com/nftpolicy/nftpolicy/internal/nft"
	"github.com/nftpolicy/nftpolicy/perf/gen"
)

// agentRun is the real agent (informers, coalescing runner, sync) on a fake
// API server holding a generated cluster: the code path the lab and a real
// node use, with the kernel behind a stopwatch.
type agentRun struct {
	client  *fake.Clientset
	agent   *agent.Agent
	kernel  *timedKernel
	started time.Time
	cancel  context.CancelFunc
	done    chan error
}

// newAgentRun loads objs into a fake API server; the agent is not started.
func newAgentRun(objs []runtime.Object, kernel nft.Kernel) *agentRun {
	copies := make([]runtime.Object, len(objs))
	for i, o := range objs {
		copies[i] = o.DeepCopyObject()
	}
	client := fake.NewClientset(copies...)
	k := newTimedKernel(kernel)
	a := agent.New(agent.Config{
		NodeName: gen.NodeUnderTest,
		Kernel:   k,
		// No periodic read-back during the measurements: every sync is
		// one event's.
		ResyncInterval: 24 * time.Hour,
	}, client)
	return &agentRun{client: client, agent: a, kernel: k, done: make(chan error, 1)}
}

// start runs the agent until stop.
func (r *agentRun) start(ctx context.Context) {
	ctx, r.cancel = context.WithCancel(ctx)
	r.started = time.Now()
	go func() { r.done <- r.agent.Run(ctx) }()
}

// stop ends the agent; it may be called again.
func (r *agentRun) stop() error {
	if r.cancel == nil {
		return nil
	}
	r.cancel()
	r.cancel = nil
	return <-r.done
}

// apply sends one event to the API server.
func (r *agentRun) apply(ctx context.Context, e gen.Event) error {
	var err error
	switch o := e.Object.DeepCopyObject().(type) {
	case *v1.Pod:
		pods := r.client.CoreV1().Pods(o.Namespace)
		switch e.Op {
		case gen.Create:
			_, err = pods.Create(ctx, o, metav1.CreateOptions{})
		case gen.Update:
			_, err = pods.Update(ctx, o, metav1.UpdateOptions{})
		case gen.Delete:
			err = pods.Delete(ctx, o.Name, metav1.DeleteOptions{})
		}
	case *v1.Namespace:
		nss := r.client.CoreV1().Namespaces()
		switch e.Op {
		case gen.Create:
			_, err = nss.Create(ctx, o, metav1.CreateOptions{})
		case gen.Update:
			_, err = nss.Update(ctx, o, metav1.UpdateOptions{})
		case gen.Delete:
			err = nss.Delete(ctx, o.Name, metav1.DeleteOptions{})
		}
	case *networkingv1.NetworkPolicy:
		nps := r.client.NetworkingV1().NetworkPolicies(o.Namespace)
		switch e.Op {
		case gen.Create:
			_, err = nps.Create(ctx, o, metav1.CreateOptions{})
		case gen.Update:
			_, err = nps.Update(ctx, o, metav1.UpdateOptions{})
		case gen.Delete:
			err = nps.Delete(ctx, o.Name, metav1.DeleteOptions{})
		}
	default:
		err = fmt.Errorf("event object %T", o)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", e.Kind, err)
	}
	return nil
}
