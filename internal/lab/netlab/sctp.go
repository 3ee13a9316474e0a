package netlab

// SCTP over raw IP sockets, for kernels without an SCTP stack (no sctp
// module: socket(2) with IPPROTO_SCTP fails with EPROTONOSUPPORT) whose
// netfilter still tracks and matches SCTP. A probe is the first half of an
// association's handshake, which is what a policy decides: the client sends
// an INIT, the destination's responder answers with an INIT-ACK carrying a
// state cookie. Conntrack sees a new SCTP association on the INIT and an
// established one on the INIT-ACK (the reply direction), as it does for a
// kernel SCTP stack; it checks the CRC32c of every packet it tracks, so a
// wrong checksum would make both packets invalid.
//
// Without an SCTP stack the kernel answers an SCTP packet for a local
// address with ICMP protocol unreachable (IPv4) or ICMPv6 parameter problem,
// unknown next header (IPv6), unless a raw socket of protocol SCTP received
// it. In a namespace with a responder, or a probing client, that raw socket
// exists, so no ICMP error competes with the reply.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Chunk and parameter types (RFC 9260 §3.2, §3.3.3).
const (
	sctpInit             = 1
	sctpInitAck          = 2
	sctpAbort            = 6
	sctpParamStateCookie = 7

	sctpHeaderLen = 12 // source port, destination port, verification tag, checksum
	sctpInitLen   = 20 // an INIT or INIT-ACK chunk without parameters
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// sizeofSockExtendedErr is sizeof(struct sock_extended_err).
const sizeofSockExtendedErr = 16

// sctpHeader is an SCTP packet's common header, less the checksum.
type sctpHeader struct {
	src, dst uint16
	vtag     uint32
}

// sctpPacket builds a packet of one chunk. The checksum is CRC32c over the
// whole packet with the checksum field zero, stored little-endian (RFC 9260
// appendix A; the kernel's sctp_compute_cksum does the same).
func sctpPacket(h sctpHeader, chunk []byte) []byte {
	b := make([]byte, sctpHeaderLen, sctpHeaderLen+len(chunk))
	binary.BigEndian.PutUint16(b[0:], h.src)
	binary.BigEndian.PutUint16(b[2:], h.dst)
	binary.BigEndian.PutUint32(b[4:], h.vtag)
	b = append(b, chunk...)
	binary.LittleEndian.PutUint32(b[8:], sctpChecksum(b))
	return b
}

func sctpChecksum(b []byte) uint32 {
	c := crc32.Update(0, castagnoli, b[:8])
	c = crc32.Update(c, castagnoli, []byte{0, 0, 0, 0})
	return crc32.Update(c, castagnoli, b[sctpHeaderLen:])
}

// initChunk builds an INIT (typ sctpInit) or INIT-ACK (sctpInitAck) with
// the given parameters, each already encoded and padded.
func initChunk(typ uint8, tag, tsn uint32, params ...[]byte) []byte {
	c := make([]byte, sctpInitLen)
	c[0] = typ
	binary.BigEndian.PutUint32(c[4:], tag)     // initiate tag: the peer puts it in its packets' headers
	binary.BigEndian.PutUint32(c[8:], 1<<16)   // advertised receiver window
	binary.BigEndian.PutUint16(c[12:], 10)     // outbound streams
	binary.BigEndian.PutUint16(c[14:], 0xffff) // maximum inbound streams
	binary.BigEndian.PutUint32(c[16:], tsn)    // initial TSN
	for _, p := range params {
		c = append(c, p...)
	}
	binary.BigEndian.PutUint16(c[2:], uint16(len(c)))
	return c
}

// stateCookie is the INIT-ACK's mandatory State Cookie parameter. A real
// stack signs the association's state into it and gets it back in the
// COOKIE ECHO; a probe stops at the INIT-ACK, so random bytes do.
func stateCookie() []byte {
	p := make([]byte, 4+16)
	binary.BigEndian.PutUint16(p[0:], sctpParamStateCookie)
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	for i := 4; i < len(p); i += 4 {
		binary.BigEndian.PutUint32(p[i:], rand.Uint32())
	}
	return p
}

// abortChunk is an ABORT without causes and with the T bit clear: the
// header carries the peer's tag, as for an INIT to a port nobody listens on
// (RFC 9260 §8.4 (8), what the kernel's SCTP stack sends).
func abortChunk() []byte { return []byte{sctpAbort, 0, 0, 4} }

// parseSCTP reads a packet's common header and its first chunk. ok is
// false for anything truncated or with a wrong checksum, which a stack
// drops unseen.
func parseSCTP(b []byte) (h sctpHeader, typ uint8, chunk []byte, ok bool) {
	if len(b) < sctpHeaderLen+4 || binary.LittleEndian.Uint32(b[8:]) != sctpChecksum(b) {
		return h, 0, nil, false
	}
	h = sctpHeader{binary.BigEndian.Uint16(b[0:]), binary.BigEndian.Uint16(b[2:]), binary.BigEndian.Uint32(b[4:])}
	n := int(binary.BigEndian.Uint16(b[sctpHeaderLen+2:]))
	if n < 4 || sctpHeaderLen+n > len(b) {
		return h, 0, nil, false
	}
	return h, b[sctpHeaderLen], b[sctpHeaderLen : sctpHeaderLen+n], true
}

// stripIPv4 drops the IPv4 header that raw IPv4 sockets deliver (raw IPv6
// sockets deliver the payload only).
func stripIPv4(b []byte) []byte {
	if len(b) < 20 {
		return nil
	}
	ihl := int(b[0]&0x0f) * 4
	if ihl < 20 || ihl > len(b) {
		return nil
	}
	return b[ihl:]
}

// rawSCTPIn opens a non-blocking raw IP socket of protocol SCTP in the
// namespace at path.
func rawSCTPIn(path string, family int) (int, error) {
	return socketIn(path, domain(family), unix.SOCK_RAW, unix.IPPROTO_SCTP)
}

// noRaw tells whether err means raw sockets are not allowed here (no
// CAP_NET_RAW): then SCTP cannot be probed at all.
func noRaw(err error) bool { return errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) }

