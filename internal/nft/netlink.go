package nft

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Netlink is the Kernel that programs the nftpolicy table over nf_tables
// netlink (google/nftables for writing, plain netlink dumps for reading).
// It keeps no state between calls: every Apply and Dump opens its own socket.
type Netlink struct {
	netnsFD int
}

// NewNetlink returns a Kernel for the network namespace open as netnsFD, or
// for the caller's namespace when netnsFD is -1. It opens nothing yet.
func NewNetlink(netnsFD int) *Netlink { return &Netlink{netnsFD: netnsFD} }

var _ Kernel = (*Netlink)(nil)

// Socket buffer sizes. One Flush is one sendmsg, so the send buffer must hold
// the whole batch (docs/nftables-notes.md, trap 2); the kernel answers every
// message and echoes every rule, and a receive buffer that overflows loses the
// answers to a committed batch (docs/nftables-notes.md, trap 3). Both are sized
// from the batch.
const (
	minSocketBuffer = 8 << 20
	maxSocketBuffer = 1 << 30
	// ruleBytes is a generous estimate of one encoded rule (expressions
	// plus a comment of at most MaxCommentLen bytes).
	ruleBytes = 1024
	// opBytes is the overhead of any other message (headers, names).
	opBytes = 256
)

// Apply sends tx as one netlink batch on a fresh connection (a Conn keeps its
// first error for good: docs/nftables-notes.md, trap 7). The kernel commits all
// of it or none of it. An error wrapping ErrOutcomeUnknown means the kernel may
// have committed.
func (n *Netlink) Apply(ctx context.Context, tx *Transaction) error {
	if tx.Empty() {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("nft: %s not sent: %w", txSize(tx), err)
	}
	guard := &ctxGuard{ctx: ctx}
	defer guard.stop()
	b := &batch{sets: map[string]*nftables.Set{}}
	conn, err := nftables.New(n.connOptions(guard, b)...)
	if err != nil {
		return fmt.Errorf("nft: %s: %w", txSize(tx), err)
	}
	b.conn = conn
	for i, op := range tx.Ops {
		if err := b.add(op); err != nil {
			return fmt.Errorf("nft: %s not sent: op %d (%s): %w", txSize(tx), i, opLabel(op), err)
		}
	}
	if err := conn.Flush(); err != nil {
		return applyError(ctx, tx, b, err)
	}
	return nil
}

func (n *Netlink) connOptions(guard *ctxGuard, b *batch) []nftables.ConnOption {
	opts := []nftables.ConnOption{nftables.WithSockOptions(
		// Runs when Flush dials, after the batch is encoded.
		func(c *netlink.Conn) error { return tuneSocket(c, b.bytes) },
		guard.arm,
	)}
	if n.netnsFD >= 0 {
		opts = append(opts, nftables.WithNetNSFd(n.netnsFD))
	}
	return opts
}

// tuneSocket sizes both socket buffers for a batch of batchBytes and caps
// acknowledgements at their header (an ack otherwise carries a copy of the
// whole request: 48 KiB per element chunk).
func tuneSocket(c *netlink.Conn, batchBytes int) error {
	if err := c.SetOption(netlink.CapAcknowledge, true); err != nil {
		return fmt.Errorf("set NETLINK_CAP_ACK: %w", err)
	}
	size := min(max(2*batchBytes, minSocketBuffer), maxSocketBuffer)
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	var serr error
	cerr := rc.Control(func(fd uintptr) {
		// The FORCE variants ignore wmem_max/rmem_max; they need
		// CAP_NET_ADMIN, which programming nftables needs anyway.
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, size)
		if serr == nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size)
		}
	})
	if cerr != nil {
		return fmt.Errorf("set socket buffers to %d bytes: %w", size, cerr)
	}
	if serr != nil {
		return fmt.Errorf("set socket buffers to %d bytes: %w", size, serr)
	}
	return nil
}

// applyError wraps a failed Flush. ENOBUFS (the kernel could not queue its
// answer) and a timeout (we stopped listening) leave the outcome unknown:
// the batch may have been committed (docs/nftables-notes.md, trap 3).
func applyError(ctx context.Context, tx *Transaction, b *batch, err error) error {
	what := fmt.Sprintf("nft: %s in %d messages", txSize(tx), b.msgs)
	if errors.Is(err, unix.ENOBUFS) || errors.Is(err, os.ErrDeadlineExceeded) {
		if cerr := ctx.Err(); cerr != nil {
			err = fmt.Errorf("%w: %w", cerr, err)
		}
		return fmt.Errorf("%s: %w: %w", what, ErrOutcomeUnknown, err)
	}
	return fmt.Errorf("%s failed: %w", what, err)
}

