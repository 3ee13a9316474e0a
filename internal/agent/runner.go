package agent

import (
	"context"
	"time"
)

// runner coalesces sync requests: any number of Request calls between two
// runs cause one run, runs are at least minInterval apart, and a run happens
// at least every maxInterval even without requests (the periodic resync).
// After a failed run it retries with exponential backoff (100 ms doubling
// to 30 s), and nothing else runs it before the retry.
type runner struct {
	fn          func(ctx context.Context) error
	minInterval time.Duration
	maxInterval time.Duration
	kick        chan struct{}
	now         chan struct{} // RequestNow: skip the rest of minInterval
}

func newRunner(fn func(context.Context) error, minInterval, maxInterval time.Duration) *runner {
	return &runner{fn: fn, minInterval: minInterval, maxInterval: maxInterval, kick: make(chan struct{}, 1), now: make(chan struct{}, 1)}
}

// Request asks for a run soon; it never blocks.
func (r *runner) Request() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

const (
	backoffStart = 100 * time.Millisecond
	backoffMax   = 30 * time.Second
)

// Loop runs until ctx is done.
func (r *runner) Loop(ctx context.Context) {
	var last time.Time
	backoff := time.Duration(0)
	periodic := time.NewTimer(r.maxInterval)
	defer periodic.Stop()
	for {
		if backoff > 0 {
			// After a failure only the retry timer runs the next pass:
			// requests in the meantime stay pending (coalesced in kick)
			// and are served by the retry, which a storm of events must
			// not turn into a tight loop of failing syncs.
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			select {
			case <-r.kick:
			default:
			}
		} else {
			select {
			case <-ctx.Done():
				return
			case <-r.kick:
			case <-periodic.C:
			}
		}
		if wait := r.minInterval - time.Since(last); wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			case <-r.now:
			}
		}
		select { // this run serves any RequestNow so far
		case <-r.now:
		default:
		}
		last = time.Now()
		if err := r.fn(ctx); err != nil {
			backoff = min(max(2*backoff, backoffStart), backoffMax)
		} else {
			backoff = 0
		}
		if !periodic.Stop() {
			select {
			case <-periodic.C:
			default:
			}
		}
		periodic.Reset(r.maxInterval)
	}
}
