package nft

import "github.com/google/nftables"

// BatchBytes is the size Netlink estimates for tx's batch (the figure it
// sizes its socket buffers by: element messages as encoded, rules and other
// messages at a generous fixed size). It encodes tx without opening a socket.
// The agent reports it as netlink bytes per transaction.
func BatchBytes(tx *Transaction) (int, error) {
	conn, err := nftables.New() // lazy: dials only on Flush, which never comes
	if err != nil {
		return 0, err
	}
	b := &batch{conn: conn, sets: map[string]*nftables.Set{}}
	for _, op := range tx.Ops {
		if err := b.add(op); err != nil {
			return 0, err
		}
	}
	return b.bytes, nil
}
