package netlab

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nftpolicy/nftpolicy/internal/netns"
)

type listenKey struct {
	endpoint, proto string
	port            uint16
}

// listener is one (endpoint, protocol, port): an IPv4 and an IPv6 socket.
type listener struct{ files []*os.File }

// close stops the listener; closing an *os.File wakes its goroutine's
// pending accept or recvmsg.
func (ln *listener) close() {
	for _, f := range ln.files {
		f.Close()
	}
}

// Listen makes endpoint listen on port for proto ("TCP", "UDP" or "SCTP")
// on the unspecified address of both families. TCP and SCTP listeners accept
// and close; UDP listeners echo each datagram back from the address it was
// sent to. Listening again on the same (endpoint, proto, port) is a no-op.
// On a kernel without SCTP sockets, SCTP is answered from raw sockets
// instead (sctp.go): an INIT-ACK from a port that listens, an ABORT from
// any other port of an endpoint that listens on some SCTP port.
func (l *Lab) Listen(endpoint, proto string, port uint16) error {
	proto = strings.ToUpper(proto)
	if _, _, err := protoNumbers(proto); err != nil {
		return err
	}
	if port == 0 {
		return fmt.Errorf("netlab: listen on port 0")
	}
	_, err := l.addListener(endpoint, proto, port, nil)
	return err
}

// addListener opens endpoint's sockets for (proto, port) in both families
// and serves them: with answer, a UDP server that sends answer's reply to
// each datagram; without, the echo and accept of Listen. It reports whether
// the endpoint listened there already, in which case it does nothing.
func (l *Lab) addListener(endpoint, proto string, port uint16, answer func([]byte) []byte) (exists bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false, ErrClosed
	}
	ns, _, err := l.lookup(endpoint)
	if err != nil {
		return false, err
	}
	key := listenKey{endpoint, proto, port}
	if _, ok := l.listeners[key]; ok {
		return true, nil
	}
	ln := &listener{}
	for _, family := range []int{4, 6} {
		var f *os.File
		if answer != nil {
			if f, err = openListener(netns.Path(ns), family, proto, port); err == nil {
				go answerEach(f, answer)
			}
		} else {
			f, err = listen(netns.Path(ns), family, proto, port)
		}
		if noSCTP(proto, err) {
			// No SCTP stack: the endpoint's raw responder answers INITs.
			if err := l.listenRawSCTP(endpoint, netns.Path(ns), port); err != nil {
				ln.close()
				return false, fmt.Errorf("netlab: listen %s %s/%d: %w", endpoint, proto, port, err)
			}
			break
		}
		if family == 6 && errors.Is(err, unix.EAFNOSUPPORT) {
			continue
		}
		if err != nil {
			ln.close()
			return false, fmt.Errorf("netlab: listen %s %s/%d IPv%d: %w", endpoint, proto, port, family, err)
		}
		ln.files = append(ln.files, f)
	}
	l.listeners[key] = ln
	return false, nil
}

// listenRawSCTP adds port to endpoint's raw SCTP responder, starting it
// on first use. Callers hold l.mu.
func (l *Lab) listenRawSCTP(endpoint, path string, port uint16) error {
	r, ok := l.sctp[endpoint]
	if !ok {
		var err error
		if r, err = newSCTPResponder(path); err != nil {
			return err
		}
		l.sctp[endpoint] = r // nil without raw sockets: nothing answers
	}
	if r != nil {
		r.listen(port)
	}
	return nil
}

// closeListeners closes an endpoint's listeners. Callers hold l.mu.
func (l *Lab) closeListeners(endpoint string) {
	for k, ln := range l.listeners {
		if k.endpoint == endpoint {
			ln.close()
			delete(l.listeners, k)
		}
	}
	if r := l.sctp[endpoint]; r != nil {
		r.close()
	}
	delete(l.sctp, endpoint)
}

// listen opens one listening socket in the namespace at path and starts
// serving it.
func listen(path string, family int, proto string, port uint16) (*os.File, error) {
	typ, _, err := protoNumbers(proto)
	if err != nil {
		return nil, err
	}
	f, err := openListener(path, family, proto, port)
	if err != nil {
		return nil, err
	}
	if typ == unix.SOCK_DGRAM {
		go echo(f)
	} else {
		go acceptAndClose(f)
	}
	return f, nil
}

// openListener opens one listening socket in the namespace at path.
func openListener(path string, family int, proto string, port uint16) (*os.File, error) {
	typ, ipproto, err := protoNumbers(proto)
	if err != nil {
		return nil, err
	}
	fd, err := socketIn(path, domain(family), typ, ipproto)
	if err != nil {
		return nil, err
	}
	if err := setupListener(fd, family, typ, port); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), fmt.Sprintf("listen-%s-%d-v%d", proto, port, family)), nil
}

