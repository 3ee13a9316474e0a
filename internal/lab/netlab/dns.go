package netlab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nftpolicy/nftpolicy/internal/netns"
)

// ServeUDP makes endpoint answer the datagrams it receives on port, in both
// families, with what answer returns (nil: no reply), from the address each
// was sent to; a name server, for one. It replaces nothing: serving a
// (endpoint, port) twice is an error. Closing the lab or removing the
// endpoint stops it.
func (l *Lab) ServeUDP(endpoint string, port uint16, answer func(query []byte) []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	ns, _, err := l.lookup(endpoint)
	if err != nil {
		return err
	}
	key := listenKey{endpoint, "UDP", port}
	if _, ok := l.listeners[key]; ok {
		return fmt.Errorf("netlab: %s already listens on UDP/%d", endpoint, port)
	}
	ln := &listener{}
	for _, family := range []int{4, 6} {
		f, err := openListener(netns.Path(ns), family, "UDP", port)
		if family == 6 && errors.Is(err, unix.EAFNOSUPPORT) {
			continue
		}
		if err != nil {
			ln.close()
			return fmt.Errorf("netlab: serve %s UDP/%d IPv%d: %w", endpoint, port, family, err)
		}
		ln.files = append(ln.files, f)
		go answerEach(f, answer)
	}
	l.listeners[key] = ln
	return nil
}

// Exchange sends one datagram from endpoint to dst and returns the first
// datagram that comes back, waiting at most timeout (a DNS query, for
// one). The source is endpoint's first address of dst's family.
func (l *Lab) Exchange(ctx context.Context, from string, dst netip.AddrPort, msg []byte, timeout time.Duration) ([]byte, error) {
	family := 4
	if dst.Addr().Is6() {
		family = 6
	}
	ns, src, err := l.probeEnd(from, family)
	if err != nil {
		return nil, err
	}
	f, err := connectIn(ns, src, dst, unix.SOCK_DGRAM, unix.IPPROTO_UDP)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	defer watch(ctx, f, time.Now().Add(timeout))()
	if _, err := f.Write(msg); err != nil {
		return nil, err
	}
	buf := make([]byte, 65536)
	n, err := f.Read(buf)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}
