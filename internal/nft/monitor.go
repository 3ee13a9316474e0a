package nft

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Monitor watches a network namespace's nf_tables events (the
// NFNLGRP_NFTABLES multicast group) and reports every committed change to
// the nftpolicy table made by another process: someone ran `nft delete
// table`, `nft flush ruleset`, or removed a chain or an element.
//
// The kernel sends the objects a batch changed, then a NEWGEN message; each
// carries the netlink port id of the socket that sent the batch. Batches
// sent from the agent's own socket (own reports it) are ignored, so no
// repair ever triggers another. The port id, not the process id the
// generation also names (NFTA_GEN_PROC_PID, a thread id in the kernel's
// initial pid namespace), which a containerised agent cannot map to its
// own threads. google/nftables' monitor (v0.3.0) parses every object and
// would have to understand all of them; this one reads only the table name
// (attribute 1 of every object message) and the generation.
type Monitor struct {
	netnsFD int
	own     func(portID uint32) bool
}

// NewMonitor returns a monitor of the namespace open as netnsFD (-1: the
// caller's); own reports whether a port id is the agent's socket
// (Netlink.SentFrom of the kernel that programs the namespace). It opens
// nothing yet.
func NewMonitor(netnsFD int, own func(portID uint32) bool) *Monitor {
	return &Monitor{netnsFD: netnsFD, own: own}
}

// SentFrom reports whether portID is the lasting socket's. Apply holds the
// lock while the kernel commits and answers, so a batch's events are
// checked after Apply returned: a successful batch's socket is still open;
// a failed one's is closed and its events (if the kernel committed after
// all) count as foreign, which asks for the full sync the failure needs
// anyway.
func (n *Netlink) SentFrom(portID uint32) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.sock != nil && n.sock.PID() == portID
}

// monitorBuffer is the socket's receive buffer. The agent's own big batches
// produce events too: a 100,000-element batch did not overflow it on this
// project's machine, and listening cost that batch nothing measurable
// (0.36 s with and without a listener; a one-element batch 0.3 ms instead
// of 0.1 ms). Should it overflow anyway (ENOBUFS), events were lost and
// Run reports a possible tampering, which costs one full sync that finds
// nothing to do.
const monitorBuffer = 32 << 20

// Run listens until ctx is done, calling tampered (from Run's goroutine)
// with what changed after each foreign batch that touched the nftpolicy
// table, and after events were lost. The listening socket is open when
// ready is called (nil: not called), so a change after that is seen. It
// returns ctx's error, or the socket's.
func (m *Monitor) Run(ctx context.Context, ready func(), tampered func(what string)) error {
	cfg := &netlink.Config{}
	if m.netnsFD >= 0 {
		cfg.NetNS = m.netnsFD
	}
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, cfg)
	if err != nil {
		return fmt.Errorf("nft monitor: dial: %w", err)
	}
	defer c.Close()
	if err := c.JoinGroup(unix.NFNLGRP_NFTABLES); err != nil {
		return fmt.Errorf("nft monitor: join NFNLGRP_NFTABLES: %w", err)
	}
	if err := setBuffers(c, monitorBuffer); err != nil {
		return fmt.Errorf("nft monitor: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	if ready != nil {
		ready()
	}
	var g eventBatch
	for {
		msgs, err := c.Receive()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, unix.ENOBUFS) {
			g = eventBatch{}
			tampered("events lost (receive buffer overrun)")
			continue
		}
		if err != nil {
			return fmt.Errorf("nft monitor: receive: %w", err)
		}
		for _, msg := range msgs {
			if what, ok := g.add(msg, m.own); ok {
				tampered(what)
			}
		}
	}
}

// eventBatch collects the events of one committed batch.
type eventBatch struct {
	touched string // the first change to our table, as "NEWCHAIN", ...
}

// nf_tables message types, as the kernel numbers them.
var nftMsgNames = map[uint16]string{
	unix.NFT_MSG_NEWTABLE: "new table", unix.NFT_MSG_DELTABLE: "deleted table",
	unix.NFT_MSG_NEWCHAIN: "new chain", unix.NFT_MSG_DELCHAIN: "deleted chain",
	unix.NFT_MSG_NEWRULE: "new rule", unix.NFT_MSG_DELRULE: "deleted rule",
	unix.NFT_MSG_NEWSET: "new set", unix.NFT_MSG_DELSET: "deleted set",
	unix.NFT_MSG_NEWSETELEM: "new element", unix.NFT_MSG_DELSETELEM: "deleted element",
	unix.NFT_MSG_NEWOBJ: "new object", unix.NFT_MSG_DELOBJ: "deleted object",
	unix.NFT_MSG_NEWFLOWTABLE: "new flowtable", unix.NFT_MSG_DELFLOWTABLE: "deleted flowtable",
}

// add takes one event. At the end of a generation (NEWGEN) it reports
// whether the batch touched our table and was sent by another process.
func (g *eventBatch) add(msg netlink.Message, own func(uint32) bool) (string, bool) {
	if msg.Header.Type>>8 != unix.NFNL_SUBSYS_NFTABLES || len(msg.Data) < 4 {
		return "", false
	}
	typ := uint16(msg.Header.Type & 0xff)
	family, attrs := msg.Data[0], msg.Data[4:]
	if typ == unix.NFT_MSG_NEWGEN {
		touched := g.touched
		*g = eventBatch{}
		if touched == "" {
			return "", false
		}
		if own(msg.Header.PID) {
			return "", false
		}
		pid, name := genSender(attrs)
		return fmt.Sprintf("%s in table %s by %q (pid %d)", touched, TableName, name, pid), true
	}
	name, ok := nftMsgNames[typ]
	if !ok || family != unix.NFPROTO_INET || g.touched != "" {
		return "", false
	}
	if tableOf(attrs) == TableName {
		g.touched = name
	}
	return "", false
}

// tableOf reads the table name, attribute 1 of every object message
// (NFTA_TABLE_NAME, NFTA_CHAIN_TABLE, NFTA_RULE_TABLE, NFTA_SET_TABLE,
// NFTA_SET_ELEM_LIST_TABLE, NFTA_OBJ_TABLE, NFTA_FLOWTABLE_TABLE).
func tableOf(attrs []byte) string {
	ad, err := netlink.NewAttributeDecoder(attrs)
	if err != nil {
		return ""
	}
	for ad.Next() {
		if ad.Type() == 1 {
			return ad.String()
		}
	}
	return ""
}

// genSender reads NFTA_GEN_PROC_PID and NFTA_GEN_PROC_NAME of a NEWGEN
// message; pid 0 when the kernel did not say.
func genSender(attrs []byte) (pid uint32, name string) {
	ad, err := netlink.NewAttributeDecoder(attrs)
	if err != nil {
		return 0, ""
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_GEN_PROC_PID:
			pid = ad.Uint32()
		case unix.NFTA_GEN_PROC_NAME:
			name = ad.String()
		}
	}
	return pid, name
}
