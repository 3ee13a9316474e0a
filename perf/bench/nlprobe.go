package bench

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/gob"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nftpolicy/nftpolicy/internal/compile"
	"github.com/nftpolicy/nftpolicy/internal/diff"
	"github.com/nftpolicy/nftpolicy/internal/model"
	"github.com/nftpolicy/nftpolicy/internal/netns"
	"github.com/nftpolicy/nftpolicy/internal/nft"
	"github.com/nftpolicy/nftpolicy/perf/gen"
)

// The netlink probe is a child process with NLDEBUG set (see nldebug.go),
// which makes every netlink call of that process slower: so the timed runs
// happen in the parent, and the probe, in a namespace of its own, follows
// the same cluster through the same events (it generates them from the same
// seed and compiles them itself; the parent checks that its transactions
// are the agent's, by hash) and for each transaction (1) applies it,
// counting messages and bytes at the socket, and (2) replays the captured
// batch from a bare netlink socket: the kernel's cost of exactly that batch
// with no userspace work at all, the physical limit.

type probeRequest struct {
	Event   int  // index into the events; -1: the full programming
	Reps    int  // timed replays
	Rewrite bool // also capture what a full rewrite after the event sends
}

type probeReply struct {
	TxHash              string
	SentMsgs, SentBytes int
	RecvMsgs, RecvBytes int
	Bare                []time.Duration
	BareClose           []time.Duration // closing the replay's socket afterwards
	RewriteSentMsgs     int
	RewriteSentBytes    int
	Err                 string
}

// probe is the parent's handle on the child.
type probe struct {
	cmd *exec.Cmd
	enc *gob.Encoder
	dec *gob.Decoder
}

// startProbe starts `<this binary> nlprobe NETNS SIZE SEED ROUNDS`.
func startProbe(ns *NetNS, size gen.Size, seed uint64, rounds int) (*probe, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "nlprobe", ns.Path(), size.Name, strconv.FormatUint(seed, 10), strconv.Itoa(rounds))
	cmd.Env = append(os.Environ(), NLDebugEnv)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &probe{cmd: cmd, enc: gob.NewEncoder(in), dec: gob.NewDecoder(out)}, nil
}

// measure asks the probe to take the next step and checks that its
// transaction is tx.
func (p *probe) measure(req probeRequest, tx *nft.Transaction) (probeReply, error) {
	if err := p.enc.Encode(req); err != nil {
		return probeReply{}, fmt.Errorf("netlink probe: %w", err)
	}
	var r probeReply
	if err := p.dec.Decode(&r); err != nil {
		return probeReply{}, fmt.Errorf("netlink probe: %w", err)
	}
	if r.Err != "" {
		return r, errors.New("netlink probe: " + r.Err)
	}
	if r.TxHash != txHash(tx) {
		return r, errors.New("netlink probe: its transaction differs from the agent's")
	}
	return r, nil
}

func txHash(tx *nft.Transaction) string {
	h := sha256.Sum256([]byte(tx.String()))
	return hex.EncodeToString(h[:])
}

func (p *probe) close() error {
	p.cmd.Process.Kill()
	p.cmd.Wait()
	return nil
}

// probeState is the child's copy of the cluster.
type probeState struct {
	mc     *model.Cluster
	events []gen.Event
	rs     *nft.Ruleset // what its namespace holds
	next   int          // the next event to apply
}

// childSetup is what a child process of the suite (the netlink probe,
// the memory run) starts with: its size, and the namespace it was given,
// opened, once checked to be one of the suite's own.
func childSetup(what, nsPath, sizeName string) (gen.Size, int, error) {
	if filepath.Dir(nsPath) != netns.Dir || !prefixRE.MatchString(filepath.Base(nsPath)) {
		return gen.Size{}, -1, fmt.Errorf("%s: %s is not a suite namespace", what, nsPath)
	}
	size, err := gen.SizeByName(sizeName)
	if err != nil {
		return gen.Size{}, -1, err
	}
	nsfd, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return gen.Size{}, -1, err
	}
	return size, nsfd, nil
}

