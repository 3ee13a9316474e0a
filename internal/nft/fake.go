package nft

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"syscall"
)

// Fake is an in-memory Kernel for tests of the differ and the agent. Like the
// kernel it applies a transaction to a copy of its table and keeps the copy
// only if every op succeeded, and it rejects what the kernel rejects, with
// the kernel's errno wrapped (errors.Is(err, syscall.EEXIST) works on both).
// The rules below were measured on kernel 6.18 over netlink (see
// TestNetlinkConformance, which runs the cases of TestFakeCases against both).
//
// Accepted, as by the kernel:
//   - add table when the table exists;
//   - add set when a set of that name and type exists (its elements and
//     comment stay); another type: EEXIST;
//   - add chain when the chain exists with the same hook and priority, or
//     without a hook in the op (a base chain stays a base chain); another
//     hook or priority, or a hook for an existing regular chain: EOPNOTSUPP;
//   - delete chain with rules in it (they go with it) if nothing else
//     refers to the chain;
//   - add table, delete table and build it again in one batch (a
//     replacement: nothing of the old table survives the delete);
//   - delete a map whose elements point to chains (once no rule uses the
//     map): its elements' references go with it, so the chains they
//     pointed to can be deleted after it in the same batch.
//
// Rejected, as by the kernel: a missing table, set or chain (ENOENT); a key
// re-added to a map with another verdict, or an interval or port range
// overlapping one in the set (EEXIST); deleting a missing element (ENOENT);
// a rule or map element referring to a missing set or chain (ENOENT) or
// jumping to a base chain (EOPNOTSUPP); a vmap on a set that is not a map
// (EINVAL); deleting a set a rule uses, or a chain a rule or map element
// refers to (EBUSY; a verdict-map element is a reference to its chain, and
// it counts until the element or its map is gone: deleting the map later
// in the same batch does not help); a jump loop reachable from a base
// chain (EMLINK).
//
// Stricter than the kernel, on purpose, so tests catch sloppy transactions:
//   - re-adding an element that exists, even identical, is EEXIST (the
//     kernel accepts an identical element silently);
//   - an element is deleted only by its exact value: an interval or port
//     range must match a stored one (the kernel deletes a pipapo element
//     by its start alone, and an rbtree range's start and end separately);
//   - a match on a set of the wrong type or family is EINVAL (the kernel
//     accepts `ip6 saddr @ipv4set` and compares the address's first 4
//     bytes; it rejects `ip saddr @ipv6set` with ENODATA);
//   - loops are checked once, at the end of the transaction (the kernel
//     checks at each rule and again at commit).
type Fake struct {
	// FailNext, if set, fails the next Apply with this error and is then
	// cleared. The transaction is not applied, unless FailNext wraps
	// ErrOutcomeUnknown: then it is applied (if valid) and the error is
	// returned anyway, like ENOBUFS after a committed batch.
	FailNext error

	// Refuse, if set, sees every transaction before it is applied; an
	// error it returns fails that Apply, and nothing is applied. Tests use
	// it to play a kernel that refuses what the Fake would accept.
	Refuse func(*Transaction) error

	// Counters, for tests to assert how much an update costs. Read them
	// only while no Apply runs.
	Transactions int // Apply calls that committed, including empty ones
	Failed       int // Apply calls that returned an error
	LastOps      int // ops in the last committed transaction
	TotalOps     int // ops in all committed transactions

	mu sync.Mutex
	rs *Ruleset // nil: there is no table
}

var _ Kernel = (*Fake)(nil)

// NewFake returns a Fake with no table, as a fresh kernel.
func NewFake() *Fake { return &Fake{} }

// Seed sets what the kernel already has: a copy of rs, or no table if rs is
// nil. The counters are not touched.
func (f *Fake) Seed(rs *Ruleset) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rs = nil
	if rs != nil {
		f.rs = rs.Clone()
		for _, s := range f.rs.Sets {
			s.Comment = truncate(s.Comment, MaxCommentLen) // as the kernel holds it
		}
	}
}

