package nft

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Netlink is the Kernel that programs the nftpolicy table over nf_tables
// netlink (google/nftables for writing, plain netlink dumps for reading).
// Apply keeps one socket open across transactions: closing a netlink
// socket after a batch that deleted something cost ~9 ms on this kernel
// (the perf suite's measure), more than the batch itself. Any failed
// transaction closes it, and the next one starts on a fresh socket (a
// google/nftables Conn keeps its first error for good:
// docs/nftables-notes.md, traps 7 and 11).
type Netlink struct {
	netnsFD int
	table   string // the inet table it programs and reads: TableName unless NewNetlinkTable

	mu       sync.Mutex
	conn     *nftables.Conn // the lasting connection; nil: dial on the next Apply
	sock     *netlink.Conn  // its socket, seen when it was dialled
	bufBytes int            // the socket buffers' size
	sent     int            // bytes of the last batch sent
}

// NewNetlink returns a Kernel for the network namespace open as netnsFD, or
// for the caller's namespace when netnsFD is -1. It opens nothing yet.
func NewNetlink(netnsFD int) *Netlink { return NewNetlinkTable(netnsFD, TableName) }

// NewNetlinkTable is NewNetlink for another inet table of nftpolicy's: the
// table of one secondary network (docs/multinetwork.md) is programmed by
// the same code as the primary one.
func NewNetlinkTable(netnsFD int, table string) *Netlink {
	return &Netlink{netnsFD: netnsFD, table: table}
}

// Close closes the lasting socket, if one is open.
func (n *Netlink) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.closeConn()
}

func (n *Netlink) closeConn() error {
	if n.conn == nil {
		return nil
	}
	err := n.conn.CloseLasting()
	n.conn, n.sock, n.bufBytes = nil, nil, 0
	if err != nil {
		return fmt.Errorf("close the netlink socket: %w", err)
	}
	return nil
}

// LastBatchBytes is the size of the last batch Apply encoded, so that
// metrics need not encode it a second time.
func (n *Netlink) LastBatchBytes() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.sent
}

var _ Kernel = (*Netlink)(nil)

// Socket buffer sizes. One Flush is one sendmsg, so the send buffer must hold
// the whole batch (docs/nftables-notes.md, trap 2); the kernel answers every
// message and echoes every rule, and a receive buffer that overflows loses the
// answers to a committed batch (docs/nftables-notes.md, trap 3). Both are
// sized from the batch.
const (
	minSocketBuffer = 8 << 20
	maxSocketBuffer = 1 << 30
	// ruleBytes is a generous estimate of one encoded rule (expressions
	// plus a comment of at most MaxCommentLen bytes).
	ruleBytes = 1024
	// opBytes is the overhead of any other message (headers, names).
	opBytes = 256
)