// probeRawSCTP sends an INIT from src to dst from a raw socket and waits
// for the INIT-ACK (allowed), an ABORT (denied, reset) or an ICMP error
// about the INIT (denied). Parallel probes between the same two addresses
// each get a copy of every packet; the ports and the verification tag,
// both random, pick out this probe's.
func probeRawSCTP(ctx context.Context, ns string, src netip.Addr, dst netip.AddrPort, deadline time.Time) Outcome {
	family := 4
	if dst.Addr().Is6() {
		family = 6
	}
	fd, err := rawSCTPIn(ns, family)
	if noRaw(err) {
		return Outcome{Verdict: Skipped, Err: fmt.Errorf("no SCTP sockets on this kernel, and no raw sockets to send SCTP from: %w", err)}
	}
	if err != nil {
		return failed(fmt.Errorf("raw SCTP socket: %w", err))
	}
	// Report every ICMP error about our packets, with the packet it was
	// about (the error queue), not only the "hard" ones.
	level, opt := unix.IPPROTO_IP, unix.IP_RECVERR
	if family == 6 {
		level, opt = unix.IPPROTO_IPV6, unix.IPV6_RECVERR
	}
	if err := unix.SetsockoptInt(fd, level, opt, 1); err != nil {
		unix.Close(fd)
		return failed(fmt.Errorf("RECVERR: %w", err))
	}
	// Bind and connect pick the source address and receive only what dst
	// sends to it; a raw socket has no ports, so both are 0.
	if err := unix.Bind(fd, sockaddr(netip.AddrPortFrom(src, 0))); err != nil {
		unix.Close(fd)
		return failed(fmt.Errorf("bind %v: %w", src, err))
	}
	if err := unix.Connect(fd, sockaddr(netip.AddrPortFrom(dst.Addr(), 0))); err != nil {
		unix.Close(fd)
		return classify(err)
	}
	f := os.NewFile(uintptr(fd), "probe-sctp")
	defer f.Close()
	defer watch(ctx, f, deadline)()

	// A port in Linux's default ephemeral range, and a tag that is never 0
	// (an INIT's tag must not be).
	sport := uint16(32768 + rand.IntN(61000-32768))
	tag := 1 + rand.Uint32N(1<<32-1)
	init := sctpPacket(sctpHeader{src: sport, dst: dst.Port()}, initChunk(sctpInit, tag, rand.Uint32()))
	// EPERM: our own namespace's output hook dropped the INIT. Wait out the
	// deadline, as a TCP SYN dropped that way would.
	if _, err := f.Write(init); err != nil && !errors.Is(err, unix.EPERM) {
		return classify(err)
	}
	buf := make([]byte, 2048)
	for {
		n, err := f.Read(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return classify(err)
		}
		if errors.Is(err, io.EOF) {
			continue // an IPv6 packet without payload, not our answer
		}
		if err != nil {
			// An ICMP error arrived (the socket's pending error); the error
			// queue says which packet it was about.
			if o, ok := sctpICMPError(f, sport, dst.Port()); ok {
				return o
			}
			var errno unix.Errno
			if !errors.As(err, &errno) {
				return failed(err)
			}
			continue // about another probe's packet
		}
		pkt := buf[:n]
		if family == 4 {
			pkt = stripIPv4(pkt)
		}
		h, typ, _, ok := parseSCTP(pkt)
		if !ok || h.src != dst.Port() || h.dst != sport || h.vtag != tag {
			continue
		}
		switch typ {
		case sctpInitAck:
			return Outcome{Verdict: Allowed}
		case sctpAbort:
			return Outcome{Verdict: Denied, Reason: Reset, Err: errors.New("SCTP ABORT")}
		}
	}
}

