package lab

import (
	"context"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/nftpolicy/nftpolicy/internal/lab/netlab"
)

// ProbeRecord is one probe of a Prober. Its packet left between Start and
// End (a loaded machine may delay the socket's creation by milliseconds).
type ProbeRecord struct {
	Start, End time.Time
	Outcome    netlab.Outcome
}

// Reached reports whether the probe's first packet reached the destination:
// the handshake completed, or the destination's own stack refused it (no
// listener yet). Only a drop on the way (a timeout) or an ICMP error from
// elsewhere is not reaching it.
func (r ProbeRecord) Reached() bool {
	return r.Outcome.Verdict == netlab.Allowed || (r.Outcome.Verdict == netlab.Denied && r.Outcome.Reason == netlab.Reset)
}

// Prober starts a new probe every interval, each a new connection with its
// own timeout, so that a window shorter than a timeout is still seen: a SYN
// dropped once is retransmitted only after a second, so one long probe
// would miss most of a window.
type Prober struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	records []ProbeRecord
	reached chan struct{}
	once    sync.Once
}

// StartProber probes dst from endpoint from (proto, port) every interval
// until Stop.
func StartProber(ctx context.Context, l *netlab.Lab, from string, dst netip.Addr, proto string, port uint16, every, timeout time.Duration) *Prober {
	ctx, cancel := context.WithCancel(ctx)
	p := &Prober{cancel: cancel, reached: make(chan struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			start := time.Now()
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				// The probe gets its own context: Stop waits for it to end
				// by its timeout rather than cutting it short.
				rec := ProbeRecord{Start: start, Outcome: l.ProbeAddr(context.Background(), from, dst, proto, port, timeout)}
				rec.End = time.Now()
				p.mu.Lock()
				p.records = append(p.records, rec)
				p.mu.Unlock()
				if rec.Reached() {
					p.once.Do(func() { close(p.reached) })
				}
			}()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return p
}

// Reached is closed when a probe first reaches the destination.
func (p *Prober) Reached() <-chan struct{} { return p.reached }

// Stop ends the series, waits for the probes in flight and returns every
// record in the order the probes started.
func (p *Prober) Stop() []ProbeRecord {
	p.cancel()
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	out := append([]ProbeRecord(nil), p.records...)
	sort.Slice(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}

// Records are the probes finished so far, in the order they started; the
// series goes on.
func (p *Prober) Records() []ProbeRecord {
	p.mu.Lock()
	out := append([]ProbeRecord(nil), p.records...)
	p.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}

// FirstReached is when a probe first got through: the earliest end of a
// probe that reached its destination (an upper bound, by the handshake's
// round trip; a start would be no bound at all, the packet leaving later);
// ok is false when none did.
func FirstReached(records []ProbeRecord) (time.Time, bool) {
	var first time.Time
	for _, r := range records {
		if r.Reached() && (first.IsZero() || r.End.Before(first)) {
			first = r.End
		}
	}
	return first, !first.IsZero()
}
