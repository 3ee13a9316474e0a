package bench

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The netlink probe counts what crosses the socket with mdlayher/netlink's
// own debug hook: with NLDEBUG=level=1,format=plain every Conn logs each
// message it sends ("send msgs: ") and receives ("recv: ") as %+v of a
// netlink.Message, header and payload in full. Parsing those lines gives
// the exact messages the agent's Netlink kernel handed to sendmsg for a
// batch and what it read back, and lets the probe replay the batch byte
// for byte.

// NLDebugEnv is the environment the probe must start with.
const NLDebugEnv = "NLDEBUG=level=1,format=plain"

const nlHeaderLen = 16

// nlCapture is what one transaction put on and took off the socket.
type nlCapture struct {
	Sent      [][]byte // every message sent, header included, unpadded
	SentBytes int      // as on the wire: each message padded to 4 bytes
	RecvMsgs  int
	RecvBytes int
}

func align4(n int) int { return (n + 3) &^ 3 }

// parseLine adds one debug line to c; lines of other kinds are ignored.
func (c *nlCapture) parseLine(line string) error {
	var dir string
	switch {
	case strings.Contains(line, "send msgs: {"):
		dir = "send"
	case strings.Contains(line, "recv: {"):
		dir = "recv"
	default:
		return nil // errors, or another Conn's chatter
	}
	msg, err := parseMessage(line[strings.Index(line, "{"):])
	if err != nil {
		return fmt.Errorf("netlink debug line %.120q: %w", line, err)
	}
	if dir == "send" && binary.NativeEndian.Uint16(msg[4:]) == unix.NFNL_MSG_BATCH_BEGIN {
		// internal/nft encodes with google/nftables into a test socket,
		// whose Conn logs too, then sends the whole batch on its own
		// socket: the batch that counts is the last one.
		*c = nlCapture{}
	}
	if dir == "send" {
		c.Sent = append(c.Sent, msg)
		c.SentBytes += align4(len(msg))
	} else {
		c.RecvMsgs++
		c.RecvBytes += align4(len(msg))
	}
	return nil
}

// parseMessage rebuilds a message from
// {Header:{Length:20 Type:unknown(16) Flags:request|acknowledge Sequence:1 PID:2} Data:[0 0 10 0]}.
func parseMessage(s string) ([]byte, error) {
	field := func(name string) (string, error) {
		i := strings.Index(s, name+":")
		if i < 0 {
			return "", fmt.Errorf("no %s", name)
		}
		v := s[i+len(name)+1:]
		if j := strings.IndexAny(v, " }"); j >= 0 {
			v = v[:j]
		}
		return v, nil
	}
	var vals [5]string
	for i, name := range []string{"Length", "Type", "Flags", "Sequence", "PID"} {
		v, err := field(name)
		if err != nil {
			return nil, err
		}
		vals[i] = v
	}
	length, err := strconv.ParseUint(vals[0], 10, 32)
	if err != nil {
		return nil, err
	}
	typ, err := parseType(vals[1])
	if err != nil {
		return nil, err
	}
	flags, err := parseFlags(vals[2])
	if err != nil {
		return nil, err
	}
	seq, err := strconv.ParseUint(vals[3], 10, 32)
	if err != nil {
		return nil, err
	}
	pid, err := strconv.ParseUint(vals[4], 10, 32)
	if err != nil {
		return nil, err
	}
	i := strings.Index(s, "Data:[")
	if i < 0 {
		return nil, fmt.Errorf("no Data")
	}
	if length < nlHeaderLen {
		return nil, fmt.Errorf("length %d is shorter than a header", length)
	}
	msg := make([]byte, nlHeaderLen, length)
	binary.NativeEndian.PutUint32(msg[0:], uint32(length))
	binary.NativeEndian.PutUint16(msg[4:], typ)
	binary.NativeEndian.PutUint16(msg[6:], flags)
	binary.NativeEndian.PutUint32(msg[8:], uint32(seq))
	binary.NativeEndian.PutUint32(msg[12:], uint32(pid))
	v, n := 0, false
	for _, ch := range []byte(s[i+len("Data:["):]) {
		switch {
		case ch >= '0' && ch <= '9':
			v, n = v*10+int(ch-'0'), true
		case n:
			msg = append(msg, byte(v))
			v, n = 0, false
		}
		if ch == ']' {
			break
		}
	}
	if len(msg) != int(length) {
		return nil, fmt.Errorf("length %d but %d bytes", length, len(msg))
	}
	return msg, nil
}

func parseType(s string) (uint16, error) {
	switch s {
	case "noop":
		return 1, nil
	case "error":
		return 2, nil
	case "done":
		return 3, nil
	case "overrun":
		return 4, nil
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "unknown("), ")")
	v, err := strconv.ParseUint(s, 10, 16)
	return uint16(v), err
}

var flagNames = map[string]uint16{
	"request": 0x1, "multi": 0x2, "acknowledge": 0x4, "echo": 0x8,
	"dumpinterrupted": 0x10, "dumpfiltered": 0x20, "0": 0,
}

func parseFlags(s string) (uint16, error) {
	var f uint16
	for _, part := range strings.Split(s, "|") {
		if v, ok := flagNames[part]; ok {
			f |= v
			continue
		}
		v, err := strconv.ParseUint(part, 0, 16)
		if err != nil {
			return 0, fmt.Errorf("flags %q", s)
		}
		f |= uint16(v)
	}
	return f, nil
}
