package bench

import (
	"context"
	"fmt"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/nftpolicy/nftpolicy/internal/agent"
	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/nft"
	"github.com/nftpolicy/nftpolicy/perf/gen"
)

// agentRun is the real agent (informers, coalescing runner, sync) on a fake
// API server holding a generated cluster: the code path the lab and a real
// node use, with the kernel behind a stopwatch.
type agentRun struct {
	client   *fake.Clientset
	mu       sync.Mutex
	watchers []*watch.RaceFreeFakeWatcher // the fake API server's, to the agent's informers
	agent    *agent.Agent
	kernel   *timedKernel
	started  time.Time
	cancel   context.CancelFunc
	done     chan error
}

// newAgentRun loads objs into a fake API server; the agent is not started.
func newAgentRun(objs []runtime.Object, kernel nft.Kernel) *agentRun {
	return newAgentRunWith(objs, kernel, nil)
}

// newAgentRunWith is newAgentRun with tweak applied to the agent's
// configuration.
func newAgentRunWith(objs []runtime.Object, kernel nft.Kernel, tweak func(*agent.Config)) *agentRun {
	copies := make([]runtime.Object, len(objs))
	for i, o := range objs {
		copies[i] = o.DeepCopyObject()
	}
	// The plain object tracker, not NewClientset's field-managed one: that
	// computes managedFields inside every create and update, before the
	// watch event goes out, and the event's time is the write's start. It
	// cost 1.5 ms p50 per pod or policy write at S (20 µs for a delete,
	// which it skips), all counted as the agent's compute. A real API
	// server's field management is not the agent's either, and the agent
	// drops managedFields on arrival (Transform).
	client := fake.NewSimpleClientset(copies...)
	r := &agentRun{client: client, done: make(chan error, 1)}
	// The fake API server's watchers hold 100 events and panic when one
	// more comes; with its writes this quick a burst outruns the agent's
	// informers (field management paced them before). Recorded, they let
	// a writer wait for the informers to catch up (throttle).
	client.PrependWatchReactor("*", func(action k8stesting.Action) (bool, watch.Interface, error) {
		var opts metav1.ListOptions
		if w, ok := action.(k8stesting.WatchActionImpl); ok {
			opts = w.ListOptions
		}
		w, err := client.Tracker().Watch(action.GetResource(), action.GetNamespace(), opts)
		if err != nil {
			return false, nil, err
		}
		if fw, ok := w.(*watch.RaceFreeFakeWatcher); ok {
			r.mu.Lock()
			r.watchers = append(r.watchers, fw)
			r.mu.Unlock()
		}
		return true, w, nil
	})
	k := newTimedKernel(kernel)
	cfg := agent.Config{
		NodeName: gen.NodeUnderTest,
		Kernel:   k.agentKernel(),
		// No periodic read-back during the measurements: every sync is
		// one event's.
		ResyncInterval: 24 * time.Hour,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	a := agent.New(cfg, client)
	r.agent, r.kernel = a, k
	return r
}

// throttle waits until no watcher of the fake API server holds more than
// half the events it takes, unread by the agent's informers.
func (r *agentRun) throttle(ctx context.Context) error {
	watchBacklog := int(watch.DefaultChanSize) / 2
	for {
		r.mu.Lock()
		behind := false
		for _, w := range r.watchers {
			behind = behind || !w.IsStopped() && len(w.ResultChan()) > watchBacklog
		}
		r.mu.Unlock()
		if !behind {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Microsecond):
		}
	}
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
