package bench

import (
	"context"
	"time"

	"github.com/nftpolicy/nftpolicy/internal/nft"
)

// applied is one transaction the agent handed its kernel, with when.
type applied struct {
	Tx         *nft.Transaction
	Start, End time.Time
	Err        error
}

// timedKernel is the agent's nft.Kernel with a stopwatch: it passes every
// call through and reports each Apply. The agent's compute for an event is
// the time from the event to Start, its netlink and kernel time End-Start.
type timedKernel struct {
	inner   nft.Kernel
	applied chan applied
}

func newTimedKernel(inner nft.Kernel) *timedKernel {
	return &timedKernel{inner: inner, applied: make(chan applied, 64)}
}

func (k *timedKernel) Apply(ctx context.Context, tx *nft.Transaction) error {
	start := time.Now()
	err := k.inner.Apply(ctx, tx)
	k.applied <- applied{Tx: tx, Start: start, End: time.Now(), Err: err}
	return err
}

func (k *timedKernel) Dump(ctx context.Context) (*nft.Ruleset, error) { return k.inner.Dump(ctx) }

// agentKernel is k as the agent is given it: with the inner kernel's
// LastBatchBytes when it has one, so that the agent reads the batch's size
// as the netlink kernel counted it, as on a node, instead of encoding every
// batch a second time after the commit (its metric's fallback for kernels
// without the count).
func (k *timedKernel) agentKernel() nft.Kernel {
	if _, ok := k.inner.(batchCounter); ok {
		return countingTimedKernel{k}
	}
	return k
}

type batchCounter interface{ LastBatchBytes() int }

type countingTimedKernel struct{ *timedKernel }

func (k countingTimedKernel) LastBatchBytes() int { return k.inner.(batchCounter).LastBatchBytes() }

// next waits for the agent's next Apply.
func (k *timedKernel) next(ctx context.Context, timeout time.Duration) (applied, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case a := <-k.applied:
		return a, a.Err
	case <-t.C:
		return applied{}, context.DeadlineExceeded
	case <-ctx.Done():
		return applied{}, ctx.Err()
	}
}