// RunProbe is the child's main: it serves requests from stdin until EOF.
func RunProbe(nsPath, sizeName string, seed uint64, rounds int) error {
	if !strings.Contains(os.Getenv("NLDEBUG"), "level=1") {
		return errors.New("nlprobe needs " + NLDebugEnv)
	}
	size, nsfd, err := childSetup("nlprobe", nsPath, sizeName)
	if err != nil {
		return err
	}
	c := gen.Generate(size, seed)
	mc, err := c.Model()
	if err != nil {
		return err
	}
	st := &probeState{mc: mc, events: c.Events(gen.NodeUnderTest, rounds)}
	capt, err := newCapturer()
	if err != nil {
		return err
	}
	kernel := nft.NewNetlink(nsfd)
	enc, dec := gob.NewEncoder(os.Stdout), gob.NewDecoder(os.Stdin)
	for {
		var req probeRequest
		if err := dec.Decode(&req); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		reply, err := st.serve(nsfd, kernel, capt, req)
		if err != nil {
			reply.Err = err.Error()
		}
		if err := enc.Encode(reply); err != nil {
			return err
		}
	}
}

func (st *probeState) serve(nsfd int, kernel *nft.Netlink, capt *capturer, req probeRequest) (probeReply, error) {
	ctx := context.Background()
	var tx, revert *nft.Transaction
	var after *nft.Ruleset
	if req.Event < 0 {
		after = compile.Node(st.mc, gen.NodeUnderTest)
		tx, revert = diff.Diff(nil, after), deleteTableTx
	} else {
		if req.Event != st.next {
			return probeReply{}, fmt.Errorf("asked for event %d, next is %d", req.Event, st.next)
		}
		st.next++
		if err := applyToModel(st.mc, st.events[req.Event]); err != nil {
			return probeReply{}, err
		}
		after = compile.Node(st.mc, gen.NodeUnderTest)
		tx, revert = diff.Diff(st.rs, after), diff.Diff(after, st.rs)
	}
	st.rs = after
	if tx.Empty() { // a quiet event (quietEvents): nothing to send or replay
		return probeReply{TxHash: txHash(tx)}, nil
	}
	c, err := capt.capture(func() error { return kernel.Apply(ctx, tx) })
	if err != nil {
		return probeReply{}, err
	}
	reply := probeReply{TxHash: txHash(tx), SentMsgs: len(c.Sent), SentBytes: c.SentBytes, RecvMsgs: c.RecvMsgs, RecvBytes: c.RecvBytes}
	for range req.Reps {
		if err := kernel.Apply(ctx, revert); err != nil {
			return reply, fmt.Errorf("revert: %w", err)
		}
		d, closed, err := replay(nsfd, c)
		if err != nil {
			return reply, fmt.Errorf("replay: %w", err)
		}
		reply.Bare = append(reply.Bare, d)
		reply.BareClose = append(reply.BareClose, closed)
	}
	if req.Rewrite {
		rewrite := &nft.Transaction{Ops: append([]nft.Op{{Kind: nft.OpDeleteTable}}, diff.Diff(nil, after).Ops...)}
		rc, err := capt.capture(func() error { return kernel.Apply(ctx, rewrite) })
		if err != nil {
			return reply, fmt.Errorf("rewrite: %w", err)
		}
		reply.RewriteSentMsgs, reply.RewriteSentBytes = len(rc.Sent), rc.SentBytes
	}
	return reply, nil
}

// capturer owns fd 2: mdlayher/netlink's debug logger writes there, and a
// goroutine parses what arrives between a capture's markers and drops the
// rest (the untimed reverts), so the logger never blocks.
type capturer struct {
	w    *os.File // the pipe's write end, which fd 2 now is
	done chan captured
	seq  int
}

type captured struct {
	c   *nlCapture
	err error
}

func newCapturer() (*capturer, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	if err := unix.Dup2(int(w.Fd()), 2); err != nil {
		return nil, err
	}
	c := &capturer{w: w, done: make(chan captured, 1)}
	go c.read(r)
	return c, nil
}

