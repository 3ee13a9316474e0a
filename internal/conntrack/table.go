package conntrack

import (
	"context"
	"errors"
	"fmt"

	"github.com/mdlayher/netlink"
	ct "github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"
)

// Table is a conntrack table: the node namespace's, or a test's.
type Table interface {
	// Dump lists every entry.
	Dump(ctx context.Context) ([]Entry, error)
	// Delete removes entries; one already gone is not an error.
	Delete(ctx context.Context, entries []Entry) (deleted int, err error)
}

// Netlink is the conntrack table of a network namespace, over ctnetlink.
// Each call opens its own socket: cuts are rare (after a transaction that
// changed the ruleset) and a socket kept open would hold a file for nothing.
type Netlink struct {
	netnsFD int
}

// NewNetlink returns the table of the namespace open as netnsFD, or of the
// caller's namespace when netnsFD is -1. It opens nothing yet.
func NewNetlink(netnsFD int) *Netlink { return &Netlink{netnsFD: netnsFD} }

var _ Table = (*Netlink)(nil)

func (n *Netlink) dial() (*ct.Conn, error) {
	cfg := &netlink.Config{}
	if n.netnsFD >= 0 {
		cfg.NetNS = n.netnsFD
	}
	c, err := ct.Dial(cfg)
	if err != nil {
		return nil, fmt.Errorf("conntrack: dial: %w", err)
	}
	return c, nil
}

// Dump lists the entries of both families.
func (n *Netlink) Dump(ctx context.Context) ([]Entry, error) {
	c, err := n.dial()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	flows, err := c.Dump(nil)
	if err != nil {
		return nil, fmt.Errorf("conntrack: dump: %w", err)
	}
	entries := make([]Entry, 0, len(flows))
	for _, f := range flows {
		entries = append(entries, entryOf(f))
	}
	return entries, nil
}

// entryOf reads what the policy saw of a flow: the original source, and the
// destination after DNAT, which is the reply direction's source.
func entryOf(f ct.Flow) Entry {
	return Entry{
		Proto: f.TupleOrig.Proto.Protocol,
		Src:   f.TupleOrig.IP.SourceAddress,
		Dst:   f.TupleReply.IP.SourceAddress,
		Port:  f.TupleReply.Proto.SourcePort,
		key:   flowKey{orig: f.TupleOrig, reply: f.TupleReply, zone: f.Zone},
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