// sctpICMPError drains f's error queue and reports the ICMP error, if any,
// that was about a packet from sport to dport. The queue holds each error
// with the start of the packet it was about, from the SCTP header on.
func sctpICMPError(f *os.File, sport, dport uint16) (o Outcome, mine bool) {
	rc, err := f.SyscallConn()
	if err != nil {
		return failed(err), true
	}
	buf := make([]byte, 64)
	oob := make([]byte, 256)
	rc.Control(func(fd uintptr) {
		for {
			n, oobn, _, _, err := unix.Recvmsg(int(fd), buf, oob, unix.MSG_ERRQUEUE)
			if err != nil {
				return // EAGAIN: drained
			}
			if n < 4 || binary.BigEndian.Uint16(buf[0:]) != sport || binary.BigEndian.Uint16(buf[2:]) != dport {
				continue
			}
			if ee, ok := extendedErr(oob[:oobn]); ok && !mine {
				o, mine = icmpOutcome(ee), true
			}
		}
	})
	return o, mine
}

// extendedErr finds the IP_RECVERR/IPV6_RECVERR control message.
func extendedErr(oob []byte) (unix.SockExtendedErr, bool) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return unix.SockExtendedErr{}, false
	}
	for _, m := range msgs {
		if (m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_RECVERR ||
			m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_RECVERR) &&
			len(m.Data) >= sizeofSockExtendedErr {
			d := m.Data
			return unix.SockExtendedErr{
				Errno: binary.NativeEndian.Uint32(d[0:]), Origin: d[4], Type: d[5], Code: d[6],
				Info: binary.NativeEndian.Uint32(d[8:]), Data: binary.NativeEndian.Uint32(d[12:]),
			}, true
		}
	}
	return unix.SockExtendedErr{}, false
}