func setupListener(fd, family, typ int, port uint16) error {
	var sa unix.Sockaddr = &unix.SockaddrInet4{Port: int(port)}
	if family == 6 {
		sa = &unix.SockaddrInet6{Port: int(port)}
		// Separate sockets per family keep addresses plain (no v4-mapped).
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			return fmt.Errorf("IPV6_V6ONLY: %w", err)
		}
	}
	if typ == unix.SOCK_DGRAM {
		// Learn each datagram's destination address, to answer from it.
		level, opt := unix.IPPROTO_IP, unix.IP_PKTINFO
		if family == 6 {
			level, opt = unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO
		}
		if err := unix.SetsockoptInt(fd, level, opt, 1); err != nil {
			return fmt.Errorf("pktinfo: %w", err)
		}
	}
	if err := unix.Bind(fd, sa); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	if typ == unix.SOCK_STREAM {
		if err := unix.Listen(fd, 4096); err != nil {
			return fmt.Errorf("listen: %w", err)
		}
	}
	return nil
}

// acceptAndClose completes nothing itself (the kernel finished the
// handshake already); it only keeps the accept queue from filling up.
func acceptAndClose(f *os.File) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	for {
		var nfd int
		var aerr error
		err := rc.Read(func(fd uintptr) bool {
			nfd, _, aerr = unix.Accept4(int(fd), unix.SOCK_CLOEXEC)
			return aerr != unix.EAGAIN
		})
		if err != nil {
			return // closed
		}
		switch {
		case aerr == nil:
			unix.Close(nfd)
		case aerr == unix.EBADF || aerr == unix.EINVAL:
			return
		case aerr != unix.ECONNABORTED && aerr != unix.EINTR:
			time.Sleep(10 * time.Millisecond) // e.g. EMFILE: do not spin
		}
	}
}

// echo sends every datagram back to its sender. The reply's source is the
// address the datagram was sent to (IP_PKTINFO): left to routing, a host
// with several addresses could answer from another one, and the prober's
// connected socket would drop that reply as if the echo never came.
func echo(f *os.File) {
	answerEach(f, func(pkt []byte) []byte { return pkt })
}

// answerEach reads datagrams from f until it is closed and sends answer's
// reply to each (none when it returns nil) back to its sender, from the
// address the datagram was sent to (IP_PKTINFO/IPV6_PKTINFO must be on).
// A send error (a policy dropping the reply in output) is the prober's
// timeout to report.
func answerEach(f *os.File, answer func(pkt []byte) []byte) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	buf := make([]byte, 65536)
	oob := make([]byte, 256)
	for {
		var n, oobn int
		var from unix.Sockaddr
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, oobn, _, from, rerr = unix.Recvmsg(int(fd), buf, oob, 0)
			return rerr != unix.EAGAIN
		})
		if err != nil {
			return // closed
		}
		if rerr != nil || from == nil {
			continue
		}
		reply := answer(buf[:n])
		if reply == nil {
			continue
		}
		src := replySource(oob[:oobn])
		_ = rc.Write(func(fd uintptr) bool {
			return unix.Sendmsg(int(fd), reply, src, from, 0) != unix.EAGAIN
		})
	}
}

// replySource turns a received IP_PKTINFO/IPV6_PKTINFO into the control
// message that sends from the datagram's destination address.
func replySource(oob []byte) []byte {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	for _, m := range msgs {
		switch {
		case m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_PKTINFO &&
			len(m.Data) >= unix.SizeofInet4Pktinfo:
			var info unix.Inet4Pktinfo
			copy(info.Spec_dst[:], m.Data[8:12]) // ipi_addr: the header's destination
			return unix.PktInfo4(&info)
		case m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_PKTINFO &&
			len(m.Data) >= unix.SizeofInet6Pktinfo:
			var info unix.Inet6Pktinfo
			copy(info.Addr[:], m.Data[0:16])
			return unix.PktInfo6(&info)
		}
	}
	return nil
}

// protoNumbers maps a protocol name to socket type and protocol.
func protoNumbers(proto string) (typ, ipproto int, err error) {
	switch proto {
	case "TCP":
		return unix.SOCK_STREAM, unix.IPPROTO_TCP, nil
	case "UDP":
		return unix.SOCK_DGRAM, unix.IPPROTO_UDP, nil
	case "SCTP":
		// One-to-one style: connect, accept and errors as with TCP.
		return unix.SOCK_STREAM, unix.IPPROTO_SCTP, nil
	}
	return 0, 0, fmt.Errorf("netlab: unknown protocol %q", proto)
}

// noSCTP tells whether err means the kernel has no SCTP sockets (no sctp
// module): socket(2) then fails with EPROTONOSUPPORT.
func noSCTP(proto string, err error) bool {
	return proto == "SCTP" &&
		(errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.ESOCKTNOSUPPORT))
}

func domain(family int) int {
	if family == 6 {
		return unix.AF_INET6
	}
	return unix.AF_INET
}