// txSize describes a transaction's size for error messages.
func txSize(tx *Transaction) string {
	elems, rules := 0, 0
	for _, op := range tx.Ops {
		elems += len(op.Elems)
		if op.Kind == OpAddRule {
			rules++
		}
	}
	return fmt.Sprintf("transaction of %d ops (%d elements, %d rules)", tx.Len(), elems, rules)
}

// opLabel names an op for an error message: short, and safe for a malformed
// op (Op.String panics on an add-rule op without a rule).
func opLabel(op Op) string {
	kinds := map[OpKind]string{
		OpAddTable: "add table", OpAddSet: "add set", OpAddChain: "add chain",
		OpAddElements: "add elements", OpDeleteElements: "delete elements",
		OpFlushChain: "flush chain", OpAddRule: "add rule", OpDeleteChain: "delete chain",
		OpDeleteSet: "delete set", OpDeleteTable: "delete table",
	}
	label, ok := kinds[op.Kind]
	if !ok {
		label = fmt.Sprintf("op kind %d", int(op.Kind))
	}
	if op.Name != "" {
		label += " " + op.Name
	}
	if n := len(op.Elems); n > 0 {
		label += fmt.Sprintf(" (%d elements)", n)
	}
	if op.Rule != nil {
		label += fmt.Sprintf(" %q", op.Rule.ID())
	}
	return label
}

// ctxGuard makes blocking socket calls honour a context: its deadline
// becomes the socket's, and cancelling it expires the socket at once.
type ctxGuard struct {
	ctx     context.Context
	cancels []func() bool
}

// arm is a SockOption; it may run more than once if the library dials again.
func (g *ctxGuard) arm(c *netlink.Conn) error {
	if dl, ok := g.ctx.Deadline(); ok {
		if err := c.SetDeadline(dl); err != nil {
			return fmt.Errorf("set the socket deadline to the context's %s: %w", dl.Format(time.RFC3339Nano), err)
		}
	}
	g.cancels = append(g.cancels, context.AfterFunc(g.ctx, func() {
		_ = c.SetDeadline(time.Unix(1, 0)) // in the past: fail pending I/O now
	}))
	return nil
}

func (g *ctxGuard) stop() {
	for _, c := range g.cancels {
		c()
	}
}

// nftTable is the table every object lives in.
func nftTable() *nftables.Table {
	return &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
}

// hookNums are the inet hooks a base chain may use.
var hookNums = map[string]nftables.ChainHook{
	"prerouting":  unix.NF_INET_PRE_ROUTING,
	"input":       unix.NF_INET_LOCAL_IN,
	"forward":     unix.NF_INET_FORWARD,
	"output":      unix.NF_INET_LOCAL_OUT,
	"postrouting": unix.NF_INET_POST_ROUTING,
}

// chainSpec declares a chain; with a hook it is a filter base chain at
// priority filter (0) + Priority with policy accept.
func chainSpec(name string, h *Hook) (*nftables.Chain, error) {
	c := &nftables.Chain{Table: nftTable(), Name: name}
	if h == nil {
		return c, nil
	}
	num, ok := hookNums[h.Hook]
	if !ok {
		return nil, fmt.Errorf("chain %s: unknown hook %q", name, h.Hook)
	}
	accept := nftables.ChainPolicyAccept
	c.Type = nftables.ChainTypeFilter
	c.Hooknum = nftables.ChainHookRef(num)
	c.Priority = nftables.ChainPriorityRef(*nftables.ChainPriorityFilter + nftables.ChainPriority(h.Priority))
	c.Policy = &accept
	return c, nil
}

// batch encodes a transaction's ops into a Conn's pending messages.
type batch struct {
	conn *nftables.Conn
	// sets added in this batch by name, for their batch IDs.
	sets   map[string]*nftables.Set
	lastID uint32
	msgs   int // netlink messages queued
	bytes  int // estimated size of the batch
}