// Apply applies tx atomically; see the type's doc for what it rejects.
func (f *Fake) Apply(ctx context.Context, tx *Transaction) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := ctx.Err(); err != nil {
		f.Failed++
		return err
	}
	injected := f.FailNext
	f.FailNext = nil
	if injected != nil && !errors.Is(injected, ErrOutcomeUnknown) {
		f.Failed++
		return injected
	}
	if f.Refuse != nil {
		if err := f.Refuse(tx); err != nil {
			f.Failed++
			return err
		}
	}
	next, err := applyFake(f.rs, tx)
	if err == nil {
		f.rs = next
		f.Transactions++
		f.LastOps = tx.Len()
		f.TotalOps += tx.Len()
	}
	if injected != nil {
		err = injected
	}
	if err != nil {
		f.Failed++
	}
	return err
}

// Dump returns a copy of the table as the kernel reads it back: rules carry
// only their ID.
func (f *Fake) Dump(ctx context.Context) (*Ruleset, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.rs == nil {
		return nil, nil
	}
	return readBack(f.rs), nil
}

// readBack copies rs with each rule reduced to its ID, which is all a dump
// of the kernel returns of a rule.
func readBack(rs *Ruleset) *Ruleset {
	out := rs.Clone()
	for _, c := range out.Chains {
		if c.Hook != nil {
			h := *c.Hook
			c.Hook = &h
		}
		for i, r := range c.Rules {
			c.Rules[i] = &Rule{ReadID: r.ID()}
		}
	}
	return out
}

// fakeErr is an error carrying the errno the kernel returns for it.
func fakeErr(errno syscall.Errno, format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), errno)
}

// applyFake applies tx to a copy of rs (nil: no table) and returns the copy.
func applyFake(rs *Ruleset, tx *Transaction) (*Ruleset, error) {
	st := &fakeState{}
	if rs != nil {
		st.rs = rs.Clone()
	}
	for i, op := range tx.Ops {
		if err := st.apply(op); err != nil {
			return nil, fmt.Errorf("fake kernel: op %d (%s): %w", i, opLabel(op), err)
		}
	}
	if err := st.checkLoops(); err != nil {
		return nil, fmt.Errorf("fake kernel: commit: %w", err)
	}
	return st.rs, nil
}

// fakeState is the table a transaction is being applied to.
type fakeState struct {
	rs *Ruleset
}

func (st *fakeState) apply(op Op) error {
	if op.Kind == OpAddTable {
		if st.rs == nil {
			st.rs = NewRuleset()
		}
		return nil
	}
	if st.rs == nil {
		return fakeErr(syscall.ENOENT, "table %s", tbl)
	}
	switch op.Kind {
	case OpDeleteTable:
		st.rs = nil
		return nil
	case OpAddSet:
		return st.addSet(op)
	case OpDeleteSet:
		return st.deleteSet(op.Name)
	case OpAddChain:
		return st.addChain(op.Name, op.Hook)
	case OpDeleteChain:
		return st.deleteChain(op.Name)
	case OpFlushChain:
		c, err := st.chain(op.Name)
		if err == nil {
			c.Rules = nil
		}
		return err
	case OpAddRule:
		return st.addRule(op.Name, op.Rule)
	case OpAddElements:
		return st.addElements(op.Name, op.Elems)
	case OpDeleteElements:
		return st.deleteElements(op.Name, op.Elems)
	}
	return fakeErr(syscall.EINVAL, "unknown op kind %d", int(op.Kind))
}

func (st *fakeState) set(name string) (*Set, error) {
	s, ok := st.rs.Sets[name]
	if !ok {
		return nil, fakeErr(syscall.ENOENT, "set %s", name)
	}
	return s, nil
}

func (st *fakeState) chain(name string) (*Chain, error) {
	c, ok := st.rs.Chains[name]
	if !ok {
		return nil, fakeErr(syscall.ENOENT, "chain %s", name)
	}
	return c, nil
}

