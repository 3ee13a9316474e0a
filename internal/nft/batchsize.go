package nft

import (
	"fmt"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
)

// BatchBytes is the size Netlink estimates for tx's batch (the figure it
// sizes its socket buffers by: element messages as encoded, rules and other
// messages at a generous fixed size). It encodes tx without opening a socket.
// The agent reports it as netlink bytes per transaction.
func BatchBytes(tx *Transaction) (int, error) {
	conn, err := nftables.New() // lazy: dials only on Flush, which never comes
	if err != nil {
		return 0, err
	}
	b := &batch{conn: conn, table: TableName, sets: map[string]*nftables.Set{}}
	for _, op := range tx.Ops {
		if err := b.add(op); err != nil {
			return 0, err
		}
	}
	return b.bytes, nil
}

// OpBytes is what each op of tx puts on the socket, exactly as its batch
// for the nftpolicy table encodes it: messages with their headers, padded to 4 bytes, the batch's
// begin and end not counted. It encodes into a test socket, op by op, so
// that a transaction's bytes can be told apart by what they are for (the
// perf suite's breakdown of a pod relabel's); it is slower than BatchBytes
// and not for the sync path.
func OpBytes(tx *Transaction) ([]int, error) {
	sent := 0
	conn, err := nftables.New(nftables.WithTestDial(func(req []netlink.Message) ([]netlink.Message, error) {
		if req == nil {
			// Flush reads one acknowledgement per message.
			return []netlink.Message{{Header: netlink.Header{Type: netlink.Error}, Data: make([]byte, 20)}}, nil
		}
		for _, m := range req[1 : len(req)-1] { // inside the batch's begin and end
			sent += align4(int(m.Header.Length))
		}
		return nil, nil
	}))
	if err != nil {
		return nil, err
	}
	b := &batch{conn: conn, table: TableName, sets: map[string]*nftables.Set{}}
	out := make([]int, len(tx.Ops))
	for i, op := range tx.Ops {
		if err := b.add(op); err != nil {
			return nil, fmt.Errorf("op %d: %w", i, err)
		}
		sent = 0
		if err := conn.Flush(); err != nil {
			return nil, fmt.Errorf("op %d: %w", i, err)
		}
		out[i] = sent
	}
	return out, nil
}
