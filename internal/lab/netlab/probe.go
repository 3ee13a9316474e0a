package netlab

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nftpolicy/nftpolicy/internal/netns"
)

// Verdict is what a probe found.
type Verdict int

const (
	// Allowed: the TCP/SCTP handshake completed (on a kernel without SCTP
	// sockets: the INIT-ACK came back), or the UDP echo came back.
	Allowed Verdict = iota + 1
	// Denied: anything else; Reason says how it showed.
	Denied
	// Skipped: the probe cannot be made here (SCTP on a kernel without SCTP
	// sockets, by a process that may not open raw sockets either).
	Skipped
	// Failed: the lab could not run the probe (unknown endpoint, no address
	// of that family, context cancelled, an unexpected socket error). Not a
	// verdict about the network.
	Failed
)

func (v Verdict) String() string {
	switch v {
	case Allowed:
		return "allowed"
	case Denied:
		return "denied"
	case Skipped:
		return "skipped"
	case Failed:
		return "failed"
	}
	return fmt.Sprintf("Verdict(%d)", int(v))
}

// Reason says how a denial showed.
type Reason int

const (
	NoReason Reason = iota
	// Timeout: no answer before the deadline; the probe or its answer was
	// dropped. A drop of the probe by its sender's own output hook also ends
	// here, as it does for TCP in the kernel (the SYN is retransmitted).
	Timeout
	// Reset: the destination refused. For TCP an RST, or an ICMP port
	// unreachable (nft's plain "reject" in an inet table sends one): both
	// surface as ECONNREFUSED and cannot be told apart. For UDP an ICMP port
	// unreachable. For SCTP an ABORT, or an ICMP port unreachable.
	Reset
	// Unreachable: another ICMP error, e.g. host unreachable or
	// administratively prohibited (EHOSTUNREACH, EACCES, ENETUNREACH).
	Unreachable
)

func (r Reason) String() string {
	switch r {
	case NoReason:
		return ""
	case Timeout:
		return "timeout"
	case Reset:
		return "reset"
	case Unreachable:
		return "unreachable"
	}
	return fmt.Sprintf("Reason(%d)", int(r))
}

// Outcome is the result of one probe.
type Outcome struct {
	Verdict Verdict
	Reason  Reason // set when Denied
	Err     error  // the error behind a denial, or why it was Skipped or Failed
}

func (o Outcome) String() string {
	s := o.Verdict.String()
	if o.Reason != NoReason {
		s += " (" + o.Reason.String() + ")"
	}
	if o.Verdict != Allowed && o.Verdict != Denied && o.Err != nil {
		s += ": " + o.Err.Error()
	}
	return s
}

// Probe sends one probe from endpoint from to endpoint to over IP family (4
// or 6) and proto ("TCP", "UDP", "SCTP"), to port on the first of to's
// addresses in that family, from the first of from's. It waits at most
// timeout (1 s if timeout <= 0), less if ctx ends sooner. Probes may run in
// parallel.
func (l *Lab) Probe(ctx context.Context, from, to string, family int, proto string, port uint16, timeout time.Duration) Outcome {
	if family != 4 && family != 6 {
		return failed(fmt.Errorf("netlab: family %d is neither 4 nor 6", family))
	}
	_, dst, err := l.probeEnd(to, family)
	if err != nil {
		return failed(err)
	}
	return l.ProbeAddr(ctx, from, dst, proto, port, timeout)
}

// ProbeAddr probes an address rather than an endpoint, such as a Service
// address that a DNAT rule in a node rewrites.
func (l *Lab) ProbeAddr(ctx context.Context, from string, dst netip.Addr, proto string, port uint16, timeout time.Duration) Outcome {
	return l.ProbeFrom(ctx, from, netip.Addr{}, dst, proto, port, timeout)
}

// ProbeFrom is ProbeAddr from a chosen source address of the endpoint (its
// address on a secondary network); an invalid src means its first address
// of dst's family.
func (l *Lab) ProbeFrom(ctx context.Context, from string, src, dst netip.Addr, proto string, port uint16, timeout time.Duration) Outcome {
	proto = strings.ToUpper(proto)
	typ, ipproto, err := protoNumbers(proto)
	if err != nil {
		return failed(err)
	}
	family := 4
	if dst.Is6() {
		family = 6
	}
	srcNS, first, err := l.probeEnd(from, family)
	if err != nil {
		return failed(err)
	}
	if !src.IsValid() {
		src = first
	}
	if timeout <= 0 {
		timeout = time.Second
	}
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}

	var o Outcome
	if typ == unix.SOCK_DGRAM {
		o = probeUDP(ctx, srcNS, src, netip.AddrPortFrom(dst, port), deadline)
	} else {
		o = probeStream(ctx, srcNS, src, netip.AddrPortFrom(dst, port), ipproto, deadline)
		if noSCTP(proto, o.Err) {
			// No SCTP stack: send the INIT from a raw socket (sctp.go).
			o = probeRawSCTP(ctx, srcNS, src, netip.AddrPortFrom(dst, port), deadline)
		}
	}
	if errors.Is(ctx.Err(), context.Canceled) && o.Verdict == Denied {
		return failed(ctx.Err())
	}
	return o
}