// checkName applies the kernel's limit on names (NFT_NAME_MAXLEN with NUL).
func checkName(kind, name string) error {
	if name == "" || len(name) > 255 {
		return fakeErr(syscall.EINVAL, "%s name %q: empty or longer than 255 bytes", kind, name)
	}
	return nil
}

func (st *fakeState) addSet(op Op) error {
	if err := checkName("set", op.Name); err != nil {
		return err
	}
	if _, err := setSpec(op.Name, op.SetType, ""); err != nil {
		return fakeErr(syscall.EINVAL, "%v", err)
	}
	if old, ok := st.rs.Sets[op.Name]; ok {
		if old.Type != op.SetType {
			return fakeErr(syscall.EEXIST, "set %s exists with type %q", op.Name, old.Type.Decl())
		}
		return nil
	}
	st.rs.Sets[op.Name] = NewSet(op.Name, op.SetType, truncate(op.Comment, MaxCommentLen))
	return nil
}

func (st *fakeState) deleteSet(name string) error {
	if _, err := st.set(name); err != nil {
		return err
	}
	for _, c := range st.rs.Chains {
		for _, r := range c.Rules {
			for _, used := range RuleSets(r) {
				if used == name {
					return fakeErr(syscall.EBUSY, "set %s is used by rule %q in chain %s", name, r.ID(), c.Name)
				}
			}
		}
	}
	delete(st.rs.Sets, name)
	return nil
}

func (st *fakeState) addChain(name string, h *Hook) error {
	if err := checkName("chain", name); err != nil {
		return err
	}
	if h != nil {
		if _, ok := hookNums[h.Hook]; !ok {
			return fakeErr(syscall.EOPNOTSUPP, "chain %s: unknown hook %q", name, h.Hook)
		}
	}
	old, ok := st.rs.Chains[name]
	switch {
	case !ok:
		c := &Chain{Name: name}
		if h != nil {
			hook := *h
			c.Hook = &hook
		}
		st.rs.Chains[name] = c
	case h == nil:
		// Re-adding any chain without a hook changes nothing.
	case old.Hook == nil || *old.Hook != *h:
		return fakeErr(syscall.EOPNOTSUPP, "chain %s exists with another hook", name)
	}
	return nil
}

func (st *fakeState) deleteChain(name string) error {
	if _, err := st.chain(name); err != nil {
		return err
	}
	// The chain's own rules go with it; references from elsewhere block it.
	for _, c := range st.rs.Chains {
		if c.Name == name {
			continue
		}
		for _, r := range c.Rules {
			if r.Verdict.Kind == Jump || r.Verdict.Kind == Goto {
				if r.Verdict.Chain == name {
					return fakeErr(syscall.EBUSY, "chain %s is the target of rule %q in chain %s", name, r.ID(), c.Name)
				}
			}
		}
	}
	for _, s := range st.rs.Sets {
		if !s.Type.IsMap() {
			continue
		}
		for e := range s.All() {
			if e.Chain == name {
				return fakeErr(syscall.EBUSY, "chain %s is the target of element %s in map %s", name, e.Text(s.Type), s.Name)
			}
		}
	}
	delete(st.rs.Chains, name)
	return nil
}

func (st *fakeState) addRule(chain string, r *Rule) error {
	c, err := st.chain(chain)
	if err != nil {
		return err
	}
	if r == nil {
		return fakeErr(syscall.EINVAL, "add rule without a rule")
	}
	for _, m := range r.Matches {
		if err := st.checkMatch(m); err != nil {
			return err
		}
	}
	if err := st.checkVerdict(r.Verdict); err != nil {
		return err
	}
	if r.Log != nil && len(r.Log.Prefix) > MaxLogPrefixLen {
		return fakeErr(syscall.ERANGE, "log prefix of %d bytes (at most %d)", len(r.Log.Prefix), MaxLogPrefixLen)
	}
	c.Rules = append(c.Rules, r)
	return nil
}