func (c *capturer) read(r io.Reader) {
	br := bufio.NewReaderSize(r, 1<<20)
	var cur *nlCapture
	var perr error
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			close(c.done)
			return
		}
		switch {
		case strings.HasPrefix(line, "@@begin "):
			cur, perr = &nlCapture{}, nil
		case strings.HasPrefix(line, "@@end "):
			c.done <- captured{cur, perr}
			cur = nil
		case cur != nil && perr == nil:
			perr = cur.parseLine(line)
		}
	}
}

// capture runs fn and parses the netlink traffic it caused.
func (c *capturer) capture(fn func() error) (*nlCapture, error) {
	c.seq++
	fmt.Fprintf(c.w, "@@begin %d\n", c.seq)
	ferr := fn()
	fmt.Fprintf(c.w, "@@end %d\n", c.seq)
	got, ok := <-c.done
	if !ok {
		return nil, errors.New("capture pipe closed")
	}
	return got.c, errors.Join(ferr, got.err)
}

// replay sends the captured batch from a fresh bare socket and reads every
// answer. nf_tables processes a batch inside sendmsg(2), commit included,
// and queues its answers before returning, so this is the kernel's whole
// cost of the batch. Closing the socket is timed apart: after a batch that
// deleted something, close(2) blocks for milliseconds (measured: ~12 ms
// for one deleted element, against ~80 µs for the batch itself), a cost a
// client that keeps its socket does not pay per transaction.
func replay(nsfd int, c *nlCapture) (batch, closed time.Duration, err error) {
	fd, err := netns.Socket(nsfd, unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_NETFILTER)
	if err != nil {
		return 0, 0, err
	}
	defer func() {
		if fd >= 0 {
			unix.Close(fd)
		}
	}()
	buf := make([]byte, 0, c.SentBytes)
	for _, m := range c.Sent {
		buf = append(buf, m...)
		buf = append(buf, make([]byte, align4(len(m))-len(m))...)
	}
	size := max(2*len(buf), 8<<20)
	for _, opt := range []int{unix.SO_SNDBUFFORCE, unix.SO_RCVBUFFORCE} {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt, size); err != nil {
			return 0, 0, err
		}
	}
	// As the agent's socket: acknowledgements carry only the header.
	if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1); err != nil {
		return 0, 0, err
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, 0, err
	}
	rbuf := make([]byte, 1<<20)
	start := time.Now()
	if err := unix.Sendto(fd, buf, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, 0, err
	}
	got, err := drain(fd, rbuf)
	batch = time.Since(start)
	if err != nil {
		return 0, 0, err
	}
	if got != c.RecvMsgs {
		return 0, 0, fmt.Errorf("replay got %d answers, the agent's batch %d", got, c.RecvMsgs)
	}
	start = time.Now()
	err = unix.Close(fd)
	closed, fd = time.Since(start), -1
	return batch, closed, err
}

// drain reads every queued answer and counts the messages; an error answer
// fails the replay.
func drain(fd int, rbuf []byte) (int, error) {
	got := 0
	for {
		n, _, err := unix.Recvfrom(fd, rbuf, unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EAGAIN) {
			return got, nil
		}
		if err != nil {
			return got, err
		}
		for b := rbuf[:n]; len(b) >= nlHeaderLen; {
			l := int(binary.NativeEndian.Uint32(b))
			if l < nlHeaderLen || l > len(b) {
				return got, fmt.Errorf("bad answer length %d", l)
			}
			if typ := binary.NativeEndian.Uint16(b[4:]); typ == unix.NLMSG_ERROR && l >= nlHeaderLen+4 {
				if errno := int32(binary.NativeEndian.Uint32(b[16:])); errno != 0 {
					return got, fmt.Errorf("kernel refused the replayed batch: %w", unix.Errno(-errno))
				}
			}
			got++
			b = b[min(align4(l), len(b)):]
		}
	}
}