// probeEnd returns an endpoint's namespace path and its first address of
// family.
func (l *Lab) probeEnd(endpoint string, family int) (string, netip.Addr, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return "", netip.Addr{}, ErrClosed
	}
	ns, ips, err := l.lookup(endpoint)
	if err != nil {
		return "", netip.Addr{}, err
	}
	for _, a := range ips {
		if a.Is4() == (family == 4) {
			return netns.Path(ns), a, nil
		}
	}
	return "", netip.Addr{}, fmt.Errorf("netlab: %s has no IPv%d address", endpoint, family)
}

// probeStream connects a TCP or SCTP socket; only the handshake counts.
func probeStream(ctx context.Context, ns string, src netip.Addr, dst netip.AddrPort, ipproto int, deadline time.Time) Outcome {
	f, err := connectIn(ns, src, dst, unix.SOCK_STREAM, ipproto)
	if err != nil {
		return classify(err)
	}
	defer f.Close()
	defer watch(ctx, f, deadline)()
	rc, err := f.SyscallConn()
	if err != nil {
		return failed(err)
	}
	// Wait until writable, then ask the socket how connecting went (what
	// Go's net package does for a non-blocking connect).
	var cerr error
	err = rc.Write(func(fd uintptr) bool {
		soerr, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
		switch {
		case err != nil:
			cerr = err
		case soerr != 0:
			cerr = unix.Errno(soerr)
		default:
			_, err := unix.Getpeername(int(fd))
			return err == nil // ENOTCONN: still connecting
		}
		return true
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		return classify(err)
	}
	return Outcome{Verdict: Allowed}
}

// probeUDP sends a random token from a connected socket and waits for it to
// come back.
func probeUDP(ctx context.Context, ns string, src netip.Addr, dst netip.AddrPort, deadline time.Time) Outcome {
	f, err := connectIn(ns, src, dst, unix.SOCK_DGRAM, unix.IPPROTO_UDP)
	if err != nil {
		return classify(err)
	}
	defer f.Close()
	defer watch(ctx, f, deadline)()

	token := make([]byte, 16)
	rand.Read(token)
	// EPERM: our own namespace's output hook dropped the datagram. Wait
	// out the deadline, as a TCP SYN dropped that way would.
	if _, err := f.Write(token); err != nil && !errors.Is(err, unix.EPERM) {
		return classify(err)
	}
	buf := make([]byte, 64)
	for {
		n, err := f.Read(buf)
		if errors.Is(err, io.EOF) {
			continue // an empty datagram, not our echo
		}
		if err != nil {
			return classify(err)
		}
		if bytes.Equal(buf[:n], token) {
			return Outcome{Verdict: Allowed}
		}
	}
}

// connectIn creates a socket in namespace ns, binds it to src and starts
// connecting it to dst. The result is non-blocking and registered with Go's
// poller, so deadlines work.
func connectIn(ns string, src netip.Addr, dst netip.AddrPort, typ, ipproto int) (*os.File, error) {
	family := 4
	if dst.Addr().Is6() {
		family = 6
	}
	fd, err := socketIn(ns, domain(family), typ, ipproto)
	if err != nil {
		return nil, err
	}
	if typ == unix.SOCK_DGRAM {
		// Report every ICMP error on the socket, not only the "hard" ones:
		// without IP_RECVERR a connected UDP socket ignores e.g. ICMP host
		// unreachable, and a reject would look like a drop.
		level, opt := unix.IPPROTO_IP, unix.IP_RECVERR
		if family == 6 {
			level, opt = unix.IPPROTO_IPV6, unix.IPV6_RECVERR
		}
		if err := unix.SetsockoptInt(fd, level, opt, 1); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("RECVERR: %w", err)
		}
	}
	if err := unix.Bind(fd, sockaddr(netip.AddrPortFrom(src, 0))); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind %v: %w", src, err)
	}
	if err := unix.Connect(fd, sockaddr(dst)); err != nil && err != unix.EINPROGRESS {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), "probe"), nil
}

// watch applies deadline to f and cuts it short when ctx ends; call the
// result to stop watching.
func watch(ctx context.Context, f *os.File, deadline time.Time) (stop func() bool) {
	f.SetDeadline(deadline)
	return context.AfterFunc(ctx, func() { f.SetDeadline(time.Unix(1, 0)) })
}

// classify maps a socket error to a denial; anything unexpected is Failed.
func classify(err error) Outcome {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, unix.ETIMEDOUT):
		return Outcome{Verdict: Denied, Reason: Timeout, Err: err}
	case errors.Is(err, unix.ECONNREFUSED):
		return Outcome{Verdict: Denied, Reason: Reset, Err: err}
	case errors.Is(err, unix.EHOSTUNREACH), errors.Is(err, unix.ENETUNREACH),
		errors.Is(err, unix.EACCES), errors.Is(err, unix.EHOSTDOWN),
		errors.Is(err, unix.ENETDOWN), errors.Is(err, unix.ENOPROTOOPT):
		return Outcome{Verdict: Denied, Reason: Unreachable, Err: err}
	}
	return failed(err)
}

func failed(err error) Outcome { return Outcome{Verdict: Failed, Err: err} }

func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}
	}
	return &unix.SockaddrInet6{Addr: ap.Addr().As16(), Port: int(ap.Port())}
}
