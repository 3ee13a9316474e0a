package nft

import "fmt"

// BatchBytes is the size of tx's batch on the socket for the nftpolicy
// table, without the batch's begin and end: what Netlink sends for it. It
// encodes tx without opening a socket. The agent reports it as netlink
// bytes per transaction when its kernel does not count them.
func BatchBytes(tx *Transaction) (int, error) {
	b, err := encode(TableName, tx)
	if err != nil {
		return 0, err
	}
	return b.bytes(), nil
}

// OpBytes is what each op of tx puts on the socket, exactly as its batch
// for the nftpolicy table encodes it: messages with their headers, padded
// to 4 bytes, the batch's begin and end not counted. It tells a
// transaction's bytes apart by what they are for (the perf suite's
// breakdown of a pod relabel's); not for the sync path.
func OpBytes(tx *Transaction) ([]int, error) {
	b, err := newBatch(TableName)
	if err != nil {
		return nil, err
	}
	out := make([]int, len(tx.Ops))
	for i, op := range tx.Ops {
		before := len(b.msgs)
		if err := b.add(op); err != nil {
			return nil, fmt.Errorf("op %d: %w", i, err)
		}
		if err := b.collect(); err != nil {
			return nil, fmt.Errorf("op %d: %w", i, err)
		}
		out[i] = msgsBytes(b.msgs[before:])
	}
	return out, nil
}