func (b *batch) add(op Op) error {
	switch op.Kind {
	case OpAddElements, OpDeleteElements:
		return b.elements(op) // counts its own chunks
	case OpAddSet:
		return b.addSet(op)
	case OpAddRule:
		return b.addRule(op)
	}
	b.queued(opBytes)
	switch op.Kind {
	case OpAddTable:
		b.conn.AddTable(nftTable())
	case OpDeleteTable:
		b.conn.DelTable(nftTable())
	case OpDeleteSet:
		delete(b.sets, op.Name)
		b.conn.DelSet(b.setRef(op.Name))
	case OpAddChain:
		c, err := chainSpec(op.Name, op.Hook)
		if err != nil {
			return fmt.Errorf("declare chain: %w", err)
		}
		b.conn.AddChain(c)
	case OpDeleteChain:
		b.conn.DelChain(&nftables.Chain{Table: nftTable(), Name: op.Name})
	case OpFlushChain:
		b.conn.FlushChain(&nftables.Chain{Table: nftTable(), Name: op.Name})
	default:
		return fmt.Errorf("unknown op kind %d", int(op.Kind))
	}
	return nil
}

// queued counts one more message of about n bytes.
func (b *batch) queued(n int) {
	b.msgs++
	b.bytes += n
}

func (b *batch) addSet(op Op) error {
	s, err := setSpec(op.Name, op.SetType, op.Comment)
	if err != nil {
		return fmt.Errorf("declare set: %w", err)
	}
	s.ID = b.newID()
	b.sets[op.Name] = s
	b.queued(opBytes)
	return b.conn.AddSet(s, nil)
}

// newID numbers the sets of this batch. Setting the ID ourselves also keeps
// google/nftables from using its package-global counter, which is not safe
// for concurrent use.
func (b *batch) newID() uint32 {
	b.lastID++
	return b.lastID
}

// setRef names a set for an element or delete message.
func (b *batch) setRef(name string) *nftables.Set {
	if s, ok := b.sets[name]; ok {
		return s
	}
	return &nftables.Set{Table: nftTable(), Name: name}
}

func (b *batch) addRule(op Op) error {
	if op.Rule == nil {
		return errors.New("add rule without a rule")
	}
	exprs, err := b.ruleExprs(op.Rule)
	if err != nil {
		return fmt.Errorf("encode rule: %w", err)
	}
	b.queued(ruleBytes)
	b.conn.AddRule(&nftables.Rule{
		Table:    nftTable(),
		Chain:    &nftables.Chain{Table: nftTable(), Name: op.Name},
		Exprs:    exprs,
		UserData: ruleUserData(op.Rule),
	})
	return nil
}

// addAnonSet adds a constant anonymous set for one rule. The kernel names it
// and binds it to the rule that refers to it by its batch ID.
func (b *batch) addAnonSet(t nftables.SetDatatype, keys []byte) (*nftables.Set, error) {
	s := &nftables.Set{Table: nftTable(), Name: "__set%d", ID: b.newID(),
		Anonymous: true, Constant: true, KeyType: t}
	elems := make([]nftables.SetElement, len(keys))
	for i, k := range keys {
		elems[i] = nftables.SetElement{Key: []byte{k}}
	}
	b.queued(opBytes) // the set
	b.queued(opBytes) // its elements
	return s, b.conn.AddSet(s, elems)
}

// elements queues element adds or deletes in chunks small enough for the element
// list's 16-bit attribute length (docs/nftables-notes.md, trap 1). Deletes of
// map elements name only the key.
func (b *batch) elements(op Op) error {
	del := op.Kind == OpDeleteElements
	groups := make([][]nftables.SetElement, 0, len(op.Elems))
	for _, e := range op.Elems {
		els, err := kernelElems(op.SetType, e, del)
		if err != nil {
			return fmt.Errorf("set %s: %w", op.Name, err)
		}
		groups = append(groups, els)
	}
	set := b.setRef(op.Name)
	for _, chunk := range chunkElems(groups) {
		size := opBytes
		for _, el := range chunk {
			size += encodedElemSize(el)
		}
		b.queued(size)
		var err error
		if del {
			err = b.conn.SetDeleteElements(set, chunk)
		} else {
			err = b.conn.SetAddElements(set, chunk)
		}
		if err != nil {
			return fmt.Errorf("set %s: %w", op.Name, err)
		}
	}
	return nil
}
