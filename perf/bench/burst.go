package bench

import (
	"context"
	"fmt"
	"strconv"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nftpolicy/nftpolicy/internal/agent"
)

// BurstPods is how many pods the burst creates across the cluster.
const BurstPods = 1000

// burst creates pods across the whole cluster as fast as the API server
// takes them (and the agent's informers read them: the fake's watchers
// hold 100 events) and returns the time from the last write to the end of the
// sync that applied them all (the agent coalesces them into few syncs).
func burst(ctx context.Context, run *agentRun, pods []*v1.Pod) (time.Duration, error) {
	want := make(map[string]string, len(pods))
	// The timed kernel reports every transaction; nobody else reads them
	// during the burst.
	drained := make(chan struct{})
	stop := make(chan struct{})
	go func() {
		defer close(drained)
		for {
			select {
			case <-run.kernel.applied:
			case <-stop:
				return
			}
		}
	}()
	defer func() { close(stop); <-drained }()
	for i, p := range pods {
		p = p.DeepCopy()
		// The fake API server keeps the version it is given; the barrier
		// needs one per object.
		p.ResourceVersion = "burst-" + strconv.Itoa(i)
		if err := run.throttle(ctx); err != nil {
			return 0, err
		}
		if _, err := run.client.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			return 0, fmt.Errorf("burst: pod %d: %w", i, err)
		}
		want[agent.ObjectKey(p)] = p.ResourceVersion
	}
	last := time.Now()
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if err := run.agent.WaitIncludes(wctx, want); err != nil {
		return 0, fmt.Errorf("burst of %d pods: %w", len(pods), err)
	}
	return time.Since(last), nil
}
