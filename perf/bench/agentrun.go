package bench

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/nftpolicy/nftpolicy/internal/agent"
	"github.com/nftpolicy/nftpolicy/internal/model"
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

// apply sends one event to the fake API server, through its object
// tracker (what the typed clients' fakes call) so that every kind the model
// knows goes one way.
func (r *agentRun) apply(ctx context.Context, e gen.Event) error {
	k, ok := model.KindOf(e.Object)
	if !ok {
		return fmt.Errorf("%s: event object %T", e.Kind, e.Object)
	}
	o := e.Object.DeepCopyObject()
	m := o.(metav1.Object)
	tr := r.client.Tracker()
	var err error
	switch e.Op {
	case gen.Create:
		err = tr.Create(k.Resource, o, m.GetNamespace(), metav1.CreateOptions{})
	case gen.Update:
		err = tr.Update(k.Resource, o, m.GetNamespace(), metav1.UpdateOptions{})
	case gen.Delete:
		err = tr.Delete(k.Resource, m.GetNamespace(), m.GetName(), metav1.DeleteOptions{})
	}
	if err != nil {
		return fmt.Errorf("%s: %w", e.Kind, err)
	}
	return nil
}
