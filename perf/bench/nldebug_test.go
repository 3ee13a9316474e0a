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

// TestCaptureKeepsTheLastBatch: the encoder's test socket logs batches and
// acknowledgements before the real socket sends its one batch; the capture
// keeps what the real batch sent and read, and a malformed length is an
// error, not a panic.
func TestCaptureKeepsTheLastBatch(t *testing.T) {
	begin := netlink.Message{Header: netlink.Header{Length: 20, Type: 16, Flags: netlink.Request, PID: 1}, Data: []byte{0, 0, 0, 10}}
	elems := netlink.Message{Header: netlink.Header{Length: 24, Type: 0x0a0c, Flags: netlink.Request, PID: 1}, Data: make([]byte, 8)}
	end := netlink.Message{Header: netlink.Header{Length: 20, Type: 17, Flags: netlink.Request, PID: 1}, Data: []byte{0, 0, 0, 10}}
	ack := netlink.Message{Header: netlink.Header{Length: 36, Type: netlink.Error}, Data: make([]byte, 20)}
	var c nlCapture
	for _, step := range []struct {
		dir string
		m   netlink.Message
	}{
		{"send msgs", begin}, {"send msgs", elems}, {"send msgs", end}, {"recv", ack}, // the encoder's
		{"send msgs", begin}, {"send msgs", elems}, {"send msgs", elems}, {"send msgs", end}, {"recv", ack}, {"recv", ack}, // the real batch
	} {
		if err := c.parseLine(fmt.Sprintf("nl: %s: %+v\n", step.dir, step.m)); err != nil {
			t.Fatal(err)
		}
	}
	if len(c.Sent) != 4 || c.SentBytes != 20+24+24+20 || c.RecvMsgs != 2 || c.RecvBytes != 72 {
		t.Errorf("captured %d messages sent (%d bytes), %d read (%d bytes); want the last batch's 4 (88) and 2 (72)",
			len(c.Sent), c.SentBytes, c.RecvMsgs, c.RecvBytes)
	}
	bad := netlink.Message{Header: netlink.Header{Type: netlink.Error}, Data: make([]byte, 20)}
	if err := c.parseLine(fmt.Sprintf("nl: recv: %+v\n", bad)); err == nil {
		t.Errorf("a message of length 0 parsed")
	}
}
