package netlab

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// ServeUDP makes endpoint answer the datagrams it receives on port, in both
// families, with what answer returns (nil: no reply), from the address each
// was sent to; a name server, for one. It replaces nothing: serving a
// (endpoint, port) twice is an error. Closing the lab or removing the
// endpoint stops it.
func (l *Lab) ServeUDP(endpoint string, port uint16, answer func(query []byte) []byte) error {
	exists, err := l.addListener(endpoint, "UDP", port, answer)
	if exists {
		return fmt.Errorf("netlab: %s already listens on UDP/%d", endpoint, port)
	}
	return err
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
