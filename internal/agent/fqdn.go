package agent

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"time"

	"k8s.io/klog/v2"

	"github.com/nftpolicy/nftpolicy/internal/fqdn"
	"github.com/nftpolicy/nftpolicy/internal/nft"
)

// Domain peers: the kernel copies the DNS answers of the pods that
// domainNames policies select to Model.DNSGroup (compile/fqdn.go); a
// goroutine reads them, keeps the bindings they prove in a store, and
// forgets them when their records expire. Each change of a name's
// addresses asks for a sync at once (not after MinSyncInterval: the client
// that asked connects as soon as it has the answer), and the sync sets the
// names' addresses in the engine, which changes the domain sets' elements.

// PacketSource reads an NFLOG group with copies of up to copyBytes of each
// packet (nft.ReadPackets in a namespace).
type PacketSource func(ctx context.Context, group uint16, copyBytes uint32, fn func(nft.LogEvent)) error

// dnsCopyBytes is how much of an answer the kernel copies: an IPv6 and a
// UDP header and 4 KiB of message, more than EDNS answers commonly carry
// (1232 bytes is the usual buffer size); a cut answer yields what its
// complete records say.
const dnsCopyBytes = 40 + 8 + 4096

type dnsState struct {
	mu      sync.Mutex
	store   *fqdn.Store
	pending map[string]bool // names whose addresses changed since the last sync
	since   time.Time       // when the first of them changed
	wake    chan struct{}   // an earlier expiry than the expiry timer waits for
}

// startDNS starts the answer reader and the expiry timer, if configured.
func (a *Agent) startDNS(ctx context.Context, logger klog.Logger) {
	if a.cfg.DNSAnswers == nil || a.cfg.Model.DNSGroup == 0 {
		return
	}
	d := &a.dns
	d.store = fqdn.NewStore(a.cfg.DNSMinTTL, a.cfg.DNSMaxTTL, a.cfg.DNSMaxBindings)
	d.pending = map[string]bool{}
	d.wake = make(chan struct{}, 1)
	dlog := logger.WithName("dns")
	err := a.cfg.DNSAnswers(ctx, a.cfg.Model.DNSGroup, dnsCopyBytes, func(ev nft.LogEvent) {
		if ev.Proto != nft.ProtoUDP || len(ev.L4) < 8 {
			return
		}
		recs, err := fqdn.Parse(ev.L4[8:])
		a.metrics.DNSAnswers.Inc()
		if err != nil {
			a.metrics.DNSAnswersUnreadable.Inc()
			dlog.V(4).Info("Unreadable DNS answer", "dst", ev.Dst, "err", err)
			return
		}
		a.learn(recs, ev.Time)
	})
	if err != nil {
		logger.Error(err, "DNS answers are not read: domainNames peers match nothing learned", "group", a.cfg.Model.DNSGroup)
		return
	}
	go a.expireDNS(ctx)
}

// learn records an answer's bindings; a change asks for a sync at once.
func (a *Agent) learn(recs []fqdn.Record, now time.Time) {
	d := &a.dns
	d.mu.Lock()
	before, _ := d.store.Next()
	dropped := d.store.Dropped
	changed := d.store.Observe(recs, now)
	d.note(changed, now)
	after, _ := d.store.Next()
	a.metrics.DNSBindings.Set(float64(d.store.Len()))
	a.metrics.DNSBindingsDropped.Add(float64(d.store.Dropped - dropped))
	d.mu.Unlock()
	if len(changed) > 0 {
		a.runner.RequestNow()
	}
	if before.IsZero() || after.Before(before) {
		select {
		case d.wake <- struct{}{}:
		default:
		}
	}
}

// expireDNS forgets bindings when their records expire.
func (a *Agent) expireDNS(ctx context.Context) {
	d := &a.dns
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		d.mu.Lock()
		next, ok := d.store.Next()
		d.mu.Unlock()
		wait := time.Hour
		if ok {
			wait = max(time.Until(next), 0)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-d.wake:
			timer.Stop() // Reset above starts it again; no stale tick stays (Go 1.23 timers)
			continue
		case <-timer.C:
		}
		now := time.Now()
		d.mu.Lock()
		changed := d.store.Expire(now)
		d.note(changed, now)
		a.metrics.DNSBindings.Set(float64(d.store.Len()))
		d.mu.Unlock()
		if len(changed) > 0 {
			a.runner.RequestNow()
		}
	}
}

// note marks names as changed at now; d.mu is held.
func (d *dnsState) note(names []string, now time.Time) {
	if len(names) > 0 && len(d.pending) == 0 {
		d.since = now
	}
	for _, name := range names {
		d.pending[name] = true
	}
}

// applyDomains sets the addresses of the names that changed in the engine
// and returns when the first of them changed (zero: none did).
func (a *Agent) applyDomains() time.Time {
	d := &a.dns
	if d.store == nil {
		return time.Time{}
	}
	d.mu.Lock()
	names := make([]string, 0, len(d.pending))
	for name := range d.pending {
		names = append(names, name)
	}
	slices.Sort(names)
	bound := make(map[string][]netip.Addr, len(names))
	for _, name := range names {
		bound[name] = d.store.Addrs(name)
	}
	since := d.since
	d.pending = map[string]bool{}
	d.mu.Unlock()
	if len(names) == 0 {
		return time.Time{}
	}
	for _, name := range names {
		a.engine.SetDomain(name, bound[name])
	}
	return since
}
