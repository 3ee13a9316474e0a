package agent

import (
	"context"
	"errors"
	"fmt"

	"k8s.io/klog/v2"

	"github.com/nftpolicy/nftpolicy/internal/diff"
	"github.com/nftpolicy/nftpolicy/internal/nft"
)

// refusalsBeforeReplacement is how many minimal transactions in a row the
// kernel may refuse before the agent replaces the whole table. One refusal
// can come from a stale shadow (someone changed the table): the full resync
// that follows diffs against the kernel's own state. A second one means the
// differ and the kernel disagree, and since the resync recomputes the same
// transaction, retrying would never end.
const refusalsBeforeReplacement = 2

// maxLoggedTransaction caps the refused transaction's text in the log: it
// is rare enough to log in full at error level, but a full resync of a big
// node can be megabytes.
const maxLoggedTransaction = 64 << 10

// applyOrReplace applies tx and, when the kernel has now refused
// refusalsBeforeReplacement minimal transactions in a row, replaces the
// whole table with desired in one atomic batch (diff.Replace: no packet sees
// the table missing). After a replacement the next syncs are minimal again.
// It returns the transaction the kernel committed, or the one that failed
// with its error.
func (a *Agent) applyOrReplace(ctx context.Context, logger klog.Logger, tx *nft.Transaction, desired *nft.Ruleset) (*nft.Transaction, error) {
	err := a.cfg.Kernel.Apply(ctx, tx)
	if err == nil {
		a.refusals = 0
		return tx, nil
	}
	if !refused(ctx, err) {
		return tx, err
	}
	a.refusals++
	if a.refusals < refusalsBeforeReplacement {
		return tx, err
	}
	logger.Error(err, "The kernel refused the minimal transaction again; replacing the whole table in one transaction",
		"refusalsInARow", a.refusals, "refusedTransaction", capText(tx.String(), maxLoggedTransaction))
	replacement := diff.Replace(desired)
	if err := a.cfg.Kernel.Apply(ctx, replacement); err != nil {
		return replacement, fmt.Errorf("replacing the table: %w", err)
	}
	a.refusals = 0
	a.metrics.TableReplacements.Inc()
	logger.Info("Replaced the whole table; back to minimal transactions", "operations", replacement.Len())
	return replacement, nil
}

// refused reports whether err is the kernel rejecting a transaction, as
// opposed to an outcome the agent could not learn or a cancelled sync.
func refused(ctx context.Context, err error) bool {
	return err != nil && !errors.Is(err, nft.ErrOutcomeUnknown) && ctx.Err() == nil
}

func capText(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	return s[:limit] + fmt.Sprintf("... (%d bytes more)", len(s)-limit)
}