// checkMatch checks that a match's set exists and has a key the match can
// look up.
func (st *fakeState) checkMatch(m Match) error {
	var name string
	var ok func(SetType) bool
	switch m := m.(type) {
	case MatchCtState:
		if _, err := ctStateExprs(m.States); err != nil {
			return fakeErr(syscall.EINVAL, "%v", err)
		}
		return nil
	case MatchICMPv6ND, MatchFibSaddrLocal, MatchFibDaddrLocal, MatchDNSAnswer:
		return nil
	case MatchIfname:
		if _, err := ifnameExprs(m); err != nil {
			return fakeErr(syscall.EINVAL, "%v", err)
		}
		return nil
	case MatchAddrInSet:
		// A map's keys can be matched too (the kernel allows a lookup
		// without a destination register).
		name, ok = m.Set, func(t SetType) bool { return t.Family() == m.Family && keyLen(t) == addrLen(m.Family) }
	case MatchProtoPortInSet:
		name, ok = m.Set, func(t SetType) bool { return t.IsProtoPort() }
	case MatchDaddrProtoPortInSet:
		name, ok = m.Set, func(t SetType) bool {
			return t.Family() == m.Family && (t == SetIPv4ProtoPort || t == SetIPv6ProtoPort)
		}
	default:
		return fakeErr(syscall.EINVAL, "unsupported match %T", m)
	}
	s, err := st.set(name)
	if err != nil {
		return err
	}
	if !ok(s.Type) {
		return fakeErr(syscall.EINVAL, "%s: set %s has type %q", m.matchText(), name, s.Type.Decl())
	}
	return nil
}

func (st *fakeState) checkVerdict(v Verdict) error {
	switch v.Kind {
	case VerdictNone, Accept, Drop, Return:
		return nil
	case Jump, Goto:
		return st.checkTarget(v.Chain)
	case Vmap:
		s, err := st.set(v.Map)
		if err != nil {
			return err
		}
		if !s.Type.IsMap() {
			return fakeErr(syscall.EINVAL, "vmap: set %s is not a map", v.Map)
		}
		if v.ProtoPort != (s.Type == MapProtoPortVerdict) || s.Type.Family() != v.Family && !v.ProtoPort {
			return fakeErr(syscall.EINVAL, "vmap: map %s has type %q", v.Map, s.Type.Decl())
		}
		return nil
	}
	return fakeErr(syscall.EINVAL, "unknown verdict kind %d", int(v.Kind))
}

// checkTarget checks a jump, goto or map element's chain: it must exist and
// be a regular chain.
func (st *fakeState) checkTarget(name string) error {
	c, err := st.chain(name)
	if err != nil {
		return err
	}
	if c.Hook != nil {
		return fakeErr(syscall.EOPNOTSUPP, "chain %s is a base chain", name)
	}
	return nil
}

// keyOf is the part of an element the kernel identifies it by; for maps the
// address without the verdict.
func keyOf(t SetType, e Elem) Elem {
	e.Chain = ""
	return e
}

// canonical keeps only the fields that set type t stores, as the kernel
// would read the element back.
func canonical(t SetType, e Elem) Elem {
	switch t {
	case SetIPv4, SetIPv6:
		return Elem{Addr: e.Addr}
	case SetIPv4Interval, SetIPv6Interval:
		return Elem{Addr: e.Addr, AddrEnd: e.AddrEnd}
	case MapIPv4IntervalVerdict, MapIPv6IntervalVerdict:
		return Elem{Addr: e.Addr, AddrEnd: e.AddrEnd, Chain: e.Chain}
	case SetProtoPortInterval:
		return Elem{Proto: e.Proto, Port: e.Port, PortEnd: e.PortEnd}
	case MapProtoPortVerdict:
		return Elem{Proto: e.Proto, Port: e.Port, PortEnd: e.PortEnd, Chain: e.Chain}
	case SetIPv4ProtoPort, SetIPv6ProtoPort:
		return Elem{Addr: e.Addr, Proto: e.Proto, Port: e.Port}
	}
	return Elem{Addr: e.Addr, Chain: e.Chain}
}

