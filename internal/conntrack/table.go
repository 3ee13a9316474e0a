package conntrack

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mdlayher/netlink"
	ct "github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"
)

// Table is a conntrack table: the node namespace's, or a test's.
type Table interface {
	// Dump lists the entries, at least those in scope (nil: every one).
	Dump(ctx context.Context, scope *Scope) ([]Entry, error)
	// Delete removes entries; one already gone is not an error.
	Delete(ctx context.Context, entries []Entry) (deleted int, err error)
}

// Netlink is the conntrack table of a network namespace, over ctnetlink.
// Each call opens its own socket (a fraction of a millisecond, next to a
// dump's walk of the kernel's table), so none is held between cuts.
type Netlink struct {
	netnsFD int
	// The measured costs that choose between one full dump and two
	// filtered ones per address (filterPays); one goroutine dumps.
	full, walk time.Duration
}

// NewNetlink returns the table of the namespace open as netnsFD, or of the
// caller's namespace when netnsFD is -1. It opens nothing yet.
func NewNetlink(netnsFD int) *Netlink { return &Netlink{netnsFD: netnsFD} }

var _ Table = (*Netlink)(nil)

// config puts a socket in the table's namespace.
func (n *Netlink) config() *netlink.Config {
	cfg := &netlink.Config{}
	if n.netnsFD >= 0 {
		cfg.NetNS = n.netnsFD
	}
	return cfg
}

func (n *Netlink) dial() (*ct.Conn, error) {
	c, err := ct.Dial(n.config())
	if err != nil {
		return nil, fmt.Errorf("conntrack: dial: %w", err)
	}
	return c, nil
}

// firstWalk is what a filtered dump is taken to cost until one is timed:
// on this project's machine each dump, filtered or not, walks the kernel's
// conntrack hash (one for every namespace) in about 9 ms, and a full dump
// then costs about 4 µs an entry, most of it the kernel's (BenchmarkDump).
const firstWalk = 10 * time.Millisecond

// Dump lists the entries of both families: for a scope of addresses alone
// (a pod's event) only theirs, filtered by the kernel (dumpAddrs), when
// that costs less than the last full dump; otherwise, or on a kernel
// without dump filters (before Linux 5.8), every entry.
func (n *Netlink) Dump(ctx context.Context, scope *Scope) ([]Entry, error) {
	if addrs, ok := scope.addrList(); ok && n.filterPays(len(addrs)) {
		start := time.Now()
		if entries, err := n.dumpAddrs(ctx, addrs); err == nil {
			n.walk = time.Since(start) / time.Duration(2*len(addrs))
			return entries, nil
		}
	}
	start := time.Now()
	entries, err := n.dumpAll(ctx)
	if err == nil {
		n.full = time.Since(start)
	}
	return entries, err
}

// filterPays reports whether two filtered dumps for each of k addresses
// cost less than a full one, as last measured: with a few hundred entries
// they do not, with tens of thousands (a full dump of 50,000 took 340 ms)
// they do by far.
func (n *Netlink) filterPays(k int) bool {
	walk := n.walk
	if walk == 0 {
		walk = firstWalk
	}
	return n.full > 0 && time.Duration(2*k)*walk < n.full
}

func (n *Netlink) dumpAll(ctx context.Context) ([]Entry, error) {
	c, err := netfilter.Dial(n.config())
	if err != nil {
		return nil, fmt.Errorf("conntrack: dial: %w", err)
	}
	defer c.Close()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	req, err := netfilter.MarshalNetlink(netfilter.Header{
		SubsystemID: netfilter.NFSubsysCTNetlink,
		MessageType: ctGet,
		Family:      netfilter.ProtoUnspec, // both IPv4 and IPv6
		Flags:       netlink.Request | netlink.Dump,
	}, nil)
	if err != nil {
		return nil, err
	}
	msgs, err := c.Query(req)
	if err != nil {
		return nil, fmt.Errorf("conntrack: dump: %w", err)
	}
	entries, err := decodeEntries(msgs)
	if err != nil {
		return nil, fmt.Errorf("conntrack: dump: %w", err)
	}
	return entries, nil
}

// decodeEntries reads a dump's answers.
func decodeEntries(msgs []netlink.Message) ([]Entry, error) {
	entries := make([]Entry, 0, len(msgs))
	for _, m := range msgs {
		e, err := decodeEntry(m.Data)
		if err != nil {
			return nil, fmt.Errorf("decoding an entry: %w", err)
		}
		entries = append(entries, e)
	}
	return entries, nil
}

// entryOfKey reads what the policy saw of a flow: the original source, and
// the destination after DNAT, which is the reply direction's source.
func entryOfKey(k flowKey) Entry {
	return Entry{
		Proto: k.orig.Proto.Protocol,
		Src:   k.orig.IP.SourceAddress,
		Dst:   k.reply.IP.SourceAddress,
		Port:  k.reply.Proto.SourcePort,
		key:   k,
	}
}

// flowKey is what Delete needs to find an entry again: both tuples (the
// kernel looks the entry up by the original one and checks the reply).
type flowKey struct {
	orig, reply ct.Tuple
	zone        uint16
}

// Delete removes the entries one message each (ctnetlink deletes by tuple;
// there is no batch). An entry that ended meanwhile (ENOENT) counts as done
// but not as deleted.
func (n *Netlink) Delete(ctx context.Context, entries []Entry) (int, error) {
	if len(entries) == 0 {
		return 0, nil
	}
	c, err := n.dial()
	if err != nil {
		return 0, err
	}
	defer c.Close()
	deleted := 0
	var errs []error
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return deleted, err
		}
		k, ok := e.key.(flowKey)
		if !ok {
			continue
		}
		err := c.Delete(ct.Flow{TupleOrig: k.orig, TupleReply: k.reply, Zone: k.zone})
		switch {
		case err == nil:
			deleted++
		case errors.Is(err, unix.ENOENT):
		default:
			errs = append(errs, fmt.Errorf("%v: %w", e, err))
		}
	}
	if len(errs) > 0 {
		return deleted, fmt.Errorf("conntrack: %d of %d deletes failed, the first: %w", len(errs), len(entries), errs[0])
	}
	return deleted, nil
}
