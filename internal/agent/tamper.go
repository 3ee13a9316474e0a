package agent

import (
	"context"
	"time"

	"k8s.io/klog/v2"
)

// TamperMonitor reports changes to the nftpolicy table made by anyone but
// this agent (nft.Monitor).
type TamperMonitor interface {
	// Run listens until ctx is done, calling ready once it listens and
	// tampered after each foreign change.
	Run(ctx context.Context, ready func(), tampered func(what string)) error
}

// tamperRetry spaces restarts of a monitor whose socket failed.
const tamperRetry = time.Second

// watchTamper starts the tamper monitor, if configured. Each foreign change
// asks for a full sync now, past the coalescing period: a deleted table
// leaves every pod open until it is back. The periodic resync stays the
// backstop. A monitor that fails is restarted, and since it may have
// missed events, a full sync follows.
func (a *Agent) watchTamper(ctx context.Context, logger klog.Logger) {
	if a.cfg.Tamper == nil {
		return
	}
	go func() {
		for {
			err := a.cfg.Tamper.Run(ctx, nil, func(what string) {
				logger.Info("The table was changed by someone else; repairing it now", "change", what)
				a.requestRepair()
			})
			if ctx.Err() != nil {
				return
			}
			logger.Error(err, "Watching the table for tampering; restarting the watch", "in", tamperRetry)
			select {
			case <-ctx.Done():
				return
			case <-time.After(tamperRetry):
			}
			a.requestRepair()
		}
	}()
}

// requestRepair makes the next sync a full one (it reads the kernel back
// and applies the difference) and asks for it at once.
func (a *Agent) requestRepair() {
	a.repair.Store(true)
	a.runner.RequestNow()
}

// takeRepair, in the sync loop, turns a requested repair into a full sync.
func (a *Agent) takeRepair() {
	if a.repair.Swap(false) {
		a.lastFull = time.Time{}
	}
}

// RequestNow asks for a run at once: one already asked for skips the rest
// of minInterval. It never blocks.
func (r *runner) RequestNow() {
	select {
	case r.now <- struct{}{}:
	default:
	}
	r.Request()
}
