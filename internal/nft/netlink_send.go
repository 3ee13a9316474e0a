package nft

import (
	"errors"
	"fmt"
	"os"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// sendBatch sends msgs between a batch's begin and end in one sendmsg, and
// reads the kernel's answers to each. nf_tables processes the whole batch,
// commit included, inside the sendmsg and queues every answer before it
// returns. An error answer (mdlayher/netlink returns it as an error) is
// kept and the rest are read; ENOBUFS or a permission error end the read
// at once, since the kernel then sends nothing more.
func sendBatch(c *netlink.Conn, msgs []netlink.Message) error {
	all := make([]netlink.Message, 0, len(msgs)+2)
	all = append(all, batchMark(unix.NFNL_MSG_BATCH_BEGIN))
	all = append(all, msgs...)
	all = append(all, batchMark(unix.NFNL_MSG_BATCH_END))
	if _, err := c.SendMessages(all); err != nil {
		return fmt.Errorf("SendMessages: %w", err)
	}
	var errs error
	for _, m := range msgs {
		if err := awaitAck(c, m.Header.Flags); err != nil {
			if errors.Is(err, os.ErrPermission) || errors.Is(err, unix.ENOBUFS) {
				return err
			}
			errs = errors.Join(errs, err)
		}
	}
	if errs != nil {
		return fmt.Errorf("conn.Receive: %w", errs)
	}
	return nil
}

// batchMark is a batch's begin or end message, for the nf_tables subsystem.
func batchMark(typ int) netlink.Message {
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(typ), Flags: netlink.Request},
		Data:   []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, unix.NFNL_SUBSYS_NFTABLES},
	}
}

// awaitAck reads the answers to one message: an echo first for a message
// that asked for one (every rule), then its acknowledgement. Every message
// internal/nft sends asks for one; one that did not would get no answer
// when it succeeds, so there is nothing to wait for.
func awaitAck(c *netlink.Conn, flags netlink.HeaderFlags) error {
	if flags&netlink.Acknowledge == 0 {
		return nil
	}
	for {
		got, err := c.Receive()
		if err != nil {
			return err
		}
		for _, m := range got {
			if m.Header.Type == netlink.Error { // an error answer came back as err
				return nil
			}
		}
	}
}
