// Package diff turns the difference between what the kernel holds and what
// the compiler wants into the smallest transaction: element adds and deletes
// for sets and maps, chain rewrites only for chains whose rules changed.
package diff

import (
	"slices"
	"sort"

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
	return Partial(current, desired, nil)
}

// Partial is Diff restricted to what touched names: the sets, elements and
// chains that changed in desired since it last equalled current. Its cost
// is in proportion to touched, not to the rulesets; nil touched means
// everything (Diff). When touched covers every difference, Partial and Diff
// give the same transaction.
func Partial(current, desired *nft.Ruleset, touched *nft.Touched) *nft.Transaction {
	tx := &nft.Transaction{}
	if current == nil {
		tx.Add(nft.Op{Kind: nft.OpAddTable})
		current = nft.NewRuleset()
	}
	sc := newScope(current, desired, touched)

	// 1. New sets and chains, empty: rules and map elements below may refer
	// to any of them.
	for _, name := range sc.sets {
		if s, ok := desired.Sets[name]; ok && current.Sets[name] == nil {
			tx.Add(nft.Op{Kind: nft.OpAddSet, Name: s.Name, SetType: s.Type, Comment: s.Comment})
		}
	}
	for _, name := range sc.chains {
		c, ok := desired.Chains[name]
		if !ok {
			continue
		}
		old, ok := current.Chains[name]
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
	for _, name := range sc.sets {
		s, ok := desired.Sets[name]
		if !ok {
			continue
		}
		old := current.Sets[name]
		var del, add []nft.Elem
		if m := sc.moves(name); m != nil && old != nil {
			del, add = sortedCopy(m.Del), sortedCopy(m.Add)
		} else {
			del, add = sortedPair(elemChanges(old, s, sc.elems(name)))
		}
		if len(del) > 0 {
			tx.Add(nft.Op{Kind: nft.OpDeleteElements, Name: s.Name, SetType: s.Type, Elems: del})
		}
		if len(add) > 0 {
			adds = append(adds, nft.Op{Kind: nft.OpAddElements, Name: s.Name, SetType: s.Type, Elems: add})
		}
	}
	for _, op := range adds {
		tx.Add(op)
	}

	// 3. Rules of new and changed chains.
	for _, name := range sc.chains {
		c, ok := desired.Chains[name]
		if !ok {
			continue
		}
		old, ok := current.Chains[name]
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

	// 4. Chains and sets that are no longer wanted. Each goes only once
	// nothing refers to it: first every such chain is flushed (its jumps and
	// set references go), then the sets and maps (a verdict map's elements
	// refer to chains: the kernel refuses to delete a chain that a map
	// element still leads to, with EBUSY), then the chains.
	var gone []*nft.Chain
	for _, name := range sc.chains {
		if c, ok := current.Chains[name]; ok && desired.Chains[name] == nil {
			gone = append(gone, c)
		}
	}
	for _, c := range gone {
		if len(c.Rules) > 0 {
			tx.Add(nft.Op{Kind: nft.OpFlushChain, Name: c.Name})
		}
	}
	for _, name := range sc.sets {
		if s, ok := current.Sets[name]; ok && desired.Sets[name] == nil {
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

// scope is what a diff looks at: set and chain names, sets first sorted by
// name, chains in SortedChains' order (base chains first), so that the
// transaction is deterministic.
type scope struct {
	sets, chains []string
	touched      *nft.Touched // nil: every element of every set
}

func newScope(current, desired *nft.Ruleset, touched *nft.Touched) scope {
	sc := scope{touched: touched}
	setNames := map[string]bool{}
	chainNames := map[string]*nft.Chain{}
	if touched == nil {
		for _, rs := range []*nft.Ruleset{current, desired} {
			for n := range rs.Sets {
				setNames[n] = true
			}
			for n, c := range rs.Chains {
				chainNames[n] = c
			}
		}
	} else {
		for n := range touched.Sets {
			setNames[n] = true
		}
		for n := range touched.Elems {
			setNames[n] = true
		}
		for n := range touched.Moves {
			setNames[n] = true
		}
		for n := range touched.Chains {
			for _, rs := range []*nft.Ruleset{desired, current} {
				if c, ok := rs.Chains[n]; ok {
					chainNames[n] = c
				}
			}
		}
	}
	for n := range setNames {
		sc.sets = append(sc.sets, n)
	}
	sort.Strings(sc.sets)
	tmp := nft.NewRuleset()
	tmp.Chains = chainNames
	for _, c := range tmp.SortedChains() {
		sc.chains = append(sc.chains, c.Name)
	}
	return sc
}

// elems returns the elements of a set the diff compares, maybe with
// repeats; nil means all.
func (sc scope) elems(set string) []nft.Elem {
	if sc.touched == nil || sc.touched.Sets[set] {
		return nil
	}
	only := sc.touched.Elems[set]
	if m := sc.touched.Moves[set]; m != nil {
		only = slices.Concat(only, m.Del, m.Add)
	}
	return only
}

// moves are a set's exact changes, when they are all the diff needs of it:
// the touched record has them and nothing else of the set.
func (sc scope) moves(set string) *nft.ElemMoves {
	if sc.touched == nil || sc.touched.Sets[set] || len(sc.touched.Elems[set]) > 0 {
		return nil
	}
	return sc.touched.Moves[set]
}

// elemChanges compares a set's elements in current (old, nil when the set is
// new) and desired (s): all of them, or only those of only when not nil
// (where an element may repeat, and so may it in del or add).
func elemChanges(old, s *nft.Set, only []nft.Elem) (del, add []nft.Elem) {
	if only != nil && old != nil {
		if len(only) < parallelFrom {
			return touchedChanges(old, s, only)
		}
		h := len(only) / 2
		var del2, add2 []nft.Elem
		inParallel(func() { del2, add2 = touchedChanges(old, s, only[h:]) },
			func() { del, add = touchedChanges(old, s, only[:h]) })
		return append(del, del2...), append(add, add2...)
	}
	for e := range s.All() {
		if old == nil || !old.Has(e) {
			add = append(add, e)
		}
	}
	if old != nil {
		for e := range old.All() {
			if !s.Has(e) {
				del = append(del, e)
			}
		}
	}
	return del, add
}

// parallelFrom is the number of a set's touched elements from which they
// are compared, and its deletes and adds sorted, on two goroutines: a set
// that rules read (a tier's peers) can gain thousands of pods in one
// event, as the ids maps did when a peer selector came new to a node
// (5,357 elements at L: comparing and sorting them on one core took 3.4
// ms, mostly waiting on memory; the ids maps now hand their exact moves).
const parallelFrom = 2048

// touchedChanges is elemChanges for the elements of only.
func touchedChanges(old, s *nft.Set, only []nft.Elem) (del, add []nft.Elem) {
	// One buffer, adds from the front and deletes from the back.
	buf := make([]nft.Elem, len(only))
	a, d := 0, len(buf)
	for _, e := range only {
		in, was := s.Has(e), old.Has(e)
		switch {
		case in && !was:
			buf[a] = e
			a++
		case was && !in:
			d--
			buf[d] = e
		}
	}
	return buf[d:], buf[:a:a]
}

// sortedPair is sortedOnce of both, side by side when both are long.
func sortedPair(del, add []nft.Elem) ([]nft.Elem, []nft.Elem) {
	if len(del) < parallelFrom/2 || len(add) < parallelFrom/2 {
		return sortedOnce(del), sortedOnce(add)
	}
	inParallel(func() { del = sortedOnce(del) }, func() { add = sortedOnce(add) })
	return del, add
}

// inParallel runs a on another goroutine and b on this one, and returns
// when both are done.
func inParallel(a, b func()) {
	done := make(chan struct{})
	go func() {
		a()
		close(done)
	}()
	b()
	<-done
}

// sortedCopy is elems sorted and without repeats: themselves when they are
// so already (the compile engine hands its ids maps' moves sorted: moving
// 4,800 elements of 72 bytes to sort them took 0.6 ms), else a copy.
func sortedCopy(elems []nft.Elem) []nft.Elem {
	if nft.SortedOnce(elems) {
		return elems
	}
	return sortedOnce(slices.Clone(elems))
}

// sortedOnce sorts elements and drops repeats.
func sortedOnce(elems []nft.Elem) []nft.Elem {
	return slices.Compact(nft.SortElems(elems))
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
