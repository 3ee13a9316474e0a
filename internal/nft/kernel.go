package nft

import (
	"context"
	"errors"
)

// Kernel applies transactions to the nftpolicy table and reads it back.
// The real one speaks netlink (Netlink); Fake keeps the table in memory and
// checks transactions the way the kernel does.
type Kernel interface {
	// Apply commits tx atomically: all of it or none of it.
	Apply(ctx context.Context, tx *Transaction) error
	// Dump reads the whole nftpolicy table back: sets and maps with their
	// elements, chains with their hooks and rules. Rules come back with
	// only ReadID set (the comment the kernel stores). A missing table
	// gives (nil, nil).
	Dump(ctx context.Context) (*Ruleset, error)
}

// ErrOutcomeUnknown wraps errors after which the kernel may or may not have
// committed the batch (ENOBUFS on the reply): the caller must read the
// kernel back before trusting its shadow.
var ErrOutcomeUnknown = errors.New("outcome of the transaction unknown")
