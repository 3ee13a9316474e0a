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
	sock     *netlink.Conn // the lasting socket; nil: dial on the next Apply
	bufBytes int           // the socket buffers' size
	sent     int           // bytes of the last batch sent
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
	if n.sock == nil {
		return nil
	}
	err := n.sock.Close()
	n.sock, n.bufBytes = nil, 0
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

// Socket buffer sizes. A batch is one sendmsg, so the send buffer must hold
// the whole batch (docs/nftables-notes.md, trap 2); the kernel answers every
// message and echoes every rule, and a receive buffer that overflows loses the
// answers to a committed batch (docs/nftables-notes.md, trap 3). Both are
// sized from the batch and a generous allowance for the answers.
const (
	minSocketBuffer = 8 << 20
	maxSocketBuffer = 1 << 30
	// ruleBytes allows for one rule's echo (expressions plus a comment of
	// at most MaxCommentLen bytes).
	ruleBytes = 1024
	// opBytes allows for any message's acknowledgement.
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
	if n.sock == nil {
		if err := n.dial(); err != nil {
			return fmt.Errorf("nft: %s: %w", txSize(tx), err)
		}
	}
	b, err := encode(n.table, tx)
	if err != nil {
		return fmt.Errorf("nft: %s not sent: %w", txSize(tx), err)
	}
	n.sent = b.bytes()
	if want := socketBuffer(n.sent + len(b.msgs)*opBytes + b.rules*ruleBytes); want > n.bufBytes {
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
	if err := sendBatch(n.sock, b.msgs); err != nil {
		return applyError(ctx, tx, len(b.msgs), err)
	}
	return nil
}

// dial opens the lasting socket. Acknowledgements carry only their
// header (NETLINK_CAP_ACK): one otherwise carries a copy of the whole
// request, 48 KiB per element chunk.
func (n *Netlink) dial() error {
	ns := 0 // mdlayher/netlink: 0 is the caller's namespace
	if n.netnsFD >= 0 {
		ns = n.netnsFD
	}
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: ns})
	if err != nil {
		return fmt.Errorf("open a netlink socket: %w", err)
	}
	n.sock = c
	if err := c.SetOption(netlink.CapAcknowledge, true); err != nil {
		_ = n.closeConn()
		return fmt.Errorf("set NETLINK_CAP_ACK: %w", err)
	}
	if err := setBuffers(c, minSocketBuffer); err != nil {
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

// setBuffers sizes both socket buffers. A batch is one sendmsg, so the
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

// applyError wraps a failed sendBatch. ENOBUFS (the kernel could not queue its
// answer) and a timeout (we stopped listening) leave the outcome unknown:
// the batch may have been committed (docs/nftables-notes.md, trap 3).
func applyError(ctx context.Context, tx *Transaction, msgs int, err error) error {
	what := fmt.Sprintf("nft: %s in %d messages", txSize(tx), msgs)
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

// batch encodes a transaction's ops into the netlink messages of one
// batch, in op order. Element lists are written by elemWriter; every other
// message is encoded by google/nftables into a Conn whose socket is enc's
// test socket: collect hands them over.
type batch struct {
	enc    *nftables.Conn    // encodes; its Flush gives its messages to take, nothing is sent
	msgs   []netlink.Message // the batch, without its begin and end
	queued bool              // enc holds messages not yet in msgs
	table  string            // the table every object of the batch is in
	// sets added in this batch by name, for their batch IDs.
	sets   map[string]*nftables.Set
	lastID uint32
	rules  int // rules added, each echoed by the kernel
}

func newBatch(table string) (*batch, error) {
	b := &batch{table: table, sets: map[string]*nftables.Set{}}
	enc, err := nftables.New(nftables.WithTestDial(b.take))
	if err != nil {
		return nil, err
	}
	b.enc = enc
	return b, nil
}

// encode encodes tx for the table.
func encode(table string, tx *Transaction) (*batch, error) {
	b, err := newBatch(table)
	if err != nil {
		return nil, err
	}
	for i, op := range tx.Ops {
		if err := b.add(op); err != nil {
			return nil, fmt.Errorf("op %d (%s): %w", i, opLabel(op), err)
		}
	}
	return b, b.collect()
}

// captureAck is what take answers each message of a Flush with: an
// acknowledgement as the kernel sends it (errno 0, the request's header).
var captureAck = netlink.Message{Header: netlink.Header{Length: nlHeaderLen + 20, Type: netlink.Error}, Data: make([]byte, 20)}

// take is enc's socket. A Flush sends it the batch, whose messages it
// keeps (their sequence numbers, PID and length left for the real socket
// to fill in), then reads one answer per message.
func (b *batch) take(req []netlink.Message) ([]netlink.Message, error) {
	if req == nil {
		return []netlink.Message{captureAck}, nil
	}
	for _, m := range req[1 : len(req)-1] { // inside the batch's begin and end
		m.Header.Length, m.Header.Sequence, m.Header.PID = 0, 0, 0
		b.msgs = append(b.msgs, m)
	}
	return nil, nil
}

// collect moves enc's messages into msgs.
func (b *batch) collect() error {
	if !b.queued {
		return nil
	}
	b.queued = false
	return b.enc.Flush()
}

// bytes is the batch's size on the socket, without its begin and end.
func (b *batch) bytes() int {
	return msgsBytes(b.msgs)
}

func msgsBytes(msgs []netlink.Message) int {
	n := 0
	for _, m := range msgs {
		n += nlHeaderLen + align4(len(m.Data))
	}
	return n
}

// nlHeaderLen is a netlink message header's size.
const nlHeaderLen = 16

func (b *batch) add(op Op) error {
	switch op.Kind {
	case OpAddElements, OpDeleteElements:
		return b.elements(op)
	}
	b.queued = true
	switch op.Kind {
	case OpAddSet:
		return b.addSet(op)
	case OpAddRule:
		return b.addRule(op)
	case OpAddTable:
		b.enc.AddTable(nftTable(b.table))
	case OpDeleteTable:
		b.enc.DelTable(nftTable(b.table))
	case OpDeleteSet:
		delete(b.sets, op.Name)
		b.enc.DelSet(b.setRef(op.Name))
	case OpAddChain:
		c, err := chainSpec(b.table, op.Name, op.Hook)
		if err != nil {
			return fmt.Errorf("declare chain: %w", err)
		}
		b.enc.AddChain(c)
	case OpDeleteChain:
		b.enc.DelChain(&nftables.Chain{Table: nftTable(b.table), Name: op.Name})
	case OpFlushChain:
		b.enc.FlushChain(&nftables.Chain{Table: nftTable(b.table), Name: op.Name})
	default:
		return fmt.Errorf("unknown op kind %d", int(op.Kind))
	}
	return nil
}

func (b *batch) addSet(op Op) error {
	s, err := setSpec(op.Name, op.SetType, op.Comment)
	if err != nil {
		return fmt.Errorf("declare set: %w", err)
	}
	s.Table = nftTable(b.table)
	s.ID = b.newID()
	b.sets[op.Name] = s
	return b.enc.AddSet(s, nil)
}

// newID numbers the sets of this batch. Setting the ID ourselves also keeps
// google/nftables from using its package-global counter, which is not safe
// for concurrent use.
func (b *batch) newID() uint32 {
	b.lastID++
	return b.lastID
}

// setRef names a set for a delete message.
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
	b.rules++
	b.enc.AddRule(&nftables.Rule{
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
	return s, b.enc.AddSet(s, elems)
}

// elements writes an op's element changes in messages small enough for the
// element list's 16-bit attribute length (docs/nftables-notes.md, trap 1),
// after the messages of the ops before it.
func (b *batch) elements(op Op) error {
	if err := b.collect(); err != nil {
		return err
	}
	var id uint32
	if s, ok := b.sets[op.Name]; ok {
		id = s.ID
	}
	w := newElemWriter(op, b.table, id)
	for _, e := range op.Elems {
		if err := w.add(op.SetType, e); err != nil {
			return err
		}
	}
	w.flush()
	b.msgs = append(b.msgs, w.out...)
	return nil
}