// Apply sends tx as one netlink batch on the lasting socket. The kernel
// commits all of it or none of it. An error wrapping ErrOutcomeUnknown means
// the kernel may have committed.
func (n *Netlink) Apply(ctx context.Context, tx *Transaction) (err error) {
	if tx.Empty() {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("nft: %s not sent: %w", txSize(tx), err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	defer func() {
		if err != nil {
			_ = n.closeConn() // its state is unknown: start afresh
		}
	}()
	if n.conn == nil {
		if err := n.dial(); err != nil {
			return fmt.Errorf("nft: %s: %w", txSize(tx), err)
		}
	}
	b := &batch{conn: n.conn, table: n.table, sets: map[string]*nftables.Set{}}
	for i, op := range tx.Ops {
		if err := b.add(op); err != nil {
			return fmt.Errorf("nft: %s not sent: op %d (%s): %w", txSize(tx), i, opLabel(op), err)
		}
	}
	n.sent = b.bytes
	if want := socketBuffer(b.bytes); want > n.bufBytes {
		if err := setBuffers(n.sock, want); err != nil {
			return fmt.Errorf("nft: %s not sent: %w", txSize(tx), err)
		}
		n.bufBytes = want
	}
	stop, err := guard(ctx, n.sock)
	if err != nil {
		return fmt.Errorf("nft: %s not sent: %w", txSize(tx), err)
	}
	defer stop()
	if err := n.conn.Flush(); err != nil {
		return applyError(ctx, tx, b, err)
	}
	return nil
}

// dial opens the lasting connection.
func (n *Netlink) dial() error {
	opts := []nftables.ConnOption{nftables.AsLasting(), nftables.WithSockOptions(func(c *netlink.Conn) error {
		n.sock = c
		if err := c.SetOption(netlink.CapAcknowledge, true); err != nil {
			return fmt.Errorf("set NETLINK_CAP_ACK: %w", err)
		}
		return nil
	})}
	if n.netnsFD >= 0 {
		opts = append(opts, nftables.WithNetNSFd(n.netnsFD))
	}
	conn, err := nftables.New(opts...)
	if err != nil {
		return fmt.Errorf("open a netlink socket: %w", err)
	}
	n.conn = conn
	if err := setBuffers(n.sock, minSocketBuffer); err != nil {
		_ = n.closeConn()
		return fmt.Errorf("new socket: %w", err)
	}
	n.bufBytes = minSocketBuffer
	return nil
}

// socketBuffer is the buffer size a batch of batchBytes needs.
func socketBuffer(batchBytes int) int {
	return min(max(2*batchBytes, minSocketBuffer), maxSocketBuffer)
}

// guard makes blocking socket calls honour ctx: its deadline becomes the
// socket's, and cancelling it expires the socket at once. stop undoes both.
func guard(ctx context.Context, c *netlink.Conn) (stop func(), err error) {
	if dl, ok := ctx.Deadline(); ok {
		if err := c.SetDeadline(dl); err != nil {
			return nil, fmt.Errorf("set the socket deadline to the context's %s: %w", dl.Format(time.RFC3339Nano), err)
		}
	}
	cancel := context.AfterFunc(ctx, func() {
		_ = c.SetDeadline(time.Unix(1, 0)) // in the past: fail pending I/O now
	})
	return func() {
		cancel()
		_ = c.SetDeadline(time.Time{})
	}, nil
}

// setBuffers sizes both socket buffers. One Flush is one sendmsg, so the
// send buffer must hold the whole batch; the kernel answers every message,
// and a receive buffer that overflows loses the answers to a committed
// batch (docs/nftables-notes.md, traps 2 and 3). Acknowledgements are capped at their
// header (NETLINK_CAP_ACK, set at dial): an ack otherwise carries a copy of
// the whole request, 48 KiB per element chunk.
func setBuffers(c *netlink.Conn, size int) error {
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

// nftTable is the table every object lives in.
func nftTable(name string) *nftables.Table {
	return &nftables.Table{Name: name, Family: nftables.TableFamilyINet}
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
func chainSpec(table, name string, h *Hook) (*nftables.Chain, error) {
	c := &nftables.Chain{Table: nftTable(table), Name: name}
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
	conn  *nftables.Conn
	table string // the table every object of the batch is in
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
		b.conn.AddTable(nftTable(b.table))
	case OpDeleteTable:
		b.conn.DelTable(nftTable(b.table))
	case OpDeleteSet:
		delete(b.sets, op.Name)
		b.conn.DelSet(b.setRef(op.Name))
	case OpAddChain:
		c, err := chainSpec(b.table, op.Name, op.Hook)
		if err != nil {
			return fmt.Errorf("declare chain: %w", err)
		}
		b.conn.AddChain(c)
	case OpDeleteChain:
		b.conn.DelChain(&nftables.Chain{Table: nftTable(b.table), Name: op.Name})
	case OpFlushChain:
		b.conn.FlushChain(&nftables.Chain{Table: nftTable(b.table), Name: op.Name})
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
	s.Table = nftTable(b.table)
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
	return &nftables.Set{Table: nftTable(b.table), Name: name}
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
		Table:    nftTable(b.table),
		Chain:    &nftables.Chain{Table: nftTable(b.table), Name: op.Name},
		Exprs:    exprs,
		UserData: ruleUserData(op.Rule),
	})
	return nil
}

// addAnonSet adds a constant anonymous set for one rule. The kernel names it
// and binds it to the rule that refers to it by its batch ID.
func (b *batch) addAnonSet(t nftables.SetDatatype, keys []byte) (*nftables.Set, error) {
	s := &nftables.Set{Table: nftTable(b.table), Name: "__set%d", ID: b.newID(),
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
// list's 16-bit attribute length (docs/nftables-notes.md, trap 1), keeping the
// kernel elements of one Elem (a range's start and end) together. Deletes of
// map elements name only the key. google/nftables encodes a chunk when it is
// queued, so one buffer serves every chunk: a new peer selector's ~9,000
// element changes at L once allocated their elements three times over.
func (b *batch) elements(op Op) error {
	del := op.Kind == OpDeleteElements
	set := b.setRef(op.Name)
	chunk := make([]nftables.SetElement, 0, min(len(op.Elems), 1024))
	size := 0
	send := func() error {
		if len(chunk) == 0 {
			return nil
		}
		b.queued(opBytes + size)
		var err error
		if del {
			err = b.conn.SetDeleteElements(set, chunk)
		} else {
			err = b.conn.SetAddElements(set, chunk)
		}
		if err != nil {
			return fmt.Errorf("set %s: %w", op.Name, err)
		}
		chunk, size = chunk[:0], 0
		return nil
	}
	for _, e := range op.Elems {
		n := len(chunk)
		var err error
		if chunk, err = appendKernelElems(chunk, op.SetType, e, del); err != nil {
			return fmt.Errorf("set %s: %w", op.Name, err)
		}
		esize := 0
		for _, el := range chunk[n:] {
			esize += encodedElemSize(el)
		}
		if size+esize > maxElemPayload && n > 0 {
			els := chunk[n:]
			chunk = chunk[:n]
			if err := send(); err != nil {
				return err
			}
			chunk = append(chunk, els...) // els lies past the sent chunk: still intact
		}
		size += esize
	}
	return send()
}
