// Package diff turns the difference between what the kernel holds and what
// the compiler wants into the smallest transaction: element adds and deletes
// for sets and maps, chain rewrites only for chains whose rules changed.
package diff

import (
	"github.com/nftpolicy/nftpolicy/internal/nft"
)

// Diff returns the transaction that turns current into desired. current nil
// means the table does not exist. A desired state equal to current gives an
// empty transaction.
//
// The order of operations satisfies the kernel's reference checks within one
// batch: objects are created before anything refers to them, and references
// are removed (map elements deleted, chains flushed, maps deleted) before
// what they refer to is deleted.
func Diff(current, desired *nft.Ruleset) *nft.Transaction {
	tx := &nft.Transaction{}
	if current == nil {
		tx.Add(nft.Op{Kind: nft.OpAddTable})
		current = nft.NewRuleset()
	}

	// Sorted once: the order makes the transaction deterministic.
	sets, chains := desired.SortedSets(), desired.SortedChains()

	// 1. New sets and chains, empty: rules and map elements below may refer
	// to any of them.
	for _, s := range sets {
		if _, ok := current.Sets[s.Name]; !ok {
			tx.Add(nft.Op{Kind: nft.OpAddSet, Name: s.Name, SetType: s.Type, Comment: s.Comment})
		}
	}
	for _, c := range chains {
		old, ok := current.Chains[c.Name]
		if ok && !sameHook(old.Hook, c.Hook) {
			// A base chain whose hook changed (an upgrade): replace it.
			tx.Add(nft.Op{Kind: nft.OpFlushChain, Name: c.Name})
			tx.Add(nft.Op{Kind: nft.OpDeleteChain, Name: c.Name})
			ok = false
		}
		if !ok {
			tx.Add(nft.Op{Kind: nft.OpAddChain, Name: c.Name, Hook: c.Hook})
		}
	}

	// 2. Elements: deletes first, so that a map key moving to another chain
	// is a delete and an add of the same key in one batch.
	var adds []nft.Op
	for _, s := range sets {
		old := current.Sets[s.Name]
		var del, add []nft.Elem
		for e := range s.Elements {
			if old == nil || !has(old, e) {
				add = append(add, e)
			}
		}
		if old != nil {
			for e := range old.Elements {
				if !has(s, e) {
					del = append(del, e)
				}
			}
		}
		if len(del) > 0 {
			tx.Add(nft.Op{Kind: nft.OpDeleteElements, Name: s.Name, SetType: s.Type, Elems: nft.SortElems(s.Type, del)})
		}
		if len(add) > 0 {
			adds = append(adds, nft.Op{Kind: nft.OpAddElements, Name: s.Name, SetType: s.Type, Elems: nft.SortElems(s.Type, add)})
		}
	}
	for _, op := range adds {
		tx.Add(op)
	}

	// 3. Rules of new and changed chains.
	for _, c := range chains {
		old, ok := current.Chains[c.Name]
		if ok && sameHook(old.Hook, c.Hook) && sameRules(old.Rules, c.Rules) {
			continue
		}
		if ok && sameHook(old.Hook, c.Hook) && len(old.Rules) > 0 {
			tx.Add(nft.Op{Kind: nft.OpFlushChain, Name: c.Name})
		}
		for _, r := range c.Rules {
			tx.Add(nft.Op{Kind: nft.OpAddRule, Name: c.Name, Rule: r})
		}
	}

	// 4. Chains and sets that are no longer wanted, in the order in which
	// nothing refers to an object when it goes: flush every such chain
	// (its jumps and set references go), delete the sets and maps (a map's
	// elements refer to chains, and the kernel counts them), then the
	// chains. A chain deleted while an element of a map still points to it
	// is EBUSY, even if the map goes later in the same batch.
	var gone []*nft.Chain
	for _, c := range current.SortedChains() {
		if _, ok := desired.Chains[c.Name]; !ok {
			gone = append(gone, c)
		}
	}
	for _, c := range gone {
		if len(c.Rules) > 0 {
			tx.Add(nft.Op{Kind: nft.OpFlushChain, Name: c.Name})
		}
	}
	for _, s := range current.SortedSets() {
		if _, ok := desired.Sets[s.Name]; !ok {
			tx.Add(nft.Op{Kind: nft.OpDeleteSet, Name: s.Name, SetType: s.Type})
		}
	}
	for _, c := range gone {
		tx.Add(nft.Op{Kind: nft.OpDeleteChain, Name: c.Name})
	}
	return tx
}

// Replace returns the transaction that replaces whatever table the kernel
// holds, or none, with desired in one batch: the table is added (so that
// the delete cannot fail on a missing one), deleted with everything in it,
// and built again. Nothing in the old table can hold a reference the new
// one trips on, and the kernel commits the batch atomically, so no packet
// sees the table missing. It costs in proportion to the whole ruleset: it
// is the fallback for when the kernel keeps refusing Diff's transactions.
func Replace(desired *nft.Ruleset) *nft.Transaction {
	tx := &nft.Transaction{Ops: []nft.Op{{Kind: nft.OpAddTable}, {Kind: nft.OpDeleteTable}}}
	tx.Ops = append(tx.Ops, Diff(nil, desired).Ops...)
	return tx
}

func has(s *nft.Set, e nft.Elem) bool {
	_, ok := s.Elements[e]
	return ok
}

func sameHook(a, b *nft.Hook) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func sameRules(a, b []*nft.Rule) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].ID() != b[i].ID() {
			return false
		}
	}
	return true
}

// Counts summarises a transaction for metrics and tests: operations, and
// set elements touched.
type Counts struct {
	Ops      int
	Elements int
}

// Count returns the size of tx.
func Count(tx *nft.Transaction) Counts {
	c := Counts{Ops: len(tx.Ops)}
	for _, op := range tx.Ops {
		c.Elements += len(op.Elems)
	}
	return c
}