// icmpOutcome classifies an ICMP error as the stream probes do: port
// unreachable (nft's plain "reject" for a protocol other than TCP) is a
// reset, any other error is unreachable.
func icmpOutcome(ee unix.SockExtendedErr) Outcome {
	err := fmt.Errorf("ICMP type %d code %d: %w", ee.Type, ee.Code, unix.Errno(ee.Errno))
	portUnreachable := ee.Origin == unix.SO_EE_ORIGIN_ICMP && ee.Type == 3 && ee.Code == 3 ||
		ee.Origin == unix.SO_EE_ORIGIN_ICMP6 && ee.Type == 1 && ee.Code == 4
	if portUnreachable {
		return Outcome{Verdict: Denied, Reason: Reset, Err: err}
	}
	return Outcome{Verdict: Denied, Reason: Unreachable, Err: err}
}

// sctpResponder answers SCTP INITs in one endpoint's namespace as the
// kernel's SCTP stack would: an INIT-ACK with a state cookie from a port
// that listens, an ABORT from any other. It answers nothing else; the
// probe's client never goes past the INIT-ACK.
type sctpResponder struct {
	mu    sync.Mutex
	ports map[uint16]bool
	files []*os.File
}

// newSCTPResponder opens one raw socket per family in the namespace at
// path and starts answering. It returns nil and no error when raw sockets
// are not allowed: the probes, which cannot open any either, then report
// Skipped.
func newSCTPResponder(path string) (*sctpResponder, error) {
	r := &sctpResponder{ports: map[uint16]bool{}}
	for _, family := range []int{4, 6} {
		fd, err := rawSCTPIn(path, family)
		if family == 6 && errors.Is(err, unix.EAFNOSUPPORT) {
			continue
		}
		if noRaw(err) {
			r.close()
			return nil, nil
		}
		if err == nil {
			// Learn each packet's destination address, to answer from it.
			level, opt := unix.IPPROTO_IP, unix.IP_PKTINFO
			if family == 6 {
				level, opt = unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO
			}
			if err = unix.SetsockoptInt(fd, level, opt, 1); err != nil {
				unix.Close(fd)
			}
		}
		if err != nil {
			r.close()
			return nil, fmt.Errorf("raw SCTP IPv%d: %w", family, err)
		}
		f := os.NewFile(uintptr(fd), fmt.Sprintf("sctp-responder-v%d", family))
		r.files = append(r.files, f)
		go r.serve(f, family)
	}
	return r, nil
}

func (r *sctpResponder) listen(port uint16) {
	r.mu.Lock()
	r.ports[port] = true
	r.mu.Unlock()
}

func (r *sctpResponder) listening(port uint16) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ports[port]
}

// close stops the responder; closing the files ends the serve goroutines.
func (r *sctpResponder) close() {
	for _, f := range r.files {
		f.Close()
	}
}

func (r *sctpResponder) serve(f *os.File, family int) {
	// A raw IPv4 socket receives the IP header too; IPv6 ones do not.
	answerEach(f, func(pkt []byte) []byte {
		if family == 4 {
			pkt = stripIPv4(pkt)
		}
		return r.answer(pkt)
	})
}

// answer returns the reply to one received packet, or nil.
func (r *sctpResponder) answer(pkt []byte) []byte {
	h, typ, chunk, ok := parseSCTP(pkt)
	// An INIT travels with tag 0 and carries the tag its sender wants back;
	// everything else (INIT-ACKs for this namespace's own probes included)
	// is not ours to answer.
	if !ok || typ != sctpInit || h.vtag != 0 || len(chunk) < sctpInitLen {
		return nil
	}
	peerTag := binary.BigEndian.Uint32(chunk[4:])
	if peerTag == 0 {
		return nil
	}
	back := sctpHeader{src: h.dst, dst: h.src, vtag: peerTag}
	if !r.listening(h.dst) {
		return sctpPacket(back, abortChunk())
	}
	return sctpPacket(back, initChunk(sctpInitAck, 1+rand.Uint32N(1<<32-1), rand.Uint32(), stateCookie()))
}
