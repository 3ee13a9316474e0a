package bench

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/mdlayher/netlink"
)

// TestParseDebugLine checks that a message logged the way mdlayher/netlink's
// plain debugger logs it parses back to the bytes it sends.
func TestParseDebugLine(t *testing.T) {
	for _, m := range []netlink.Message{
		{Header: netlink.Header{Type: 0x0a02, Flags: netlink.Request | netlink.Acknowledge | 0x400, Sequence: 7, PID: 99},
			Data: []byte{2, 0, 0, 0, 8, 0, 1, 0, 'n', 'f', 't', 0}},
		{Header: netlink.Header{Type: netlink.Error, Flags: 0x100, Sequence: 1}, Data: []byte{0, 0, 0, 0}},
		{Header: netlink.Header{Type: 16, Flags: netlink.Request}, Data: []byte{0, 0, 10, 0}},
	} {
		m.Header.Length = uint32(nlHeaderLen + len(m.Data))
		want, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var c nlCapture
		if err := c.parseLine(fmt.Sprintf("nl: send msgs: %+v\n", m)); err != nil {
			t.Fatal(err)
		}
		if len(c.Sent) != 1 {
			t.Fatalf("parsed %d messages", len(c.Sent))
		}
		if got := c.Sent[0]; !bytes.Equal(got, want[:len(got)]) || c.SentBytes != len(want) {
			t.Errorf("parsed %v (%d bytes on the wire), want %v (%d)", got, c.SentBytes, want, len(want))
		}
		if err := c.parseLine(fmt.Sprintf("nl: recv: %+v\n", m)); err != nil || c.RecvMsgs != 1 || c.RecvBytes != len(want) {
			t.Errorf("recv: %d messages, %d bytes, %v", c.RecvMsgs, c.RecvBytes, err)
		}
	}
}