func (st *fakeState) addElements(name string, elems []Elem) error {
	s, err := st.set(name)
	if err != nil {
		return err
	}
	keys := map[Elem]Elem{} // key -> stored element
	for e := range s.All() {
		keys[keyOf(s.Type, e)] = e
	}
	for _, e := range elems {
		if err := checkElem(s.Type, e, false); err != nil {
			return fakeErr(syscall.EINVAL, "set %s: %v", name, err)
		}
		e = canonical(s.Type, e)
		if s.Type.IsMap() {
			if err := st.checkTarget(e.Chain); err != nil {
				return fmt.Errorf("map %s element %s: %w", name, e.Text(s.Type), err)
			}
		}
		if old, ok := keys[keyOf(s.Type, e)]; ok {
			return fakeErr(syscall.EEXIST, "set %s has element %s", name, old.Text(s.Type))
		}
		if old, ok := overlapping(s, e); ok {
			return fakeErr(syscall.EEXIST, "set %s: %s overlaps %s", name, e.Text(s.Type), old.Text(s.Type))
		}
		s.Add(e)
		keys[keyOf(s.Type, e)] = e
	}
	return nil
}

// overlapping finds an element of an interval set that shares a value with e.
func overlapping(s *Set, e Elem) (Elem, bool) {
	if !s.Type.IsInterval() {
		return Elem{}, false
	}
	for old := range s.All() {
		if s.Type.IsProtoPort() {
			if old.Proto == e.Proto && old.Port <= e.PortEnd && e.Port <= old.PortEnd {
				return old, true
			}
		} else if rangesOverlap(old.Addr, old.AddrEnd, e.Addr, e.AddrEnd) {
			return old, true
		}
	}
	return Elem{}, false
}

func rangesOverlap(a1, a2, b1, b2 netip.Addr) bool {
	return a1.Compare(b2) <= 0 && b1.Compare(a2) <= 0
}

func (st *fakeState) deleteElements(name string, elems []Elem) error {
	s, err := st.set(name)
	if err != nil {
		return err
	}
	stored := map[Elem]Elem{}
	for e := range s.All() {
		stored[keyOf(s.Type, e)] = e
	}
	for _, e := range elems {
		k := keyOf(s.Type, canonical(s.Type, e))
		old, ok := stored[k]
		if !ok {
			return fakeErr(syscall.ENOENT, "set %s has no element %s", name, e.Text(s.Type))
		}
		s.Delete(old)
		delete(stored, k)
	}
	return nil
}

// checkLoops rejects a jump/goto/vmap cycle reachable from a base chain, as
// the kernel's validation at commit does.
func (st *fakeState) checkLoops() error {
	if st.rs == nil {
		return nil
	}
	targets := st.jumpTargets()
	const (
		unseen = iota
		onPath
		done
	)
	state := map[string]int{}
	var visit func(string) error
	visit = func(c string) error {
		switch state[c] {
		case onPath:
			return fakeErr(syscall.EMLINK, "chain %s is part of a jump loop", c)
		case done:
			return nil
		}
		state[c] = onPath
		for _, next := range targets[c] {
			if err := visit(next); err != nil {
				return err
			}
		}
		state[c] = done
		return nil
	}
	for _, c := range st.rs.SortedChains() {
		if c.Hook != nil {
			if err := visit(c.Name); err != nil {
				return err
			}
		}
	}
	return nil
}

// jumpTargets lists, per chain, the chains its rules can continue in. A map
// counts wherever a rule uses it, even as a plain match: the kernel checks
// the map's verdicts for loops when it binds the map to the rule.
func (st *fakeState) jumpTargets() map[string][]string {
	out := map[string][]string{}
	for _, c := range st.rs.Chains {
		for _, r := range c.Rules {
			if r.Verdict.Kind == Jump || r.Verdict.Kind == Goto {
				out[c.Name] = append(out[c.Name], r.Verdict.Chain)
			}
			for _, name := range RuleSets(r) {
				if m, ok := st.rs.Sets[name]; ok && m.Type.IsMap() {
					for e := range m.All() {
						out[c.Name] = append(out[c.Name], e.Chain)
					}
				}
			}
		}
	}
	return out
}
